"""Deterministic stand-ins for the pipeline stages and the MLflow backend, for service tests
that exercise the queue machinery (delivery, retries, headers, idempotency, crashes) rather than
the stages or MLflow (tests/test_e2e_service.py runs the real ones).

The observability stand-in gives every begin_job a fresh parent run id and traceparent at once,
so header propagation is asserted without MLflow's start-up cost.

Test hooks, read from the environment of the worker:
  TS_TEST_SLOW_STAGE_A=<seconds>   stage_a sleeps that long (time to kill the worker)
URL hooks: a URL containing ``/fail`` fails terminally in fetch; one containing ``/flaky`` raises a
retryable error on its first fetch per job attempt.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from pipeline.constants import HEADER_JOB_ID, HEADER_PARENT_RUN_ID, HEADER_TRACEPARENT
from pipeline.errors import FetchNetworkError, SourceUnavailableError
from pipeline.models import (
    Commentary,
    Coverage,
    Evidence,
    Fact,
    Facts,
    GateReport,
    GateResult,
    Job,
    Outcome,
    ReadKind,
    SlackMessage,
    Snippet,
    Source,
)
from pipeline.settings import Settings
from tasks import pipeline_calls, runtime


def fetch_evidence(job: Job, settings: Settings) -> Evidence:
    if "/fail" in job.url:
        raise SourceUnavailableError(f"stand-in: {job.url} is gone")
    if "/flaky" in job.url:
        tries = runtime.store().r.incr(f"test:flaky:{job.job_id}")
        if tries == 1:
            raise FetchNetworkError("stand-in: connection reset", retry_after=0.5)
    return Evidence(
        url=job.url,
        canonical_url=job.canonical_url,
        adapter="StandInAdapter",
        sources=[Source(url=job.url, title=f"Title of {job.url}")],
        snippets=[Snippet(id="S1", text=f"The page at {job.url} says something.")],
        read=ReadKind.full_text,
        coverage=Coverage.full,
        char_count=40,
    )


def stage_a(evidence: Evidence, settings: Settings) -> Facts:
    runtime.store().r.incr(f"test:stage_a_runs:{evidence.url}")  # counts re-executions
    delay = float(os.environ.get("TS_TEST_SLOW_STAGE_A") or 0)
    if delay:
        time.sleep(delay)
    return Facts(title=evidence.title, key_facts=[Fact(text="A fact.", snippet_ids=["S1"])])


def stage_b(facts, evidence, settings, feedback=None) -> Commentary:
    return Commentary(tldr=["one"], summary="A summary.", projects=["**General** — x"])


def quality_gates(job, evidence, facts, commentary, settings):
    return commentary, GateReport(results=[GateResult(name="stand_in", passed=True)])


def render_reply(job, evidence, facts, commentary, report, settings) -> SlackMessage:
    return SlackMessage(
        channel=job.channel_id,
        thread_ts=job.reply_thread_ts or None,
        text=f"Commentary on {job.url}: {commentary.summary}",
        outcome=Outcome.success if report.passed else Outcome.gate_failed,
    )


def begin_job(job: Job, *, reprocess_of: str | None = None) -> dict[str, str]:
    run = uuid.uuid4().hex
    return {
        HEADER_JOB_ID: job.job_id,
        HEADER_PARENT_RUN_ID: f"standin-{run[:12]}",
        HEADER_TRACEPARENT: f"00-{run}-{run[:16]}-01",
    }


@contextmanager
def stage_run(stage: str, job: Job, headers: Mapping[str, str]) -> Iterator[Any]:
    from observability.hooks import StageRecorder

    yield StageRecorder(stage=stage)


def end_job(job: Job, headers: Mapping[str, str], outcome: Any, **_: Any) -> None:
    return None


def parent_run_id(job: Job, headers: Mapping[str, str]) -> str:
    return headers.get(HEADER_PARENT_RUN_ID, "")


def install() -> None:
    for name in ("fetch_evidence", "stage_a", "stage_b", "quality_gates", "render_reply"):
        setattr(pipeline_calls, name, globals()[name])
    from observability import hooks

    backend = SimpleNamespace(
        begin_job=begin_job, stage_run=stage_run, end_job=end_job, parent_run_id=parent_run_id
    )
    hooks._backend = lambda: backend  # type: ignore[assignment]
