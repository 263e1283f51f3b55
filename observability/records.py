"""What gets written to MLflow, as plain JSON-able records.

A hook call turns into one record; the same record is written live by the background writer or,
when MLflow is away, kept in the Redis outbox and written by ``replay_outbox`` later. Records
carry everything needed to write them from any process (the job, the parent's key, times),
never a live object.

``run_key`` is the job attempt's trace id (32 hex digits, from ``traceparent``): it names the
attempt's ledger in Redis and is stored on the parent run as tag ``ts_run_key``, so a parent
created late (after an outage) is still found by every record of its attempt.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from pipeline.models import Job
from pipeline.redact import Redactor

RUN_KEY_TAG = "ts_run_key"  # on the parent: the attempt's trace id
RECORD_ID_TAG = "ts_record_id"  # on each stage run: makes replay idempotent
RUN_KIND_TAG = "run_kind"  # job | stage | prompt_sync


def new_record_id() -> str:
    return uuid.uuid4().hex


class _Record(BaseModel):
    record_id: str = Field(default_factory=new_record_id)
    run_key: str
    job: Job
    parent_run_id: str = ""  # known when the record was made; else resolved by run_key
    made_at: float = Field(default_factory=time.time)


class BeginRecord(_Record):
    kind: Literal["begin"] = "begin"
    started_at: float
    tags: dict[str, str] = Field(default_factory=dict)


class StageRecord(_Record):
    kind: Literal["stage"] = "stage"
    stage: str
    started_at: float
    ended_at: float
    status: Literal["FINISHED", "FAILED"] = "FINISHED"
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict)  # file name -> JSON text


class RootSpan(BaseModel):
    """The trace's root span ``job-<id>``, written once the job is over (see tracing.py)."""

    trace_id: str  # 32 hex
    span_id: str  # 16 hex
    name: str
    start_ns: int
    end_ns: int
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None = None
    error: str | None = None
    session: str | None = None  # Slack channel
    user: str | None = None  # Slack user
    tags: dict[str, str] = Field(default_factory=dict)
    usage: dict[str, int] = Field(default_factory=dict)  # the job's tokens, for the trace


class EndRecord(_Record):
    kind: Literal["end"] = "end"
    started_at: float
    ended_at: float
    status: Literal["FINISHED", "FAILED"]
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    root: RootSpan | None = None
    spans: list[str] = Field(default_factory=list)  # the stages' finished spans (JSON), see ledger


class FeedbackRecord(_Record):
    """A 👍/👎 on a reply, to log on the trace of the job attempt the reply belongs to. ``job``
    is a placeholder until the reply's run is found (the record is keyed by the reply)."""

    kind: Literal["feedback"] = "feedback"
    channel: str
    reply_ts: str
    user: str
    positive: bool
    reaction: str


AnyRecordType = BeginRecord | StageRecord | EndRecord | FeedbackRecord
AnyRecord = Annotated[AnyRecordType, Field(discriminator="kind")]


class _Envelope(BaseModel):
    record: AnyRecord


def dump_record(record: AnyRecordType) -> str:
    return record.model_dump_json()


def load_record(text: str) -> AnyRecordType:
    return _Envelope.model_validate_json('{"record": ' + text + "}").record


def redact_record(record: Any, redactor: Redactor, *, artifacts: bool) -> Any:
    """The record with every text MLflow would show redacted: tags, params, the root span's
    inputs, outputs and error, and (``artifacts``) the artifacts' JSON and the stage spans. Secrets never reach
    MLflow, even inside an error text a provider echoed back."""
    update: dict[str, Any] = {}
    for name in ("tags", "params"):
        values = getattr(record, name, None)
        if values:
            update[name] = {k: redactor(v) for k, v in values.items()}
    if artifacts and getattr(record, "artifacts", None):
        update["artifacts"] = {k: redactor(v) for k, v in record.artifacts.items()}
    if artifacts and getattr(record, "spans", None):  # redacted at their source too
        update["spans"] = [
            json.dumps(_redact_values(json.loads(s), redactor)) for s in record.spans
        ]
    root = getattr(record, "root", None)
    if root is not None:
        update["root"] = root.model_copy(
            update={
                "error": redactor(root.error) if root.error else None,
                "inputs": json.loads(redactor(json.dumps(root.inputs))),
                "outputs": json.loads(redactor(json.dumps(root.outputs))),
            }
        )
    return record.model_copy(update=update) if update else record


def _redact_values(value: Any, redactor: Redactor) -> Any:
    """Each string inside ``value`` redacted (a pattern run over the JSON text could cut
    through an escape and leave JSON that no longer parses)."""
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, dict):
        return {k: _redact_values(v, redactor) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_values(v, redactor) for v in value]
    return value
