"""One trace per job, its spans made by whichever worker runs each stage.

``begin_job`` does not open a span: it draws the job attempt's trace id and root span id and
passes them on as a W3C ``traceparent`` header. Each stage task joins that context
(``mlflow.tracing.set_tracing_context_from_http_request_headers``) and opens its stage span
under the root id; LLM calls made inside (``mlflow.litellm.autolog``) nest under the stage
span. ``end_job`` then writes the root span ``job-<id>`` itself, with the same ids, spanning the
whole job: inputs (link, Slack message), outputs (the reply), status ERROR when the job failed,
and the trace's info (session = channel, user = Slack user, linked run, ``outcome`` tag).

Why the root is written last: a trace's status, request/response previews, session and user
come from its root span, and the root's inputs and outputs are only all known at the end. A
root opened in ``begin_job`` would have to end there (it cannot cross processes), leaving the
reply and the error status out. Until the root arrives the trace shows as IN_PROGRESS, which
is true; a job whose ``end_job`` never ran stays IN_PROGRESS.

One export per job. MLflow's exporter would send every span to the server as it ends (one
``log_spans`` request per stage span and per LLM span). Instead, while a stage span is open,
this process's spans of that trace are *kept* (``_KeepingExporter`` wraps MLflow's exporter and
passes every other trace through untouched): they are already redacted (the span processor runs
before export) and go, as JSON, to the job attempt's ledger with the stage's values. ``end_job``
takes them from the ledger and ``write_trace`` sends them with the root span in ONE
``TracingClient.log_spans`` call, then ``start_trace`` (the trace info: tags, metadata, state,
previews, the job's token usage), the two calls MLflow's own exporter makes when a root span
ends (the server upserts spans by id and merges trace info). This depends on mlflow's tracing
client and on where its provider keeps the exporter (``_get_span_processor``): re-check on
upgrade (tests cover it); if the exporter cannot be wrapped, spans are exported as they end.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from observability.mlflow_store import MlflowStore
from observability.records import RootSpan
from pipeline.constants import HEADER_TRACEPARENT, HEADER_TRACESTATE
from pipeline.models import Job
from pipeline.stages import Stage

log = logging.getLogger("observability")

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_autolog_pid: int | None = None


def new_traceparent() -> tuple[str, str, str]:
    """(traceparent, trace id hex, root span id hex) for a new job attempt."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    match = _TRACEPARENT.match((value or "").strip().lower())
    return (match.group(1), match.group(2)) if match else None


def ensure_litellm_autolog() -> None:
    """LLM-call spans (messages, tokens, cost) under the stage span; once per process.

    Armed here, enabled when the LLM client first loads litellm (``pipeline.llm_litellm.
    on_load``), or now if it has: the offline model never loads litellm, so an offline job
    never pays its import (seconds) nor autolog's patching; a real model call loads it before
    its first request and is patched by then (inside the stage's body: its time is the
    stage's, not MLflow's)."""
    global _autolog_pid

    if _autolog_pid == os.getpid():
        return
    _autolog_pid = os.getpid()
    from pipeline.llm_litellm import on_load

    on_load(_autolog_litellm)


def _autolog_litellm(_litellm: Any) -> None:
    try:
        import mlflow

        mlflow.litellm.autolog(log_traces=True, silent=True)
    except Exception as exc:  # stage spans still work
        log.info("mlflow.litellm.autolog unavailable: %s", exc)


def _redacted_exception(exc: BaseException, redact: Callable[[str], str]) -> BaseException:
    """An exception of the same name carrying the redacted message: what the span records
    (its event holds the message, and a provider error can echo an API key)."""
    kind = type(type(exc).__name__, (Exception,), {"__module__": type(exc).__module__})
    return kind(redact(str(exc)))


_kept_lock = threading.Lock()
_kept: dict[int, list[str]] = {}  # OTel trace id of an open stage span -> its finished spans


def _keeping_exporter_class() -> type:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class KeepingExporter(SpanExporter):
        """Keeps the spans of traces with an open stage span in this process (see the module
        docstring); every other span goes to MLflow's own exporter as before."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def export(self, spans: Any) -> Any:
            from mlflow.entities.span import Span

            others = []
            for otel in spans:
                with _kept_lock:
                    box = _kept.get(otel.context.trace_id)
                if box is None:
                    others.append(otel)
                    continue
                box.append(json.dumps(Span(otel).to_dict(), default=str))
            return self.inner.export(others) if others else SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            self.inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(getattr(self.inner, "force_flush", lambda *_: True)(timeout_millis))

        def __getattr__(self, name: str) -> Any:  # MLflow reads its exporter's own fields
            return getattr(self.inner, name)

    return KeepingExporter


_KeepingExporter: type | None = None


def keep_spans_here() -> bool:
    """Wrap the exporter of MLflow's current span processor (once per provider: MLflow builds
    a new one after ``set_destination``, ``reset``, ``enable``). False: not possible, spans are
    exported one by one as they end."""
    global _KeepingExporter
    try:
        from mlflow.tracing.provider import _get_span_processor

        processor = _get_span_processor()
        exporter = getattr(processor, "span_exporter", None)
        if processor is None or exporter is None:
            return False
        if _KeepingExporter is None:
            _KeepingExporter = _keeping_exporter_class()
        if not isinstance(exporter, _KeepingExporter):
            processor.span_exporter = _KeepingExporter(exporter)
        return True
    except Exception:
        log.debug("could not keep this process's spans for one export per job", exc_info=True)
        return False


@contextmanager
def stage_span(
    ready: bool,
    stage: Stage,
    job: Job,
    headers: Mapping[str, str],
    redact: Callable[[str], str] = str,
    kept: list[str] | None = None,
) -> Iterator[Any]:
    """The stage's span, joined to the job's trace; ``None`` when tracing is off or MLflow is
    away (then nothing is recorded and nothing waits). Exceptions from the body propagate
    through the span, which records them and ends with status ERROR. With ``kept``, the finished
    spans of this stage (the stage span, its LLM spans) are appended to it as JSON instead of
    being exported now (one export per job: see the module docstring)."""
    carrier = {"traceparent": headers.get(HEADER_TRACEPARENT) or ""}
    if headers.get(HEADER_TRACESTATE):
        carrier["tracestate"] = headers[HEADER_TRACESTATE]
    parsed = parse_traceparent(carrier["traceparent"])
    if not parsed or not ready:
        yield None
        return
    stack = ExitStack()
    span = None
    otel_trace_id = int(parsed[0], 16)
    box: list[str] | None = None
    try:
        import mlflow
        from mlflow.tracing import set_tracing_context_from_http_request_headers

        if stage.uses_llm:
            ensure_litellm_autolog()
        stack.enter_context(set_tracing_context_from_http_request_headers(carrier))
        span = stack.enter_context(mlflow.start_span(stage.span_name, span_type=stage.span_type))
        span.set_attributes({"job_id": job.job_id, "stage": stage.name})
        # after the first span: MLflow builds its provider (and exporter) lazily, at that span
        if kept is not None and keep_spans_here():
            box = []
            with _kept_lock:
                _kept[otel_trace_id] = box
    except Exception:
        log.debug("could not open the %s span", stage.name, exc_info=True)
        stack.close()
        span = None
    try:
        yield span
    except BaseException as exc:
        safe = _redacted_exception(exc, redact)
        stack.__exit__(type(safe), safe, None)  # the span records the redacted copy
        raise
    finally:
        stack.close()
        if box is not None:
            with _kept_lock:
                _kept.pop(otel_trace_id, None)
            if kept is not None:
                kept.extend(box)


def root_inputs(job: Job) -> dict[str, Any]:
    return {
        "url": job.url,
        "message": job.message_text,
        "channel": job.channel_id,
        "message_ts": job.message_ts,
        "user": job.user_id,
    }


def _fixed_ids() -> Any:
    """An OTel id generator handing out the ids drawn in ``begin_job`` (one root at a time)."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class FixedIds(IdGenerator):
        trace_id = 0
        span_id = 0

        def generate_trace_id(self) -> int:
            return self.trace_id

        def generate_span_id(self) -> int:
            return self.span_id

    return FixedIds()


_ids: Any = None
_ids_lock = threading.Lock()
_tracer: Any = None


def _root_otel_span(root: RootSpan) -> Any:
    global _tracer, _ids
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    with _ids_lock:
        if _tracer is None:  # private: never the global provider, never exported by itself
            _ids = _fixed_ids()
            provider = TracerProvider(
                resource=Resource.get_empty(),
                id_generator=_ids,
                shutdown_on_exit=False,
            )
            _tracer = provider.get_tracer("technoshare.observability")
        _ids.trace_id, _ids.span_id = int(root.trace_id, 16), int(root.span_id, 16)
        return _tracer.start_span(root.name, start_time=root.start_ns)


def write_trace(
    store: MlflowStore, root: RootSpan, parent_run_id: str, spans: Sequence[str] = ()
) -> None:
    """Write the root span with the stages' kept ``spans`` (one request), then the trace info.
    Raises on MLflow errors (the caller decides)."""
    from mlflow.entities.span import LiveSpan, Span
    from mlflow.entities.trace_info import TraceInfo
    from mlflow.entities.trace_location import TraceLocation
    from mlflow.entities.trace_state import TraceState
    from mlflow.tracing.client import TracingClient
    from mlflow.tracing.constant import TraceMetadataKey, TraceTagKey
    from mlflow.tracing.utils import generate_mlflow_trace_id_from_otel_trace_id

    experiment_id = store.experiment_id()
    trace_id = generate_mlflow_trace_id_from_otel_trace_id(int(root.trace_id, 16))
    otel_span = _root_otel_span(root)
    span = LiveSpan(otel_span, trace_id, span_type="CHAIN")
    span.set_inputs(root.inputs)
    if root.outputs is not None:
        span.set_outputs(root.outputs)
    span.set_attributes(
        {"job_id": root.tags.get("job_id", ""), "outcome": root.tags.get("outcome", "")}
    )
    failed = root.error is not None
    if failed:
        span.record_exception(root.error or "job failed")  # status ERROR + an exception event
    else:
        span.set_status("OK")
    otel_span.end(end_time=root.end_ns)
    client = TracingClient(store.uri)
    stage_spans = []
    for text in spans:
        try:
            stage_spans.append(Span.from_dict(json.loads(text)))
        except Exception:  # one unreadable span must not cost the job its trace
            log.info("dropping an unreadable span of trace %s", trace_id, exc_info=True)
    client.log_spans(experiment_id, [span.to_immutable_span(), *stage_spans])

    metadata = {TraceMetadataKey.SOURCE_RUN: parent_run_id} if parent_run_id else {}
    if root.session:
        metadata[TraceMetadataKey.TRACE_SESSION] = root.session
    if root.user:
        metadata[TraceMetadataKey.TRACE_USER] = root.user
    if root.usage:  # the job's LLM calls from every process, not only the spans seen here
        metadata[TraceMetadataKey.TOKEN_USAGE] = json.dumps(root.usage)
    reply = (root.outputs or {}).get("text")
    info = TraceInfo(
        trace_id=trace_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=root.start_ns // 1_000_000,
        execution_duration=max(0, (root.end_ns - root.start_ns) // 1_000_000),
        state=TraceState.ERROR if failed else TraceState.OK,
        request_preview=json.dumps(root.inputs)[:1000],
        response_preview=(reply if isinstance(reply, str) else json.dumps(root.outputs))[:1000],
        trace_metadata=metadata,
        tags={**root.tags, TraceTagKey.TRACE_NAME: root.name},
    )
    client.start_trace(info)
