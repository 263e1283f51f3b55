"""What a stage task does with an error: Redis restarting is retried like any transient error
(never the job's failure), even when the error cannot be recorded because Redis is down; an
error that is neither is recorded and raised. The task is a stub with Celery's ``retry`` shape."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import redis

from pipeline.errors import FetchNetworkError, SourceUnavailableError
from pipeline.settings import Settings
from tasks import runtime
from tasks.app import max_retry_countdown
from tasks.stages import retry_transient


class Retried(Exception):
    """What ``Task.retry`` raises (Celery's ``Retry``), with the arguments it was given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("retry")
        self.kwargs = kwargs


class StubConnection:
    def __enter__(self) -> StubConnection:
        return self

    def __exit__(self, *_: Any) -> None:
        return None


class StubTask:
    def __init__(self, retries: int = 0) -> None:
        self.request = SimpleNamespace(retries=retries, id="task-1")
        self.app = SimpleNamespace(connection_for_write=StubConnection)

    def retry(self, **kwargs: Any) -> Retried:
        return Retried(**kwargs)


class Store:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.errors: list[tuple[str, str, str | None]] = []
        self.fail_with = fail_with

    def record_error(self, job_id: str, error: str, user_message: str | None = None) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.errors.append((job_id, error, user_message))


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Store:
    stub = Store()
    monkeypatch.setattr(runtime, "store", lambda: stub)
    monkeypatch.setattr(runtime, "settings", lambda: Settings(task_max_retries=5))
    return stub


@pytest.mark.parametrize(
    "error",
    [redis.exceptions.ConnectionError("Connection refused"), redis.exceptions.TimeoutError("t")],
    ids=["connection-error", "timeout"],
)
def test_a_redis_error_inside_a_stage_is_retried_with_a_capped_countdown(store, error):
    with pytest.raises(Retried) as raised, retry_transient(StubTask(retries=2), "job-1"):
        raise error
    kwargs = raised.value.kwargs
    assert kwargs["exc"] is error and kwargs["max_retries"] == 5
    assert 0 < kwargs["countdown"] <= max_retry_countdown(Settings())
    assert store.errors and store.errors[0][1].startswith(type(error).__name__)


def test_a_failed_error_record_does_not_mask_the_retry(store):
    """Redis is down: recording the error fails too, and the task is still retried (the
    record's own ConnectionError must not escape as the task's failure)."""
    store.fail_with = redis.exceptions.ConnectionError("still down")
    error = redis.exceptions.ConnectionError("Connection refused")
    with pytest.raises(Retried) as raised, retry_transient(StubTask(), "job-1"):
        raise error
    assert raised.value.kwargs["exc"] is error


def test_retryable_errors_still_retry_and_terminal_ones_still_fail(store):
    with pytest.raises(Retried), retry_transient(StubTask(), "job-1"):
        raise FetchNetworkError("reset", retry_after=3)
    terminal = SourceUnavailableError("gone")
    with pytest.raises(SourceUnavailableError), retry_transient(StubTask(), "job-1"):
        raise terminal
    assert store.errors[-1][1].startswith("SourceUnavailableError")


def test_a_terminal_error_is_raised_even_when_redis_cannot_record_it(store):
    store.fail_with = redis.exceptions.ConnectionError("down")
    with pytest.raises(SourceUnavailableError), retry_transient(StubTask(), "job-1"):
        raise SourceUnavailableError("gone")


def test_other_redis_errors_are_not_retried(store):
    """Only the named connection errors: a wrong-type or auth error is not a blip."""
    with pytest.raises(redis.exceptions.ResponseError), retry_transient(StubTask(), "job-1"):
        raise redis.exceptions.ResponseError("WRONGTYPE")
    wrong_password = redis.exceptions.AuthenticationError("invalid password")  # a ConnectionError
    with pytest.raises(redis.exceptions.AuthenticationError), retry_transient(StubTask(), "j"):
        raise wrong_password
