"""What the Celery tasks call to make a job observable. The contract (stable):

    headers = begin_job(job, reprocess_of=None)         # parent run + root span; never raises
    with stage_run("stage_a", job, headers) as rec:      # nested run + span; never raises itself
        facts = run_stage_a(...)
        rec.metrics["tool_call_count"] = facts.tool_calls
        rec.artifacts["stage_a_facts.json"] = facts
        rec.usage = facts.usage
    end_job(job, headers, outcome, reply=message, error=None)

``headers`` is the dict of task headers to propagate (``services.constants.PROPAGATED_HEADERS``):
the parent MLflow run id and the W3C trace context. The implementation lives in
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
