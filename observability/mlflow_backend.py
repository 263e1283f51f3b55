"""TEMPORARY placeholder until the MLflow backend lands (issue: observability).

Records nothing; returns a synthetic parent run id so header propagation can be built and
tested. Replace wholesale; keep the three function signatures used by observability.hooks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pipeline.models import Job, Outcome, SlackMessage
from services.constants import HEADER_JOB_ID, HEADER_PARENT_RUN_ID


def begin_job(job: Job, *, reprocess_of: str | None = None) -> dict[str, str]:
    return {HEADER_JOB_ID: job.job_id, HEADER_PARENT_RUN_ID: f"placeholder-{job.job_id}"}


@contextmanager
def stage_run(stage: str, job: Job, headers: Mapping[str, str]) -> Iterator[Any]:
    from observability.hooks import StageRecorder

    yield StageRecorder(stage=stage)


def end_job(
    job: Job,
    headers: Mapping[str, str],
    outcome: Outcome,
    *,
    reply: SlackMessage | None = None,
    error: str | None = None,
    metrics: Mapping[str, float] | None = None,
) -> None:
    return None
