"""What the Celery tasks call to make a job observable. The contract (stable):

    headers = begin_job(job, reprocess_of=None)         # parent run + root span; never raises
    with stage_run("stage_a", job, headers) as rec:      # nested run + span; never raises itself
        facts = run_stage_a(...)
        rec.metrics["tool_call_count"] = facts.tool_calls
        rec.artifacts["stage_a_facts.json"] = facts
        rec.usage = facts.usage
    end_job(job, headers, outcome, reply=message, error=None)
    parent_run_id(job, headers)                          # an attempt's parent run id, "" if unknown

``headers`` is the dict of task headers to propagate (``pipeline.constants.PROPAGATED_HEADERS``):
the parent MLflow run id and the W3C trace context. ``begin_job`` creates the parent run before
it returns when MLflow answers within ``MLFLOW_HTTP_TIMEOUT`` (the entry task runs after Slack
was acked, so it may wait that long); when MLflow is down or slow the id is empty and the
stages find their parent through Redis. The implementation lives in
``observability.mlflow_backend``; this module stays import-light so tasks can import it anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipeline.models import Job, Outcome, SlackMessage, StageUsage


@dataclass
class StageRecorder:
    """Filled by a task while its stage runs; written to MLflow when the stage ends."""

    stage: str
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)  # name -> pydantic model or JSON-able
    span_attributes: dict[str, Any] = field(default_factory=dict)
    span_inputs: Any = None
    span_outputs: Any = None
    usage: StageUsage | None = None
    started_at: float = field(default_factory=time.time)


def _backend() -> Any:
    from observability import (
        mlflow_backend,
    )  # lazy: keeps mlflow out of importers that don't record

    return mlflow_backend


def begin_job(job: Job, *, reprocess_of: str | None = None) -> dict[str, str]:
    return dict(_backend().begin_job(job, reprocess_of=reprocess_of))


def parent_run_id(job: Job, headers: Mapping[str, str]) -> str:
    """The parent run id of the attempt ``headers`` belong to: the header, else the one the
    background writer stored once it created the run; "" when unknown."""
    return str(_backend().parent_run_id(job, headers) or "")


@contextmanager
def stage_run(stage: str, job: Job, headers: Mapping[str, str]) -> Iterator[StageRecorder]:
    with _backend().stage_run(stage, job, headers) as rec:
        yield rec


def end_job(
    job: Job,
    headers: Mapping[str, str],
    outcome: Outcome,
    *,
    reply: SlackMessage | None = None,
    error: str | None = None,
    metrics: Mapping[str, float] | None = None,
) -> None:
    _backend().end_job(job, headers, outcome, reply=reply, error=error, metrics=metrics or {})
