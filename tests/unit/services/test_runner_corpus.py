"""Every recorded corpus link through run_job with the offline model: the reply passes the
quality gates, is safe to post, quotes only the evidence, and reads like a summary.

Thin sources (a one-sentence abstract, a changelog of lines) pass because retrieval adds the
source's fields as citable sentences and the summary's minimum drops to what the evidence holds;
nothing is padded with invented text.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from observability.recorder import NULL_RECORDER
from pipeline.deps import StageDeps
from pipeline.fetch import SafeFetcher
from pipeline.gates import citable_sentence_count
from pipeline.models import Outcome
from pipeline.offline_selection import candidates
from pipeline.sanitize import find_mentions
from pipeline.settings import Settings
from pipeline.text import normalize_space, split_sentences, split_units
from services.recorded_web import RecordedWeb
from services.run_cli import make_cli_job
from services.runner import run_job
from services.wiring import build_deps

WEB = RecordedWeb()


def _cases() -> list[object]:
    return [
        pytest.param(url, id=f"{kind}:{url}")
        for kind, urls in WEB.recorded_urls().items()
        for url in urls
    ]


@pytest.fixture(scope="module")
def deps() -> Iterator[StageDeps]:
    settings = Settings(llm_model="offline/extractive", mlflow_enable_tracking=False)
    fetcher = SafeFetcher(settings, transport=WEB.transport, resolver=WEB.resolver)
    built = build_deps(settings, fetcher=fetcher)
    yield built
    built.close()


def _quote(bullet: str) -> str | None:
    return bullet.split("“", 1)[1][:-1] if "“" in bullet else None


@pytest.mark.parametrize("url", _cases())
def test_corpus_item_passes_the_gates_with_the_offline_model(deps, url):
    result = run_job(make_cli_job(url), deps, NULL_RECORDER)
    failures = (
        [f"{r.name}: {r.detail}" for r in result.gate_report.failures] if result.gate_report else []
    )
    assert result.outcome == Outcome.success, (result.error, failures)
    assert result.gate_report.passed and not result.gate_report.repaired
    assert result.commentary.extractive
    message = result.message
    assert len(message.blocks) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in message.blocks if b["type"] == "section")
    assert find_mentions(message.text) == []

    # verbatim: every TL;DR item, summary sentence and quote is in the evidence as written,
    # the sentences rendered from the source's fields included
    commentary, evidence = result.commentary, result.evidence
    source = normalize_space(evidence.text())
    sentences = [*commentary.tldr, *split_sentences(commentary.summary)]
    quotes = [q for b in commentary.projects if (q := _quote(b))]
    assert [s for s in [*sentences, *quotes] if s not in source] == []

    # readable: no code, no list run together, at most one General quote, distinct themes
    for text in [*sentences, *quotes]:
        units = split_units(text)
        assert len(units) == 1 and not units[0].code, text
        assert "```" not in text and " • " not in text, text
    themes = [b.split("**")[1] for b in commentary.projects if b.startswith("**")]
    general_quotes = [b for b in commentary.projects if b.startswith("**General** — “")]
    assert len(general_quotes) <= 1
    assert len([t for t in themes if t != "General"]) == len({t for t in themes if t != "General"})


@pytest.mark.parametrize("url", _cases())
def test_the_gate_counts_the_sentences_the_offline_model_can_quote(deps, url):
    """The summary minimum never exceeds what the extractive model can select."""
    result = run_job(make_cli_job(url), deps, NULL_RECORDER)
    evidence = result.evidence
    found = candidates([(s.id, s.text) for s in evidence.snippets], evidence.title or "")
    assert citable_sentence_count(evidence) == sum(1 for c in found if c.sentence)


SIMILAR_TECH_MIN_SHARE = 0.5  # of the GitHub repositories and of the papers


def test_similar_tech_comes_from_the_source_for_most_repos_and_papers(deps):
    """Similar tech is listed for at least half of the repositories and of the papers, and
    every name it lists is written in the evidence (0 names from elsewhere)."""
    listed: dict[str, list[bool]] = {}
    outside: list[tuple[str, str]] = []
    for kind in ("github", "arxiv"):
        for url in WEB.recorded_urls()[kind]:
            result = run_job(make_cli_job(url), deps, NULL_RECORDER)
            assert result.outcome == Outcome.success, (url, result.error)
            similar = result.commentary.similar_tech
            listed.setdefault(kind, []).append(bool(similar))
            source = normalize_space(result.evidence.text()).casefold()
            outside += [(url, t.name) for t in similar if t.name.casefold() not in source]
    assert outside == []
    shares = {kind: sum(found) / len(found) for kind, found in listed.items()}
    assert all(share >= SIMILAR_TECH_MIN_SHARE for share in shares.values()), shares


def _expected_similar(notes: str) -> list[str]:
    """Names from an eval example's ``notes`` ("Expected similar tech: A; B. Why...")."""
    head = notes.partition("Expected similar tech: ")[2].partition(". ")[0]
    return [name.strip().rstrip(".") for name in head.split(";") if name.strip()]


def test_eval_examples_get_the_similar_tech_their_readme_names(deps):
    from eval.dataset import load_dataset

    examples = [e for e in load_dataset().examples if "similar-tech" in e.tags]
    assert len(examples) >= 2
    for example in examples:
        result = run_job(make_cli_job(example.url), deps, NULL_RECORDER)
        names = [t.name for t in result.commentary.similar_tech]
        expected = _expected_similar(example.notes)
        assert expected and set(expected) <= set(names), (example.id, names)
