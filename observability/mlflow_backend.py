"""The MLflow implementation of ``observability.hooks``: parent run + nested stage runs + one
trace per job, across worker processes, without ever making a job wait for MLflow.

What each hook costs the job (its caller's thread), MLflow up or down:
- ``begin_job``: draws the trace ids, starts the Redis ledger and creates the parent run at once
  (on a helper thread, not behind the writer's queue), waiting for its id at most
  ``settings.mlflow_http_timeout``: the entry task runs after Slack was acked, and an id in the
  headers lets every stage write its run without looking the parent up. MLflow known to be down,
  or a previous begin still hanging past that timeout: no wait, the header stays empty and the
  record goes to the outbox (or finishes in the background); stages then find the parent
  through the ledger.
- ``stage_run``: opens the stage span (joined via ``traceparent``), and on exit derives the
  stage's values, adds them to the ledger (one pipelined round trip) and queues the stage run.
- ``end_job``: reads the ledger once, queues the parent's totals, status and the root span.
While MLflow is down (cached health state) records go straight to the Redis outbox.

The caller-thread time of every hook is added to the ledger, and the parent run gets it as
metric ``tracking_overhead_seconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from observability import ledger, outbox, tracing
from observability.derive import StageSummary, canonical_stage, domain_of, summarize, tag_text
from observability.hooks import StageRecorder
from observability.records import BeginRecord, EndRecord, RootSpan, StageRecord
from observability.runtime import Runtime, get_runtime
from observability.writer import parent_tags
from pipeline.constants import HEADER_JOB_ID, HEADER_PARENT_RUN_ID, HEADER_TRACEPARENT
from pipeline.models import Job, Outcome, SlackMessage

log = logging.getLogger("observability")

SLOW_HOOK_SECONDS = 0.010


def _round_trip(
    rt: Runtime,
    job: Job,
    to_outbox: BeginRecord | StageRecord | EndRecord | None,
    ledger_writes: Callable[[Any], None] | None,
) -> None:
    """The hook's one Redis round trip: its ledger writes, plus the record's XADD to the
    outbox when MLflow is down."""
    try:
        pipe = rt.redis().pipeline(transaction=False)
        if to_outbox is not None:
            outbox.queue_push(pipe, to_outbox)
        if ledger_writes is not None:
            ledger_writes(pipe)
        pipe.execute()
    except Exception as exc:
        if to_outbox is not None:
            outbox.log_lost(to_outbox, exc)
        else:
            log.warning("Redis ledger unavailable for job %s: %s", job.job_id, exc)


def _record(
    rt: Runtime,
    record: BeginRecord | StageRecord | EndRecord,
    ledger_writes: Callable[[Any], None] | None = None,
) -> None:
    """To the background writer when MLflow is up, else to the outbox."""
    up = rt.health.available()
    if up:
        rt.writer().submit(record)
    if not up or ledger_writes is not None:
        _round_trip(rt, record.job, None if up else record, ledger_writes)


def _run_key(job: Job, headers: Mapping[str, str]) -> tuple[str, str]:
    """(trace id, root span id) of the job attempt; a stable stand-in without a traceparent."""
    parsed = tracing.parse_traceparent(headers.get(HEADER_TRACEPARENT))
    return parsed if parsed else (f"job-{job.job_id}", "")


def _note_overhead(what: str, job: Job, seconds: float) -> None:
    """Slow hook calls are worth a line: they are MLflow time on the job's critical path."""
    level = logging.INFO if seconds > SLOW_HOOK_SECONDS else logging.DEBUG
    log.log(level, "%s of job %s: MLflow overhead %.1f ms", what, job.job_id, seconds * 1e3)


def begin_job(job: Job, *, reprocess_of: str | None = None) -> dict[str, str]:
    rt = get_runtime()
    headers = {HEADER_JOB_ID: job.job_id}
    if not rt.tracking:
        return headers
    t0 = time.perf_counter()
    traceparent, run_key, _ = tracing.new_traceparent()
    headers[HEADER_TRACEPARENT] = traceparent
    headers[HEADER_PARENT_RUN_ID] = ""
    try:
        started = time.time()
        tags = parent_tags(job, run_key, reprocess_of)
        record = BeginRecord(run_key=run_key, job=job, started_at=started, tags=tags)
        up = rt.health.available()
        if up:  # past the wait, the writer stores the id in the ledger when it has it
            wait = max(0.0, rt.settings.mlflow_http_timeout)
            headers[HEADER_PARENT_RUN_ID] = rt.writer().write_now(record, wait)

        def ledger_writes(pipe: Any) -> None:
            ledger.queue_start(pipe, run_key, job.job_id, started)
            ledger.queue_stage(pipe, run_key, "", {}, {}, time.perf_counter() - t0)

        _round_trip(rt, job, None if up else record, ledger_writes)
    except Exception:
        log.exception("begin_job failed to record job %s (the job goes on)", job.job_id)
    spent = time.perf_counter() - t0
    rt.overhead_seconds += spent
    _note_overhead("begin_job", job, spent)
    return headers


def parent_run_id(job: Job, headers: Mapping[str, str]) -> str:
    if headers.get(HEADER_PARENT_RUN_ID):
        return headers[HEADER_PARENT_RUN_ID]
    rt = get_runtime()
    if not rt.tracking or not tracing.parse_traceparent(headers.get(HEADER_TRACEPARENT)):
        return ""
    try:
        return ledger.get_parent(rt.redis(), _run_key(job, headers)[0])
    except Exception as exc:
        log.warning("parent run of job %s unknown: Redis unavailable (%s)", job.job_id, exc)
        return ""


def _annotate_span(span: Any, rec: StageRecorder, summary: StageSummary) -> None:
    try:
        span.set_attributes({k: v for k, v in summary.span_attributes.items() if v is not None})
        if rec.span_inputs is not None:
            span.set_inputs(rec.span_inputs)
        if rec.span_outputs is not None:
            span.set_outputs(rec.span_outputs)
    except Exception:
        log.debug("could not annotate the stage span", exc_info=True)


def _stage_record(
    job: Job,
    headers: Mapping[str, str],
    stage: str,
    summary: StageSummary,
    times: tuple[float, float, float],
    error: BaseException | None,
) -> StageRecord:
    started, ended, latency = times
    metrics = {**summary.metrics, "latency_seconds": latency}
    tags = dict(summary.tags)
    if error is not None:
        tags["error_type"] = type(error).__name__
        tags["error"] = tag_text(str(error))[:500]
    return StageRecord(
        run_key=_run_key(job, headers)[0],
        job=job,
        parent_run_id=headers.get(HEADER_PARENT_RUN_ID) or "",
        stage=stage,
        started_at=started,
        ended_at=ended,
        status="FAILED" if error is not None else "FINISHED",
        metrics=metrics,
        params=summary.params,
        tags=tags,
        artifacts=summary.artifacts,
    )


@contextmanager
def stage_run(stage: str, job: Job, headers: Mapping[str, str]) -> Iterator[StageRecorder]:
    rt = get_runtime()
    rec = StageRecorder(stage=stage)
    if not rt.tracking:
        yield rec
        return
    name = canonical_stage(stage)
    t0 = time.perf_counter()
    imports_before = rt.import_seconds
    started = time.time()
    error: BaseException | None = None
    summary = StageSummary()
    overhead = 0.0
    body_start = body_end = t0
    try:
        with tracing.stage_span(rt, name, job, headers) as span:
            body_start = time.perf_counter()
            overhead += body_start - t0 - (rt.import_seconds - imports_before)
            try:
                yield rec
            except BaseException as exc:
                error = exc
                raise
            finally:
                body_end = time.perf_counter()
                try:
                    summary = summarize(rec)
                except Exception:
                    log.exception("could not summarize stage %s of job %s", name, job.job_id)
                if span is not None:
                    _annotate_span(span, rec, summary)
    finally:
        try:
            times = (started, time.time(), body_end - body_start)
            record = _stage_record(job, headers, name, summary, times, error)

            def ledger_writes(pipe: Any) -> None:
                spent = overhead + (time.perf_counter() - body_end)
                ledger.queue_stage(pipe, record.run_key, name, record.metrics, record.tags, spent)

            _record(rt, record, ledger_writes)
        except Exception:
            log.exception("could not record stage %s of job %s (the job goes on)", name, job.job_id)
        overhead += time.perf_counter() - body_end
        rt.overhead_seconds += overhead
        _note_overhead(f"stage {name}", job, overhead)


def _reply_outputs(reply: SlackMessage | None, reply_ts: str | None) -> dict[str, Any] | None:
    if reply is None:
        return None
    return {
        "text": reply.text,
        "channel": reply.channel,
        "thread_ts": reply.thread_ts,
        "reply_ts": reply_ts,
        "outcome": str(reply.outcome),
    }


def end_job(
    job: Job,
    headers: Mapping[str, str],
    outcome: Outcome,
    *,
    reply: SlackMessage | None = None,
    error: str | None = None,
    metrics: Mapping[str, float] | None = None,
) -> None:
    rt = get_runtime()
    if not rt.tracking:
        return
    if not tracing.parse_traceparent(headers.get(HEADER_TRACEPARENT)):
        headers = {**headers, **begin_job(job)}  # e.g. a duplicate answered without begin_job
    t0 = time.perf_counter()
    try:
        _end_job(rt, job, headers, Outcome(outcome), reply, error, metrics or {}, t0)
    except Exception:
        log.exception("end_job failed to record job %s", job.job_id)
    spent = time.perf_counter() - t0
    rt.overhead_seconds += spent
    _note_overhead("end_job", job, spent)


def _end_job(
    rt: Runtime,
    job: Job,
    headers: Mapping[str, str],
    outcome: Outcome,
    reply: SlackMessage | None,
    error: str | None,
    explicit: Mapping[str, float],
    t0: float,
) -> None:
    run_key, root_span_id = _run_key(job, headers)
    try:
        totals = ledger.read(rt.redis(), run_key)
    except Exception as exc:
        log.warning(
            "Redis ledger unavailable: job %s totals from end_job(metrics=) only (%s)",
            job.job_id,
            exc,
        )
        totals = ledger.LedgerTotals()
    ended = time.time()
    started = totals.started_at or job.created_at.timestamp()
    failed = outcome == Outcome.error
    tags = {**totals.tags, "outcome": outcome.value}
    if error:
        tags["error"] = tag_text(error)[:500]
    root_tags = {
        "job_id": job.job_id,
        "outcome": outcome.value,
        "channel_id": job.channel_id,
        "domain": domain_of(job.url),
    }
    if totals.tags.get("adapter_name"):
        root_tags["adapter_name"] = totals.tags["adapter_name"]
    root = None
    if root_span_id:
        root = RootSpan(
            trace_id=run_key,
            span_id=root_span_id,
            name=f"job-{job.job_id}",
            start_ns=int(started * 1e9),
            end_ns=int(ended * 1e9),
            inputs=tracing.root_inputs(job),
            outputs=_reply_outputs(reply, totals.tags.get("reply_ts")),
            error=(error or "job failed") if failed else None,
            session=job.channel_id,
            user=job.user_id,
            tags=root_tags,
        )
    metrics = {**totals.metrics, "total_latency_seconds": max(0.0, ended - started)}
    metrics.update({k: float(v) for k, v in explicit.items()})
    metrics["tracking_overhead_seconds"] = totals.overhead_seconds + (time.perf_counter() - t0)
    record = EndRecord(
        run_key=run_key,
        job=job,
        parent_run_id=headers.get(HEADER_PARENT_RUN_ID) or totals.parent_run_id,
        started_at=started,
        ended_at=ended,
        status="FAILED" if failed else "FINISHED",
        metrics=metrics,
        tags=tags,
        root=root,
    )
    _record(rt, record)


def flush(timeout: float = 10.0) -> bool:
    """Wait for this process's queued records (tests, benchmarks, shutdown)."""
    rt = get_runtime()
    return rt.writer().flush(timeout) if rt.tracking else True
