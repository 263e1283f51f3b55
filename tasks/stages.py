"""The Celery stage tasks: one per row of the stage table (``pipeline.stages.STAGES``).

Each task takes the ``JobCarry`` (as JSON) and runs its stage through the same
``services.runner.run_stage`` every driver uses. Around it, what only a worker needs: the
headers it saw are recorded on the job, ``RetryableError`` is retried with a capped countdown
(the server's Retry-After when it gave one), every error is recorded for the failure note,
and after the last stage the job is finished (status, reaction, repeat-link memory, the parent
run's outcome).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from observability.recorder import get_recorder
from pipeline.errors import RetryableError, TechnoShareError
from pipeline.models import JobCarry
from pipeline.settings import Settings
from pipeline.stages import STAGES, Stage
from services.posting import STATUS_FOR_OUTCOME, set_reaction
from services.runner import run_stage
from tasks import runtime
from tasks.app import app
from tasks.headers import current_headers


def retry_countdown(exc: RetryableError, retries: int, settings: Settings) -> float:
    """Retry-After when the server gave one, else exponential backoff with jitter; capped."""
    if exc.retry_after is not None:
        wanted = exc.retry_after
    else:
        wanted = min(2.0**retries, 60.0) * (1 + random.random() / 2)
    return max(0.5, min(float(settings.task_retry_max_countdown), wanted))


def user_reason(exc: BaseException) -> str:
    if isinstance(exc, TechnoShareError):
        return exc.user_message
    return TechnoShareError.user_message


def error_line(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, TechnoShareError) else f"{type(exc).__name__}: {exc}"


@contextmanager
def retry_transient(task: Any, job_id: str) -> Iterator[None]:
    """Retry ``RetryableError`` with a capped countdown; record every error on the job."""
    settings, store = runtime.settings(), runtime.store()
    try:
        yield
    except RetryableError as exc:
        store.record_error(job_id, error_line(exc), user_reason(exc))
        raise task.retry(
            exc=exc,
            countdown=retry_countdown(exc, task.request.retries, settings),
            max_retries=settings.task_max_retries,
        ) from None
    except Exception as exc:
        store.record_error(job_id, error_line(exc), user_reason(exc))
        raise


def run_stage_task(task: Any, stage: Stage, carry_json: dict[str, Any]) -> dict[str, Any]:
    carry = JobCarry.model_validate(carry_json)
    job_id, store = carry.job.job_id, runtime.store()
    seen = current_headers(task)
    store.record_seen(
        job_id, stage.name, seen, attempt=carry.attempt, task_id=task.request.id,
        retries=task.request.retries,
    )  # fmt: skip
    headers = {**store.require(job_id).headers, **seen}  # what the message carried wins
    with retry_transient(task, job_id):
        carry = run_stage(stage, carry, runtime.deps(), headers)
    if stage is STAGES[-1]:
        finish(carry, headers)
    return carry.model_dump(mode="json")


def finish(carry: JobCarry, headers: Mapping[str, str]) -> None:
    """After the reply: repeat-link memory, reaction, the parent run's outcome, final status."""
    store, settings, job = runtime.store(), runtime.settings(), carry.job
    message = carry.need("reply").message
    if carry.need("review").report.passed:
        store.remember_answer(
            job.channel_id, job.canonical_url, job.job_id, settings.repeat_window_days
        )
    set_reaction(runtime.sink(), job, message.outcome)
    get_recorder().end_job(job, headers, message.outcome, reply=message)
    store.set_status(job.job_id, STATUS_FOR_OUTCOME[message.outcome])  # last: all is done


def _stage_task(stage: Stage) -> Any:
    @app.task(bind=True, name=stage.task_name)
    def stage_task(self: Any, carry: dict[str, Any]) -> dict[str, Any]:
        return run_stage_task(self, stage, carry)

    stage_task.__doc__ = f"Stage {stage.name} ({stage.queue} queue): see pipeline.stages."
    return stage_task


TASKS: dict[str, Any] = {stage.name: _stage_task(stage) for stage in STAGES}
