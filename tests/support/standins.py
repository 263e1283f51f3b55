"""Deterministic stand-ins for the pipeline stages, for service tests that exercise the queue
machinery (delivery, retries, idempotency, crashes) rather than the stages themselves.

Test hooks, read from the environment of the worker:
  TS_TEST_SLOW_STAGE_A=<seconds>   stage_a sleeps that long (time to kill the worker)
URL hooks: a URL containing ``/fail`` fails terminally in fetch; one containing ``/flaky`` raises a
retryable error on its first fetch per job attempt.
"""

from __future__ import annotations

import os
import time

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


def install() -> None:
    for name in ("fetch_evidence", "stage_a", "stage_b", "quality_gates", "render_reply"):
        setattr(pipeline_calls, name, globals()[name])
