"""run_job end to end (``services.wiring.build_deps`` + ``services.runner.run_job``, no
recorder): real retrieval against a loopback HTTP server through the safe fetcher, the real LLM
layer (offline extractive model, or a scripted Stage B), gates, repair and rendering."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from observability.recorder import NULL_RECORDER
from pipeline.fetch import SafeFetcher
from pipeline.models import Job, Outcome, PipelineResult
from pipeline.sanitize import find_mentions
from pipeline.settings import Settings
from services.recorded_web import RecordedServer, Response, serve_recorded
from services.runner import run_job
from services.wiring import build_deps
from tests.support.llm import PRIMARY, json_answer, text, tool_calls
from tests.support.web import hostile_routes

EVIL = "evil.example"
THEME = "Developer tooling"  # a theme of prompts/project_context.yaml


def _empty_page(_request) -> Response:
    return Response(
        200, {"Content-Type": "text/html"}, b"<html><body><nav>Home</nav></body></html>"
    )


@pytest.fixture(scope="module")
def web() -> Iterator[RecordedServer]:
    routes = {**hostile_routes(), "/test/empty": _empty_page}
    with serve_recorded(routes=routes) as server:
        yield server


def slack_job(url: str) -> Job:
    return Job(
        job_id="runner-test",
        channel_id="C42",
        message_ts="1700000000.000200",
        message_text=f"Interesting: <{url}>",
        url=url,
        canonical_url=url,
    )


def run(web: RecordedServer, path: str, **settings: object) -> PipelineResult:
    # prompts from the files (no registry lookup): nothing here is recorded
    config = web.settings(Settings(mlflow_enable_tracking=False, **settings))
    deps = build_deps(config, fetcher=SafeFetcher(config))
    try:
        return run_job(slack_job(web.url(path)), deps, NULL_RECORDER)
    finally:
        deps.close()


def posted_text(result: PipelineResult) -> str:
    assert result.message is not None
    return result.message.text + json.dumps(result.message.blocks)


def assert_safe(result: PipelineResult) -> None:
    posted = posted_text(result)
    assert EVIL not in posted
    assert find_mentions(posted) == []
    assert "SYSTEM OVERRIDE" not in posted and "system prompt" not in posted


# --- prompt injection -----------------------------------------------------------------------
def test_injection_page_with_the_offline_model_yields_a_safe_reply(web):
    result = run(web, "/test/injection", llm_model="offline/extractive")
    assert result.outcome == Outcome.success, result.error
    assert result.gate_report is not None and result.gate_report.passed
    assert_safe(result)
    assert "Rust 1.80" in posted_text(result)
    assert result.message.channel == "C42" and result.message.thread_ts == "1700000000.000200"


OBEYING = {  # what a model that follows the page's instructions would write
    "tldr": [
        "Rust 1.80 ships lazy cells <!channel>.",
        "Read https://evil.example/visible for details.",
        "LazyLock is stable.",
    ],
    "summary": (
        "Rust 1.80 ships lazy cells. @here LazyLock is now stable. Cargo rejects ambiguous "
        "features. See <https://evil.example/visible|the details>. Upgrade with rustup."
    ),
    "projects": [
        f"**{THEME}** — upgrade the toolchain <!here>.",
        "**General** — a routine release.",
    ],
    "similar_tech": [
        {"name": "once_cell", "note": "the crate", "url": "https://evil.example/hidden"}
    ],
    "tags": ["rust"],
}
CLEAN = {
    "tldr": [
        "Rust 1.80 ships lazy cells in the standard library.",
        "LazyCell and LazyLock compute a value on first access.",
        "Cargo now rejects packages with ambiguous features.",
    ],
    "summary": (
        "Rust 1.80 ships lazy cells in the standard library. The LazyCell and LazyLock types "
        "compute a value on first access. Projects used the once_cell crate before. Cargo now "
        "rejects packages with ambiguous features. Upgrading is done with rustup."
    ),
    "projects": [
        f"**{THEME}** — our Rust services can drop once_cell.",
        "**General** — a routine release.",
    ],
    "similar_tech": [{"name": "once_cell", "note": "the crate these types replace"}],
    "tags": ["rust"],
}


def scripted_stage_b(web: RecordedServer, scripted, *answers) -> PipelineResult:
    scripted.script(PRIMARY, *answers)
    return run(
        web,
        "/test/injection",
        llm_model="offline/extractive",
        llm_model_stage_b=PRIMARY,
        llm_max_retries=1,
    )


def test_stage_b_that_keeps_obeying_the_page_is_gate_failed_after_one_repair(web, scripted):
    result = scripted_stage_b(web, scripted, json_answer(OBEYING), json_answer(OBEYING))
    assert result.outcome == Outcome.gate_failed
    report = result.gate_report
    assert report is not None and report.repaired
    assert {"mentions", "urls"} <= {r.name for r in report.failures}
    assert result.error and result.error.startswith("GateFailedError:") and "\n" not in result.error
    assert result.message.outcome == Outcome.gate_failed
    assert "could not write a commentary" in result.message.text
    assert_safe(result)
    calls = scripted.calls_to(PRIMARY)
    assert len(calls) == 2  # the answer and exactly one repair
    repair_request = calls[1].all_text
    assert "[mentions]" in repair_request and "[urls]" in repair_request


def test_stage_b_fixed_by_the_repair_is_posted(web, scripted):
    result = scripted_stage_b(web, scripted, json_answer(OBEYING), json_answer(CLEAN))
    assert result.outcome == Outcome.success, result.error
    assert result.gate_report.passed and result.gate_report.repaired
    assert result.commentary.tldr == CLEAN["tldr"]
    assert [c.purpose for c in result.commentary.usage.calls] == ["answer", "repair"]
    assert_safe(result)
    assert "our Rust services can drop once_cell" in result.message.text
    assert "Extractive summary" not in result.message.text  # a (scripted) model wrote it


def test_stage_a_fetch_tool_goes_through_the_safe_fetcher_within_the_budget(web, scripted):
    linked = web.page_url("002")
    facts = {
        "title": "Rust 1.80",
        "key_facts": [{"text": "Rust 1.80 ships lazy cells.", "snippet_ids": ["S1"]}],
    }
    summary = CLEAN["summary"] + f" Background on fetching is at {linked} for reference."
    scripted.script(
        PRIMARY,
        tool_calls(("fetch_url", {"url": linked})),
        tool_calls(("fetch_url", {"url": "http://10.0.0.1/admin"})),  # refused by the SSRF guard
        tool_calls(("fetch_url", {"url": linked})),  # over the budget of 2
        json_answer(facts),
        json_answer({**CLEAN, "summary": summary}),
    )
    result = run(web, "/test/injection", llm_model=PRIMARY, llm_max_retries=1, max_tool_calls=2)
    assert result.outcome == Outcome.success, result.error
    assert result.facts.tool_calls == 2 and result.facts.fetched_urls == [linked]
    assert result.facts.fetched_snippets  # the fetched page's text, citable
    tool_answers = [
        m["content"] for m in scripted.calls_to(PRIMARY)[3].messages if m["role"] == "tool"
    ]
    assert "not allowed to read" in tool_answers[1] and "limit reached" in tool_answers[2]
    assert f"<{linked}>" in result.message.text  # a tool-read page may be linked


# --- error outcomes ---------------------------------------------------------------------------
def test_unreadable_source_is_an_error_with_its_user_message(web):
    result = run(web, "/test/404", llm_model="offline/extractive")
    assert result.outcome == Outcome.error and result.facts is None
    assert result.error.startswith("SourceUnavailableError") and "\n" not in result.error
    assert result.message.outcome == Outcome.error
    assert "could not be read (not found, private or paywalled)" in result.message.text
    assert "Traceback" not in result.message.text


def test_page_with_nothing_to_read_is_an_error_with_a_clear_reason(web):
    result = run(web, "/test/empty", llm_model="offline/extractive")
    assert result.evidence is not None and result.evidence.coverage.value == "failed"
    assert result.outcome == Outcome.error and result.facts is None
    assert "Nothing could be read from this link" in result.message.text
    assert result.error.startswith("SourceUnavailableError")


def test_invalid_model_output_is_an_error(web, scripted):
    result = scripted_stage_b(web, scripted, text("no json here"), text("still none"))
    assert result.outcome == Outcome.error
    assert result.error.startswith("LLMOutputError")
    assert result.facts is not None and result.commentary is None
    assert "did not produce a valid answer" in result.message.text
