"""Writing records to MLflow: the parent run, one nested run per stage, the parent's totals and
the trace's root span, and reactions as feedback on a trace.

Runs are created with ``MlflowClient.create_run`` (nested ones with tag ``mlflow.parentRunId``)
by the process that made the record; the parent is never reopened with ``start_run`` (that
flips its status). A stage run costs four requests: ``create_run`` with all its tags, ONE
``log_batch`` (metrics, params), one upload per artifact (to the artifact URI the create
answered: no ``runs/get``), ``update`` (terminated). The parent's end: one ``log_batch`` (totals,
tags, params) and ``update``; the trace: one ``log_spans`` (root + every stage's spans) and
``start_trace``. The parent run id travels in the task headers and the ledger, so the normal
path looks nothing up in MLflow. That is 25 requests a job; against a server running the
``technoshare`` app (``observability/mlflow_server_app.py``) a stage run is ONE request to its
batch endpoint, and so are the parent's create and its end (``observability/mlflow_batch.py``):
9 a job. A
server without it answers the first such request with a 404 and the process then writes to it
the standard way.

The same functions write live records (``replay=False``) and records from the outbox
(``replay=True``), which look runs up by their keys first, so a record is never written twice
(through the batch endpoint the server does that look-up in the same request, live writes too:
a stage run's id there is its record id, so a write retried after a lost answer finds the run
it made by its key; a replay also sends ``find_by_tag``, for a run written the standard way).
Who creates the parent run, and how a record finds it: ``observability.mlflow_parent``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from observability import mlflow_batch
from observability.ledger import Ledger
from observability.mlflow_parent import apply_begin, find_run, ms, resolve_parent
from observability.mlflow_store import MlflowStore
from observability.outbox import ParentPending, TraceNotWritten
from observability.records import (
    RECORD_ID_TAG,
    RUN_KEY_TAG,
    RUN_KIND_TAG,
    AnyRecordType,
    BeginRecord,
    EndRecord,
    FeedbackRecord,
    StageRecord,
)
from observability.tracing import write_trace

log = logging.getLogger("observability")

FEEDBACK_NAME = "user_reaction"
FEEDBACK_TAG = "user_feedback"
FEEDBACK_PATIENCE_SECONDS = 3600.0  # a reaction whose reply run never appears is dropped then
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # Slack channel ids and message timestamps
_OTEL_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class ReplyNotFound(LookupError):
    """No job run records this reply yet (MLflow is behind, or it is not our reply)."""


def is_permanent(exc: BaseException) -> bool:
    """A 4xx from MLflow (bad value, deleted run), or a reaction whose reply never appeared:
    retrying the record cannot help."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, ReplyNotFound):
        return True
    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return 400 <= status < 500 and status != 429
    return False


def stage_tags(record: StageRecord, parent: str) -> dict[str, str]:
    return {
        **record.tags,
        "mlflow.parentRunId": parent,
        "mlflow.runName": record.stage,
        RUN_KIND_TAG: "stage",
        RECORD_ID_TAG: record.record_id,
        "job_id": record.job.job_id,
        "stage": record.stage,
    }


def _metrics_json(metrics: dict[str, float], stamp: int) -> list[dict[str, Any]]:
    return [{"key": k, "value": v, "timestamp": stamp, "step": 0} for k, v in metrics.items()]


def _batch_stage(
    store: MlflowStore, record: StageRecord, parent: str, *, replay: bool
) -> str | None:
    """The stage run in one request (created, or the one with its record id finished); None
    when the server has no batch endpoint (nothing written) or the artifacts do not fit one.
    The run's id is the record id where the server's store lets it choose (a retried write is
    then found by its key); a replay also asks for a run of that record made the standard way,
    whose id MLflow chose."""
    if not mlflow_batch.usable(store) or not mlflow_batch.artifacts_fit(record.artifacts):
        return None
    tags = stage_tags(record, parent)
    stamp = ms(record.ended_at)
    chosen = mlflow_batch.NEW_RUN_ID.fullmatch(record.record_id) is not None
    body = {
        "experiment_id": store.experiment_id(),
        **({"new_run_id": record.record_id} if chosen else {}),
        **({"find_by_tag": RECORD_ID_TAG} if replay or not chosen else {}),
        "start_time": ms(record.started_at),
        "user_id": tags.get("mlflow.user", "unknown"),  # as MlflowClient.create_run sends it
        "tags": tags,
        "metrics": _metrics_json(record.metrics, stamp),
        "params": record.params,
        "artifacts": record.artifacts,
        "status": record.status,
        "end_time": stamp,
    }
    try:
        return str(mlflow_batch.write_run(store, body)["run_id"])
    except mlflow_batch.Unavailable:
        return None


def apply_stage(store: MlflowStore, ledger: Ledger, record: StageRecord, *, replay: bool) -> str:
    from mlflow.entities import Metric, Param

    client = store.client()
    parent = resolve_parent(store, ledger, record, replay=replay)
    if (written := _batch_stage(store, record, parent, replay=replay)) is not None:
        return written
    run_id = artifact_uri = ""
    if replay:  # created before the outage cut it short? then finish that run, not a second one
        run = find_run(store, f"tags.{RECORD_ID_TAG} = '{record.record_id}'")
        if run is not None and run.info.status in ("FINISHED", "FAILED"):
            return str(run.info.run_id)  # written before the outbox entry was removed
        if run is not None:
            run_id, artifact_uri = str(run.info.run_id), str(run.info.artifact_uri)
    if not run_id:
        tags = stage_tags(record, parent)
        created = client.create_run(store.experiment_id(), ms(record.started_at), tags)
        run_id, artifact_uri = str(created.info.run_id), str(created.info.artifact_uri)
    stamp = ms(record.ended_at)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, stamp, 0) for k, v in record.metrics.items()],
        params=[Param(k, v) for k, v in record.params.items()],
    )
    if record.artifacts:
        log_texts(store, artifact_uri, record.artifacts)
    client.set_terminated(run_id, record.status, end_time=stamp)
    return run_id


def log_texts(store: MlflowStore, artifact_uri: str, texts: dict[str, str]) -> None:
    """Upload ``texts`` (file name -> text) to a run's artifact URI: one request per file.
    ``MlflowClient.log_text`` would first fetch the run (``runs/get``) to learn that URI."""
    import tempfile

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(artifact_uri, tracking_uri=store.uri)
    with tempfile.TemporaryDirectory(prefix="ts-artifacts-") as tmp:
        for name, text in texts.items():
            path = os.path.join(tmp, os.path.basename(name))
            with open(path, "w", encoding="utf-8") as out:
                out.write(text)
            repo.log_artifact(path, os.path.dirname(name) or None)


def apply_end(store: MlflowStore, ledger: Ledger, record: EndRecord, *, replay: bool) -> str:
    from mlflow.entities import Metric, Param, RunTag

    client = store.client()
    parent = resolve_parent(store, ledger, record, replay=replay)
    stamp = ms(record.ended_at)
    if not _batch_end(store, record, parent, stamp):
        client.log_batch(
            parent,
            metrics=[Metric(k, v, stamp, 0) for k, v in record.metrics.items()],
            params=[Param(k, v) for k, v in record.params.items()],
            tags=[RunTag(k, v) for k, v in record.tags.items()],
        )
        client.set_terminated(parent, record.status, end_time=stamp)
    if record.root is not None and store.tracing:
        _write_trace_patiently(store, record, parent)
    return parent


def _batch_end(store: MlflowStore, record: EndRecord, parent: str, stamp: int) -> bool:
    """The parent's totals, tags, params and termination in one request (all idempotent: a
    repeated end logs the same values again); False when the server has no batch endpoint."""
    if not mlflow_batch.usable(store):
        return False
    body = {
        "run_id": parent,
        "metrics": _metrics_json(record.metrics, stamp),
        "params": record.params,
        "tags": record.tags,
        "status": record.status,
        "end_time": stamp,
    }
    try:
        mlflow_batch.write_run(store, body)
    except mlflow_batch.Unavailable:
        return False
    return True


def _write_trace_patiently(store: MlflowStore, record: EndRecord, parent: str) -> None:
    """Three tries: a plain MLflow server with litellm installed imports it on each worker's
    first trace with LLM spans, which can outlast the 3 s client timeout (measured: 3.2-3.9 s
    server side on an idle machine, more on a busy one; later ones ~60 ms; the technoshare app
    imports it at start), and a retry may reach the other, still cold, worker. If all three
    fail, ``TraceNotWritten``: the end record goes to the outbox and the drainer writes it
    again (the run's values repeat, spans are upserted by id), so a slow server delays the
    trace instead of losing it, and is not taken for a down one. Only a trace MLflow rejects (4xx) is logged and dropped."""
    for attempt in (1, 2, 3):
        try:
            write_trace(store, record.root, parent, record.spans)  # type: ignore[arg-type]
            return
        except Exception as exc:
            if is_permanent(exc):
                log.info("trace of job %s not written", record.job.job_id, exc_info=True)
                return
            if attempt == 3:
                raise TraceNotWritten(f"{type(exc).__name__}: {exc}"[:300]) from exc


def find_reply_run(client: Any, experiment_id: str, channel: str, reply_ts: str) -> Any | None:
    if not (_SAFE.match(channel) and _SAFE.match(reply_ts)):
        return None
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.channel_id = '{channel}' and tags.reply_ts = '{reply_ts}'",
        max_results=10,
    )
    jobs = [
        r
        for r in runs
        if "mlflow.parentRunId" not in r.data.tags and r.data.tags.get(RUN_KIND_TAG, "job") == "job"
    ]
    return jobs[0] if jobs else None


def trace_id_of(run: Any) -> str | None:
    from mlflow.tracing.utils import generate_mlflow_trace_id_from_otel_trace_id

    key = run.data.tags.get(RUN_KEY_TAG, "")
    if _OTEL_TRACE_ID.match(key):
        return str(generate_mlflow_trace_id_from_otel_trace_id(int(key, 16)))
    return None


def apply_feedback(store: MlflowStore, record: FeedbackRecord, *, replay: bool) -> str:
    """Log the reaction on the trace of the job attempt whose reply it is; the run gets tag
    ``user_feedback``. ``ReplyNotFound`` while the reply's run or trace is not in MLflow yet
    (a replay keeps waiting for it, up to ``FEEDBACK_PATIENCE_SECONDS``)."""
    from mlflow.entities import AssessmentSource, AssessmentSourceType, Feedback
    from mlflow.tracing.client import TracingClient

    client, tracing = store.client(), TracingClient(tracking_uri=store.uri)
    try:
        run = find_reply_run(client, store.experiment_id(), record.channel, record.reply_ts)
        if run is None:
            raise ReplyNotFound(f"no job run with reply {record.channel}/{record.reply_ts}")
        trace_id = trace_id_of(run)
        if trace_id is None:
            raise ReplyNotFound(f"job run {run.info.run_id} has no trace id")
        try:
            tracing.get_trace_info(trace_id)
        except Exception as exc:  # the trace may lag the run's tags
            raise ReplyNotFound(f"trace {trace_id} of run {run.info.run_id} not found") from exc
    except ReplyNotFound:
        if replay and time.time() - record.made_at < FEEDBACK_PATIENCE_SECONDS:
            raise ParentPending(record.reply_ts) from None
        raise
    job_id = run.data.tags.get("job_id", "")
    tracing.log_assessment(
        trace_id,
        Feedback(
            name=FEEDBACK_NAME,
            value=record.positive,
            source=AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id=record.user),
            rationale=f":{record.reaction}: on the bot's reply in Slack",
            metadata={"channel": record.channel, "reply_ts": record.reply_ts, "job_id": job_id},
        ),
    )
    client.set_tag(run.info.run_id, FEEDBACK_TAG, "positive" if record.positive else "negative")
    return trace_id


def apply(store: MlflowStore, ledger: Ledger, record: AnyRecordType, *, replay: bool) -> str:
    if isinstance(record, BeginRecord):
        return apply_begin(store, ledger, record, replay=replay)
    if isinstance(record, StageRecord):
        return apply_stage(store, ledger, record, replay=replay)
    if isinstance(record, EndRecord):
        return apply_end(store, ledger, record, replay=replay)
    return apply_feedback(store, record, replay=replay)
