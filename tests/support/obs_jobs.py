"""Simulated stage tasks for the observability tests: each runs in a worker process the way a
Celery task does (headers in, ``services.runner.run_stage`` with the process's recorder), without
Celery; the stage bodies are deterministic doubles (``StageDeps.overrides``).

URL hooks: ``/boom`` makes stage_b fail; ``/gatefail`` makes a gate fail. ``TS_TEST_LLM_DELAY``
(seconds) is the stub model's fixed latency (benchmarks).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pipeline.deps import StageDeps
from pipeline.errors import LLMOutputError
from pipeline.models import (
    Commentary,
    Coverage,
    Evidence,
    Fact,
    Facts,
    GateReport,
    GateResult,
    Job,
    JobCarry,
    LLMCall,
    Outcome,
    PostedReply,
    ReadKind,
    Review,
    SlackMessage,
    Snippet,
    Source,
    StageUsage,
)
from pipeline.stages import STAGE_BY_NAME, STAGE_NAMES

MODEL = "openai/gpt-4o-mini"
CALL_COST = 0.0015  # per stub LLM call, so totals are checkable
REPLY_TS = "1700000000.000200"


def make_job(job_id: str, url: str, *, channel: str = "C0SHARE", user: str = "UALICE") -> Job:
    return Job(
        job_id=job_id,
        channel_id=channel,
        message_ts="1700000000.000100",
        user_id=user,
        message_text=f"look at <{url}>",
        url=url,
        canonical_url=url,
    )


def adapter_for(url: str) -> str:
    if "arxiv.org" in url:
        return "ArxivAdapter"
    if "github.com" in url:
        return "GitHubAdapter"
    return "WebPageAdapter"


def _llm_call(stage: str, text: str) -> LLMCall:
    """One model call: a real ``litellm.completion`` (mocked answer) when litellm is wanted, so
    the autologged LLM span appears under the stage span; else just the fixed latency."""
    delay = float(os.environ.get("TS_TEST_LLM_DELAY") or 0)
    if os.environ.get("TS_TEST_LITELLM") == "1":
        from pipeline.llm_litellm import lib

        litellm = lib()  # loaded as the LLM client loads it (autolog is armed on that)
        litellm.completion(
            model=MODEL,
            messages=[{"role": "user", "content": f"{stage}: {text}"}],
            mock_response=f"answer for {stage}",
            mock_delay=delay or None,
        )
    elif delay:
        time.sleep(delay)
    return LLMCall(model=MODEL, input_tokens=100, output_tokens=40, cost_usd=CALL_COST)


def _usage(stage: str, text: str) -> StageUsage:
    return StageUsage(
        model=MODEL,
        prompt_name=stage,
        prompt_version="3",
        calls=[_llm_call(stage, text)],
    )


def _evidence(carry: JobCarry, deps: StageDeps) -> Evidence:
    job = carry.job
    return Evidence(
        url=job.url,
        canonical_url=job.canonical_url,
        adapter=adapter_for(job.url),
        sources=[Source(url=job.url, title="A title")],
        snippets=[Snippet(id=f"S{i}", text=f"Sentence {i}.") for i in range(1, 4)],
        read=ReadKind.full_text,
        coverage=Coverage.full,
        char_count=30,
    )


def _facts(carry: JobCarry, deps: StageDeps) -> Facts:
    return Facts(
        title="A title",
        key_facts=[Fact(text="A fact.", snippet_ids=["S1"])],
        tool_calls=1,
        fetched_urls=["https://docs.example.org/x"],
        usage=_usage("stage_a", carry.job.url),
    )


def _commentary(carry: JobCarry, deps: StageDeps) -> Commentary:
    usage = _usage("stage_b", carry.job.url)
    if "/boom" in carry.job.url:
        raise LLMOutputError("stub model answered nonsense twice")
    return Commentary(tldr=["a"], summary="A summary.", projects=["**General** — x"], usage=usage)


def _review(carry: JobCarry, deps: StageDeps) -> Review:
    failed = "/gatefail" in carry.job.url
    report = GateReport(
        results=[
            GateResult(name="tldr_items", passed=True),
            GateResult(name="summary_length", passed=not failed, detail="too short"),
        ]
    )
    outcome = Outcome.gate_failed if failed else Outcome.success
    message = reply_for(carry.job, outcome)
    return Review(commentary=carry.need("commentary"), report=report, message=message)


def _post(carry: JobCarry, deps: StageDeps) -> PostedReply:
    return PostedReply(ts=REPLY_TS, message=carry.need("review").message)


def stage_deps() -> StageDeps:
    """Stage doubles behind the real driver: only what the stages compute is stood in for."""
    from pipeline.context import load_project_context
    from pipeline.prompting import FilePromptSource
    from pipeline.settings import get_settings

    overrides = dict(
        zip(STAGE_NAMES, (_evidence, _facts, _commentary, _review, _post), strict=True)
    )
    return StageDeps(
        settings=get_settings(),
        fetcher=None,  # type: ignore[arg-type]
        prompts=FilePromptSource(),
        context=load_project_context(),
        overrides=overrides,
    )


def run_stage(stage: str, job_json: dict[str, Any], headers: dict[str, str], carry: dict) -> dict:
    """One stage through ``services.runner.run_stage`` with this process's recorder, as a task
    does; after slack_post the job ends (``Recorder.end_job``), as the last task does."""
    from observability.recorder import get_recorder
    from services.runner import run_stage as drive

    state = JobCarry.model_validate(carry) if carry else JobCarry(job=Job.model_validate(job_json))
    state = drive(STAGE_BY_NAME[stage], state, stage_deps(), headers)
    if stage == "slack_post":
        message = state.need("reply").message
        get_recorder().end_job(state.job, headers, message.outcome, reply=message)
    return state.model_dump(mode="json")


def reply_for(job: Job, outcome: Outcome) -> SlackMessage:
    return SlackMessage(
        channel=job.channel_id,
        thread_ts=job.message_ts,
        text=f"Commentary on {job.url} ({outcome.value})",
        outcome=outcome,
    )


def fail_job(job_json: dict[str, Any], headers: dict[str, str], error: str) -> None:
    """The chain's error callback: one short note, then end_job(error)."""
    from observability.recorder import get_recorder

    job = Job.model_validate(job_json)
    note = SlackMessage(channel=job.channel_id, text="Sorry, that failed.", outcome=Outcome.error)
    get_recorder().end_job(job, headers, Outcome.error, reply=note, error=error)


def in_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn`` on a fresh thread of this process, as a ``-P threads`` worker does."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_stage_threaded(stage: str, job_json: dict, headers: dict, carry: dict) -> dict:
    return in_thread(run_stage, stage, job_json, headers, carry)


def init_process() -> None:
    """What a worker does at start (``tasks.lifecycle``): install and warm up its recorder."""
    from observability.setup import configure, warm_up
    from pipeline.settings import get_settings, reset_settings_cache

    reset_settings_cache()
    warm_up(configure(get_settings()))


def overhead() -> float:
    from observability.recorder import get_recorder

    return float(getattr(get_recorder(), "overhead_seconds", 0.0))


def flush() -> bool:
    from observability.recorder import get_recorder

    return get_recorder().flush(15.0)


@contextmanager
def worker_recording(tracking_uri: str, redis_url: str, state_dir: str) -> Iterator[None]:
    """This process records as a worker does (Redis ledger and outbox, LLM spans through
    litellm) to ``tracking_uri`` until the block ends; then its recorder is closed and removed
    and the environment restored."""
    import pytest

    from observability.recorder import get_recorder, install_recorder

    patch = pytest.MonkeyPatch()
    for key, value in {
        "MLFLOW_TRACKING_URI": tracking_uri, "REDIS_URL": redis_url, "STATE_DIR": state_dir,
        "TS_TEST_LITELLM": "1", "MLFLOW_ENABLE_TRACKING": "true", "MLFLOW_ENABLE_TRACING": "true",
    }.items():  # fmt: skip
        patch.setenv(key, value)
    try:
        init_process()
        yield
    finally:
        get_recorder().close()
        install_recorder(None)
        patch.undo()


def record_job(job_id: str, url: str) -> tuple[dict[str, str], dict]:
    """One job through every stage and its end, as the tasks record it: (headers, carry)."""
    from observability.recorder import get_recorder

    job = make_job(job_id, url)
    headers = get_recorder().begin_job(job)
    carry: dict = {}
    for stage in STAGE_NAMES:
        carry = run_stage(stage, job.model_dump(mode="json"), headers, carry)
    return headers, carry
