"""Deterministic doubles for the service tests that exercise the queue machinery (delivery,
retries, headers, idempotency, crashes) rather than the stages or MLflow
(tests/e2e/test_service.py runs the real ones). Installed through the seams a process has:
``tasks.runtime.set_deps_factory`` (stage doubles in ``StageDeps.overrides``; slack_post stays
real) and ``install_recorder(keep=True)`` (a recorder that hands out a parent run id and
traceparent at once, so header propagation is asserted without MLflow's start-up cost).

Test hooks, read from the environment of the worker:
  TS_TEST_SLOW_STAGE_A=<seconds>   stage_a sleeps that long (time to kill the worker)
URL hooks: a URL containing ``/fail`` fails terminally in fetch; one containing ``/flaky`` raises a
retryable error on its first fetch per job attempt.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping

from observability.recorder import NullRecorder, install_recorder
from pipeline.constants import HEADER_JOB_ID, HEADER_PARENT_RUN_ID, HEADER_TRACEPARENT
from pipeline.deps import StageDeps
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
    JobCarry,
    Outcome,
    ReadKind,
    Review,
    SlackMessage,
    Snippet,
    Source,
)
from tasks import runtime


def fetch_evidence(carry: JobCarry, deps: StageDeps) -> Evidence:
    job = carry.job
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


def stage_a(carry: JobCarry, deps: StageDeps) -> Facts:
    evidence = carry.need("evidence")
    runtime.store().r.incr(f"test:stage_a_runs:{evidence.url}")  # counts re-executions
    delay = float(os.environ.get("TS_TEST_SLOW_STAGE_A") or 0)
    if delay:
        time.sleep(delay)
    return Facts(title=evidence.title, key_facts=[Fact(text="A fact.", snippet_ids=["S1"])])


def stage_b(carry: JobCarry, deps: StageDeps) -> Commentary:
    return Commentary(tldr=["one"], summary="A summary.", projects=["**General** — x"])


def quality_gates(carry: JobCarry, deps: StageDeps) -> Review:
    job, commentary = carry.job, carry.need("commentary")
    message = SlackMessage(
        channel=job.channel_id,
        thread_ts=job.reply_thread_ts or None,
        text=f"Commentary on {job.url}: {commentary.summary}",
        outcome=Outcome.success,
    )
    report = GateReport(results=[GateResult(name="stand_in", passed=True)])
    return Review(commentary=commentary, report=report, message=message)


# the stand-in gates "call the model" (run on the llm queue) for links saying so
quality_gates.calls_model = lambda carry, deps: "needs-repair" in carry.job.url  # type: ignore[attr-defined]

OVERRIDES = {
    "fetch_evidence": fetch_evidence,
    "stage_a": stage_a,
    "stage_b": stage_b,
    "quality_gates": quality_gates,
}


def standin_deps() -> StageDeps:
    deps = runtime.worker_deps()
    deps.overrides = OVERRIDES
    return deps


class StandInRecorder(NullRecorder):
    """Every begin gets a fresh parent run id and traceparent at once; nothing is written."""

    def begin_job(
        self, job: Job, *, reprocess_of: str | None = None, followup_of: str | None = None
    ) -> dict[str, str]:
        run = uuid.uuid4().hex
        return {
            HEADER_JOB_ID: job.job_id,
            HEADER_PARENT_RUN_ID: f"standin-{run[:12]}",
            HEADER_TRACEPARENT: f"00-{run}-{run[:16]}-01",
        }

    def parent_run_id(self, job: Job, headers: Mapping[str, str]) -> str:
        return headers.get(HEADER_PARENT_RUN_ID, "")


def install() -> None:
    runtime.set_deps_factory(standin_deps)
    install_recorder(StandInRecorder(), keep=True)
