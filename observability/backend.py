"""The MLflow ``Recorder``: parent run + nested stage runs + one trace per job, across worker
processes, without ever making a job wait for MLflow.

What each call costs the job (its caller's thread), MLflow up or down:
- ``begin_job``: draws the trace ids, starts the ledger and creates the parent run at once
  (on a helper thread, not behind the writer's queue), waiting for its id at most
  ``MLFLOW_HTTP_TIMEOUT``: an id in the headers lets every stage write its run without looking
  the parent up. MLflow known to be down, or slow: no wait; the header stays empty and the
  stages find their parent through the ledger (their records wait for it).
- ``stage``: opens the stage span (joined via ``traceparent``), and on exit derives the
  stage's values from its output, adds them to the ledger and queues the stage run.
- ``end_job``: reads the ledger once, queues the parent's totals, params, status and the
  trace's root span (whose token usage is the job's, summed across processes).
While MLflow is down (cached health state) records go straight to the outbox.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from observability import tracing
from observability.derive import StageSummary, domain_of, summarize, tag_text
from observability.ledger import LedgerTotals
from observability.mlflow_parent import parent_tags
from observability.mlflow_writes import ReplyNotFound, is_permanent
from observability.recorder import Feedback, StageObservation
from observability.records import (
    BeginRecord,
    EndRecord,
    FeedbackRecord,
    RootSpan,
    StageRecord,
    redact_record,
)
from observability.runtime import Runtime
from pipeline.constants import HEADER_JOB_ID, HEADER_PARENT_RUN_ID, HEADER_TRACEPARENT
from pipeline.models import Job, Outcome, SlackMessage
from pipeline.redact import Redactor
from pipeline.settings import Settings
from pipeline.stages import Stage

log = logging.getLogger("observability")

SLOW_CALL_SECONDS = 0.010
GATE_PARAMS = (
    "gate_tldr_items",
    "gate_summary_full_min",
    "gate_summary_full_max",
    "gate_summary_partial_min",
    "gate_summary_partial_max",
    "gate_min_project_bullets",
    "gate_max_project_bullets",
    "gate_max_similar_tech",
)


def app_version() -> str:
    try:
        return metadata.version("technoshare-commentator")
    except metadata.PackageNotFoundError:
        return "unknown"


def settings_params(settings: Settings) -> dict[str, str]:
    """What explains a difference between two jobs besides their per-stage model and prompt."""
    params = {name: str(getattr(settings, name)) for name in GATE_PARAMS}
    params["app_version"] = app_version()
    params["llm_fallback_models"] = ",".join(settings.llm_fallback_models) or "-"
    return params


def _run_key(job: Job, headers: Mapping[str, str]) -> tuple[str, str]:
    """(trace id, root span id) of the job attempt; a stable stand-in without a traceparent."""
    parsed = tracing.parse_traceparent(headers.get(HEADER_TRACEPARENT))
    return parsed if parsed else (f"job-{job.job_id}", "")


def _note_overhead(what: str, job: Job, seconds: float) -> None:
    """Slow calls are worth a line: they are MLflow time on the job's critical path."""
    level = logging.INFO if seconds > SLOW_CALL_SECONDS else logging.DEBUG
    log.log(level, "%s of job %s: MLflow overhead %.1f ms", what, job.job_id, seconds * 1e3)


class MlflowRecorder:
    def __init__(self, settings: Settings, *, local: bool = False) -> None:
        self.settings = settings
        self.local = local
        self.redactor = Redactor.from_settings(settings)
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

    @property
    def runtime(self) -> Runtime:
        """This process's runtime (a new one after a fork)."""
        rt = self._runtime
        if rt is None or rt.pid != os.getpid():
            with self._lock:
                if self._runtime is None or self._runtime.pid != os.getpid():
                    self._runtime = Runtime(self.settings, local=self.local)
                    self._runtime.redact = lambda r: redact_record(r, self.redactor, artifacts=True)
                    self._runtime.store.redact = self.redactor
                rt = self._runtime
        return rt

    # --- the Recorder protocol ---------------------------------------------------------------
    def begin_job(
        self, job: Job, *, reprocess_of: str | None = None, followup_of: str | None = None
    ) -> dict[str, str]:
        rt = self.runtime
        t0 = time.perf_counter()
        traceparent, run_key, _ = tracing.new_traceparent()
        headers = {HEADER_JOB_ID: job.job_id, HEADER_TRACEPARENT: traceparent}
        headers[HEADER_PARENT_RUN_ID] = ""
        try:
            started = time.time()
            tags = parent_tags(job, run_key, reprocess_of, followup_of)
            record = BeginRecord(run_key=run_key, job=job, started_at=started, tags=tags)
            record = redact_record(record, self.redactor, artifacts=False)
            self._ledger_call(job, lambda: rt.ledger.start(run_key, job.job_id, started))
            if rt.health.available():  # past the wait, the writer stores the id in the ledger
                wait = max(0.0, self.settings.mlflow_http_timeout)
                headers[HEADER_PARENT_RUN_ID] = rt.writer.write_now(record, wait)
            else:
                rt.outbox.push(record)
        except Exception:
            log.exception("begin_job failed to record job %s (the job goes on)", job.job_id)
        self._spent("begin_job", job, time.perf_counter() - t0, run_key)
        return headers

    def parent_run_id(self, job: Job, headers: Mapping[str, str]) -> str:
        if headers.get(HEADER_PARENT_RUN_ID):
            return headers[HEADER_PARENT_RUN_ID]
        if not tracing.parse_traceparent(headers.get(HEADER_TRACEPARENT)):
            return ""
        try:
            return self.runtime.ledger.get_parent(_run_key(job, headers)[0])
        except Exception as exc:
            log.warning("parent run of job %s unknown: ledger unavailable (%s)", job.job_id, exc)
            return ""

    @contextmanager
    def stage(
        self, stage: Stage, job: Job, headers: Mapping[str, str]
    ) -> Iterator[StageObservation]:
        rt = self.runtime
        obs = StageObservation(stage=stage)
        t0 = time.perf_counter()
        error: BaseException | None = None
        summary = StageSummary()
        overhead = 0.0
        body_start = body_end = t0
        spans: list[str] = []  # this stage's finished spans, for the job's one trace export
        try:
            ready = rt.tracing_ready()
            with tracing.stage_span(ready, stage, job, headers, self.redactor, spans) as span:
                body_start = time.perf_counter()
                overhead += body_start - t0
                try:
                    yield obs
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    body_end = time.perf_counter()
                    summary = self._summarize(obs, job)
                    if span is not None:
                        _annotate_span(span, summary)
        finally:
            body = (body_start, body_end)
            overhead += self._record_stage(
                rt, stage, job, headers, obs, summary, error, body, spans
            )
            rt.overhead_seconds += overhead
            _note_overhead(f"stage {stage.name}", job, overhead)

    def end_job(
        self,
        job: Job,
        headers: Mapping[str, str],
        outcome: Outcome,
        *,
        reply: SlackMessage | None = None,
        error: str | None = None,
    ) -> None:
        if not tracing.parse_traceparent(headers.get(HEADER_TRACEPARENT)):
            headers = {**headers, **self.begin_job(job)}  # e.g. a duplicate answered at once
        t0 = time.perf_counter()
        rt = self.runtime
        try:
            run_key, _ = _run_key(job, headers)
            totals = self._ledger_call(job, lambda: rt.ledger.finish(run_key)) or LedgerTotals()
            record = self._end_record(job, headers, Outcome(outcome), reply, error, totals, t0)
            self._submit(rt, record)
        except Exception:
            log.exception("end_job failed to record job %s", job.job_id)
        spent = time.perf_counter() - t0
        rt.overhead_seconds += spent
        _note_overhead("end_job", job, spent)

    def record_feedback(self, feedback: Feedback) -> None:
        """Written at once when MLflow is up (``ReplyNotFound`` tells the caller to retry
        later); kept in the outbox when MLflow is down or fails, like every other record."""
        rt = self.runtime
        placeholder = Job(job_id=f"feedback-{feedback.reply_ts}", url="", canonical_url="")
        record = FeedbackRecord(
            run_key=f"feedback-{feedback.channel}-{feedback.reply_ts}",
            job=placeholder,
            channel=feedback.channel,
            reply_ts=feedback.reply_ts,
            user=feedback.user,
            positive=feedback.positive,
            reaction=feedback.reaction,
        )
        if not rt.health.available():
            rt.outbox.push(record)
            return
        try:
            rt.write(record)
        except ReplyNotFound:
            raise
        except Exception as exc:
            if is_permanent(exc):
                raise
            rt.health.mark_down(f"{type(exc).__name__}: {exc}"[:300])
            rt.outbox.push(record)

    def flush(self, timeout: float = 10.0) -> bool:
        return self.runtime.writer.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        if self._runtime is not None and self._runtime.pid == os.getpid():
            self._runtime.shutdown(timeout)

    # --- beyond the protocol -----------------------------------------------------------------
    def replay_outbox(self, max_records: int = 1000) -> dict[str, Any]:
        return self.runtime.replay_outbox(max_records)

    def kept_records(self) -> tuple[int, str]:
        """(records waiting in the outbox, where they are kept)."""
        rt = self.runtime
        try:
            return rt.outbox.pending(), rt.outbox.where
        except Exception:
            return -1, rt.outbox.where

    @property
    def overhead_seconds(self) -> float:
        return self.runtime.overhead_seconds

    # --- helpers -----------------------------------------------------------------------------
    def _ledger_call(self, job: Job, call: Any) -> Any:
        try:
            return call()
        except Exception as exc:
            log.warning("MLflow ledger unavailable for job %s: %s", job.job_id, exc)
            return None

    def _submit(self, rt: Runtime, record: Any) -> None:
        """Small texts are redacted here; the artifacts on the writer thread (``rt.write``),
        or here when the record goes straight to the outbox."""
        if rt.health.available():
            rt.writer.submit(redact_record(record, self.redactor, artifacts=False))
        else:
            rt.outbox.push(redact_record(record, self.redactor, artifacts=True))

    def _spent(self, what: str, job: Job, seconds: float, run_key: str) -> None:
        rt = self.runtime
        rt.overhead_seconds += seconds
        self._ledger_call(job, lambda: rt.ledger.add_stage(run_key, "", {}, {}, seconds))
        _note_overhead(what, job, seconds)

    @staticmethod
    def _summarize(obs: StageObservation, job: Job) -> StageSummary:
        try:
            return summarize(obs)
        except Exception:
            log.exception("could not summarize stage %s of job %s", obs.stage.name, job.job_id)
            return StageSummary()

    def _record_stage(
        self,
        rt: Runtime,
        stage: Stage,
        job: Job,
        headers: Mapping[str, str],
        obs: StageObservation,
        summary: StageSummary,
        error: BaseException | None,
        body: tuple[float, float],
        spans: list[str],
    ) -> float:
        """Queue the stage run and add its values to the ledger; returns the time it took."""
        body_start, body_end = body
        try:
            metrics = {**summary.metrics, "latency_seconds": max(0.0, body_end - body_start)}
            tags = dict(summary.tags)
            if error is not None:
                tags["error_type"] = type(error).__name__
                tags["error"] = tag_text(str(error))[:500]
            record = StageRecord(
                run_key=_run_key(job, headers)[0],
                job=job,
                parent_run_id=headers.get(HEADER_PARENT_RUN_ID) or "",
                stage=stage.run_name,
                started_at=obs.started_at,
                ended_at=time.time(),
                status="FAILED" if error is not None else "FINISHED",
                metrics=metrics,
                params=summary.params,
                tags=tags,
                artifacts=summary.artifacts,
            )
            spent = time.perf_counter() - body_end
            self._ledger_call(
                job,
                lambda: rt.ledger.add_stage(
                    record.run_key, stage.name, record.metrics, record.tags, spent, spans
                ),
            )
            self._submit(rt, record)
        except Exception:
            log.exception("could not record stage %s of job %s", stage.name, job.job_id)
        return time.perf_counter() - body_end

    def _end_record(
        self,
        job: Job,
        headers: Mapping[str, str],
        outcome: Outcome,
        reply: SlackMessage | None,
        error: str | None,
        totals: LedgerTotals,
        t0: float,
    ) -> EndRecord:
        run_key, root_span_id = _run_key(job, headers)
        ended = time.time()
        started = totals.started_at or job.created_at.timestamp()
        failed = outcome == Outcome.error
        tags = {**totals.tags, "outcome": outcome.value}
        if error:
            tags["error"] = tag_text(error)[:500]
        # params explain a difference between two jobs (the runs page's Compare view)
        params = settings_params(self.settings)
        for name, value in totals.tags.items():
            if name.endswith((".model", ".prompt_name", ".prompt_version")):
                params[name] = value
        if totals.tags.get("adapter_name"):
            params["adapter"] = totals.tags["adapter_name"]
        root = None
        if root_span_id:
            root = self._root_span(job, run_key, root_span_id, outcome, reply, error, totals)
            root.start_ns, root.end_ns = int(started * 1e9), int(ended * 1e9)
        metrics = {**totals.metrics, "total_latency_seconds": max(0.0, ended - started)}
        metrics["tracking_overhead_seconds"] = totals.overhead_seconds + (time.perf_counter() - t0)
        return EndRecord(
            run_key=run_key,
            job=job,
            parent_run_id=headers.get(HEADER_PARENT_RUN_ID) or totals.parent_run_id,
            started_at=started,
            ended_at=ended,
            status="FAILED" if failed else "FINISHED",
            metrics=metrics,
            params=params,
            tags=tags,
            root=root,
            spans=totals.spans if root is not None else [],
        )

    @staticmethod
    def _root_span(
        job: Job,
        run_key: str,
        root_span_id: str,
        outcome: Outcome,
        reply: SlackMessage | None,
        error: str | None,
        totals: LedgerTotals,
    ) -> RootSpan:
        root_tags = {
            "job_id": job.job_id,
            "outcome": outcome.value,
            "channel_id": job.channel_id,
            "domain": domain_of(job.url),
        }
        if totals.tags.get("adapter_name"):
            root_tags["adapter_name"] = totals.tags["adapter_name"]
        inputs = int(totals.metrics.get("input_tokens", 0))
        outputs = int(totals.metrics.get("output_tokens", 0))
        usage = {"input_tokens": inputs, "output_tokens": outputs, "total_tokens": inputs + outputs}
        return RootSpan(
            trace_id=run_key,
            span_id=root_span_id,
            name=f"job-{job.job_id}",
            start_ns=0,
            end_ns=0,
            inputs=tracing.root_inputs(job),
            outputs=_reply_outputs(reply, totals.tags.get("reply_ts")),
            error=(error or "job failed") if outcome == Outcome.error else None,
            session=job.channel_id,
            user=job.user_id,
            tags=root_tags,
            usage=usage if inputs or outputs else {},
        )


def _annotate_span(span: Any, summary: StageSummary) -> None:
    try:
        span.set_attributes({k: v for k, v in summary.span_attributes.items() if v is not None})
    except Exception:
        log.debug("could not annotate the stage span", exc_info=True)


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
