"""The Celery stage tasks: one per row of the stage table (``pipeline.stages.STAGES``).

Each task takes the ``JobCarry`` (as JSON) and runs its stage through the same
``services.runner.run_stage`` every driver uses. Around it, what only a worker needs: the
headers it saw are recorded on the job, ``RetryableError`` and Redis connection errors are
retried with a capped countdown (the server's Retry-After when it gave one), every error is
recorded for the failure note, and after the last stage the job is finished (status, reaction,
repeat-link memory, the parent run's outcome).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis

from observability.recorder import get_recorder
from pipeline.errors import RetryableError, TechnoShareError
from pipeline.models import JobCarry
from pipeline.settings import Settings
from pipeline.stages import STAGES, Stage, needs_model_queue
from services.posting import STATUS_FOR_OUTCOME, set_reaction
from services.runner import run_stage
from tasks import runtime
from tasks.app import MIN_RETRY_COUNTDOWN, app, max_retry_countdown
from tasks.headers import current_headers

log = logging.getLogger(__name__)


# Redis is the broker and the job store: while it restarts (a blip, a failover) the store's
# calls fail with these, and the same call succeeds seconds later. Retried like RetryableError,
# with the same cap (TASK_MAX_RETRIES), never treated as the job's failure.
REDIS_TRANSIENT: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
RETRIED: tuple[type[Exception], ...] = (RetryableError, *REDIS_TRANSIENT)
REDIS_RETRY_BASE_SECONDS = 2.0  # 2, 4, 8, ... s: a restart of a few seconds is waited out


def retry_countdown(exc: Exception, retries: int, settings: Settings) -> float:
    """Retry-After when the server gave one, else exponential backoff with jitter; capped below
    the visibility timeout (``tasks.app.max_retry_countdown``)."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        wanted = float(retry_after)
    else:
        base = REDIS_RETRY_BASE_SECONDS if isinstance(exc, REDIS_TRANSIENT) else 1.0
        wanted = min(base * 2.0**retries, 60.0) * (1 + random.random() / 2)
    return max(MIN_RETRY_COUNTDOWN, min(max_retry_countdown(settings), wanted))


def user_reason(exc: BaseException) -> str:
    if isinstance(exc, TechnoShareError):
        return exc.user_message
    return TechnoShareError.user_message


def error_line(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, TechnoShareError) else f"{type(exc).__name__}: {exc}"


def record_error(job_id: str, exc: BaseException) -> None:
    """The error on the job, for the failure note. Recording needs Redis too: when Redis is what
    failed, the record is skipped (logged) so the retry or the failure itself still happens."""
    try:
        runtime.store().record_error(job_id, error_line(exc), user_reason(exc))
    except REDIS_TRANSIENT as failed:
        log.warning("job %s: error not recorded (Redis: %s): %s", job_id, failed, error_line(exc))


@contextmanager
def retry_transient(task: Any, job_id: str) -> Iterator[None]:
    """Retry ``RetryableError`` and Redis connection errors with a capped countdown, at most
    ``TASK_MAX_RETRIES`` times; record every error on the job."""
    settings = runtime.settings()
    try:
        yield
    except redis.exceptions.AuthenticationError as exc:  # a ConnectionError, but no blip
        record_error(job_id, exc)
        raise
    except RETRIED as exc:
        record_error(job_id, exc)
        # A fresh broker connection for the retry's publish: after a Redis restart the pooled
        # producer of a prefork child can be left on a dead channel, and Celery turns that
        # publish error into a reject (the job lost). This one connects with the retry policy.
        with task.app.connection_for_write() as connection:
            raise task.retry(
                exc=exc,
                countdown=retry_countdown(exc, task.request.retries, settings),
                max_retries=settings.task_max_retries,
                connection=connection,
            ) from None
    except Exception as exc:
        record_error(job_id, exc)
        raise


def run_stage_task(
    task: Any, stage: Stage, carry_json: dict[str, Any], *, on_model_queue: bool = False
) -> dict[str, Any]:
    carry = JobCarry.model_validate(carry_json)
    job_id, store = carry.job.job_id, runtime.store()
    if not on_model_queue and needs_model_queue(stage, carry, runtime.deps()):
        # this run calls the model: it holds an llm slot, not this queue's (the rest of the
        # chain, the headers and the error callback go with it)
        raise task.replace(MODEL_TASKS[stage.name].s(carry_json))
    with retry_transient(task, job_id):  # the store's own calls too: Redis may be restarting
        seen = current_headers(task)
        store.record_seen(
            job_id, stage.name, seen, attempt=carry.attempt, task_id=task.request.id,
            retries=task.request.retries, task_name=task.name,
        )  # fmt: skip
        headers = {**store.require(job_id).headers, **seen}  # what the message carried wins
        carry = run_stage(stage, carry, runtime.deps(), headers)
        if stage is STAGES[-1]:
            finish(carry, headers)  # after the reply: a retry finds it posted, posts nothing
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


def _model_task(stage: Stage) -> Any:
    @app.task(bind=True, name=stage.model_task_name)
    def model_task(self: Any, carry: dict[str, Any]) -> dict[str, Any]:
        return run_stage_task(self, stage, carry, on_model_queue=True)

    model_task.__doc__ = f"Stage {stage.name} when it calls the model ({stage.model_queue} queue)."
    return model_task


TASKS: dict[str, Any] = {stage.name: _stage_task(stage) for stage in STAGES}
MODEL_TASKS: dict[str, Any] = {
    stage.name: _model_task(stage) for stage in STAGES if stage.model_queue
}
