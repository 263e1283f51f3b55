"""Recording a link into the recorded-web layout, in-process against RecordedWeb: what is written
must serve the same source again (arXiv Atom -> JSON -> Atom, GitHub API -> repo.json + README,
pages byte for byte), and review-pending examples are kept out of the suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.dataset import DatasetError, RecordedRef, parse_dataset, recorded_text
from eval.from_feedback import suggest_terms
from eval.recorder import record_link
from pipeline.adapters import fetch_evidence
from pipeline.settings import Settings
from services.recorded_web import RecordedWeb

REPO = Path(__file__).resolve().parents[3]
CASES = [
    ("https://arxiv.org/abs/2101.04061", RecordedRef(kind="arxiv", id="2101.04061")),
    ("https://github.com/encode/httpx", RecordedRef(kind="github", id="encode/httpx")),
    ("https://hakibenita.com/sql-anomaly-detection", None),
]


@pytest.mark.parametrize(("url", "expected"), CASES, ids=["arxiv", "github", "page"])
def test_recorded_link_serves_the_same_evidence_again(tmp_path, url, expected):
    settings = Settings()
    with RecordedWeb().fetcher(settings) as fetcher:
        ref, title = record_link(url, settings, fetcher, tmp_path)
        before = fetch_evidence(url, settings, fetcher)
    if expected is not None:
        assert ref == expected
    assert title == before.title
    manifest = json.loads((tmp_path / "manifest.json").read_text("utf-8"))
    assert [(e["kind"], e["id"], e["url"]) for e in manifest] == [(ref.kind, ref.id, url)]
    with RecordedWeb(tmp_path).fetcher(settings) as again:  # ONLY the new recording
        after = fetch_evidence(url, settings, again)
    assert after.adapter == before.adapter and after.coverage == before.coverage
    assert [s.text for s in after.snippets] == [s.text for s in before.snippets]
    assert recorded_text(ref, tmp_path).strip()


def test_recording_twice_keeps_one_manifest_entry(tmp_path):
    settings = Settings()
    with RecordedWeb().fetcher(settings) as fetcher:
        record_link(CASES[1][0], settings, fetcher, tmp_path)
        record_link(CASES[1][0], settings, fetcher, tmp_path)
    assert len(json.loads((tmp_path / "manifest.json").read_text("utf-8"))) == 1


def test_suggested_terms_come_from_the_title_and_occur_in_the_text():
    text = "StyleCLIP uses CLIP to drive StyleGAN image manipulation from text."
    terms = suggest_terms("StyleCLIP: Text-Driven Manipulation of StyleGAN Imagery", text)
    assert terms and all(t.casefold() in text.casefold() for t in terms)
    assert "Imagery" not in terms  # not in the text
    assert suggest_terms(None, text) == []


def test_needs_review_examples_load_but_are_not_ready():
    base = {"url": "https://x.org/a", "message_text": "<https://x.org/a>",
            "recorded": {"kind": "page", "id": "001"}}  # fmt: skip
    dataset = parse_dataset({"examples": [
        {**base, "id": "todo", "status": "needs_review"},
        {**base, "id": "done", "expected_themes": ["General"], "must_mention": ["x"]},
    ]})  # fmt: skip
    assert [e.id for e in dataset.ready()] == ["done"]
    with pytest.raises(DatasetError, match=r"example 'bad' \(#0\): field 'expected_themes'"):
        parse_dataset({"examples": [{**base, "id": "bad", "must_mention": ["x"]}]})
