"""Every recorded corpus link through run_pipeline with the offline model: the reply passes the
quality gates and is safe to post.

Three items are known not to pass yet (strict xfail: the test fails as soon as one passes, so
the mark is removed with the fix). Their evidence has fewer sentences of substance than the
gates demand (3 TL;DR items, 4-8 summary sentences for a partial read), and the pipeline must
not pad with invented text. The fix belongs upstream of the gates: arXiv/GitHub metadata as a
citable snippet (retrieval) that the offline model can state as sentences (LLM layer), and list
items (``+ Added ...`` lines) kept apart as sentences by the extraction.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.models import Outcome
from pipeline.runner import PipelineDeps, default_deps, run_pipeline
from pipeline.runner_cli import make_cli_job
from pipeline.sanitize import find_mentions
from pipeline.settings import Settings
from services.recorded_web import RecordedWeb

WEB = RecordedWeb()
TOO_SHORT_TO_SUMMARISE = {
    "https://arxiv.org/abs/0704.0108": "the abstract is one sentence",
    "https://arxiv.org/abs/2310.08262": "abstract of 3 substantive sentences + a names list",
    "http://mcupdate.tumblr.com/post/96439224994/minecraft-18-the-bountiful-update": (
        "a changelog of '+ Added ...' lines read as 7 run-on sentences"
    ),
}


def _cases() -> list[object]:
    cases: list[object] = []
    for kind, urls in WEB.recorded_urls().items():
        for url in urls:
            marks = []
            if url in TOO_SHORT_TO_SUMMARISE:
                marks.append(pytest.mark.xfail(strict=True, reason=TOO_SHORT_TO_SUMMARISE[url]))
            cases.append(pytest.param(url, id=f"{kind}:{url}", marks=marks))
    return cases


@pytest.fixture(scope="module")
def deps() -> Iterator[PipelineDeps]:
    built = default_deps(
        Settings(llm_model="offline/extractive"), transport=WEB.transport, resolver=WEB.resolver
    )
    yield built
    built.close()


@pytest.mark.parametrize("url", _cases())
def test_corpus_item_passes_the_gates_with_the_offline_model(deps, url):
    result = run_pipeline(make_cli_job(url), deps)
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
