"""The chain's error callback (``technoshare.job_failed``) always ends the job, whatever Slack
does: run in-process (Celery's eager apply, its retries inline) on a real redis-server and the
fake Slack, with a recorder that keeps what ``end_job`` was told.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from observability.recorder import NullRecorder, recording
from pipeline.models import Job, Outcome, SlackMessage
from services.job_store import JobStatus, JobStore
from tasks import runtime
from tests.support.fake_slack import Failure
from tests.support.service import BOT_TOKEN

OPS = "COPS"
JOB_ERROR = "SlackServerError: chat.postMessage: Slack answered HTTP 503"  # the stage's error
SLACK_METHODS = ("chat.postMessage", "reactions.add", "reactions.remove", "chat.getPermalink")
SLACK_METHODS += ("conversations.replies",)


class EndRecorder(NullRecorder):
    def __init__(self) -> None:
        self.ended: list[tuple[str, Outcome, str | None]] = []

    def end_job(
        self,
        job: Job,
        headers: Mapping[str, str],
        outcome: Outcome,
        *,
        reply: SlackMessage | None = None,
        error: str | None = None,
    ) -> None:
        self.ended.append((job.job_id, outcome, error))


@pytest.fixture
def env(monkeypatch, redis_client, redis_server, fake_slack) -> Iterator[dict[str, Any]]:
    fake_slack.reset()
    for key, value in {
        "REDIS_URL": redis_server.url,
        "SLACK_SINK": "slack",
        "SLACK_API_URL": fake_slack.api_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_OPS_CHANNEL": OPS,
        "SLACK_TIMEOUT": "2",
        "TASK_MAX_RETRIES": "2",
    }.items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    store = JobStore(redis_client)
    job = Job(
        job_id="jf1", channel_id="C1", message_ts="5.1", url="https://a.example/x",
        canonical_url="https://a.example/x",
    )  # fmt: skip
    store.create(job)
    store.begin_attempt(job.job_id, "start-task")
    store.claim_link(job.channel_id, job.canonical_url, job.job_id)
    store.record_error(job.job_id, JOB_ERROR, "Slack is down.")
    with recording(EndRecorder()) as recorder:
        yield {"store": store, "job": job, "recorder": recorder, "fake": fake_slack}
    runtime.reset()


def run_callback(job_id: str) -> None:
    from tasks.entry import job_failed

    job_failed.apply(args=("the-failed-task", job_id, 1))


def assert_ended_failed(env: dict[str, Any]) -> None:
    store, job = env["store"], env["job"]
    record = store.require(job.job_id)
    assert record.status == JobStatus.failed
    assert record.last_error == JOB_ERROR  # the job's error, not the note's
    assert env["recorder"].ended == [(job.job_id, Outcome.error, record.last_error)]
    assert store.claim_link(job.channel_id, job.canonical_url, "another") == "another"  # released


def test_slack_never_accepting_anything_still_ends_the_job(env, caplog):
    fake = env["fake"]
    for method in SLACK_METHODS:
        fake.fail_next(method, Failure(status=503), times=50)
    run_callback(env["job"].job_id)
    assert_ended_failed(env)
    assert fake.posts() == []  # nothing accepted, yet everything was tried:
    # the note (then, maybe posted, its retries look in the thread first), and the ops alert
    failed_posts = fake.calls_of("chat.postMessage:failed")
    assert [p["channel"] for p in failed_posts] == ["C1", OPS]
    assert len(fake.calls_of("conversations.replies:failed")) == 2  # TASK_MAX_RETRIES
    assert "jf1" in failed_posts[-1]["text"] and "https://a.example/x" in failed_posts[-1]["text"]
    assert any(r["name"] == "warning" for r in fake.calls_of("reactions.add:failed"))
    [note_line] = [r for r in caplog.records if "failure note was not posted" in r.getMessage()]
    assert "\n" not in note_line.getMessage()


def test_a_terminal_slack_error_on_the_note_ends_the_job_and_alerts_ops(env):
    fake = env["fake"]
    fake.fail_next("chat.postMessage", Failure(error="channel_not_found"))
    run_callback(env["job"].job_id)
    assert_ended_failed(env)
    [alert] = fake.posts()
    assert alert["channel"] == OPS and "\n" not in alert["text"]
    assert "jf1" in alert["text"] and JOB_ERROR in alert["text"]
    assert "/archives/C1/p51" in alert["text"]  # the message's permalink
    assert fake.reactions[("C1", "5.1")] == {"warning"}


def test_a_redelivered_callback_neither_notes_nor_alerts_twice(env):
    run_callback(env["job"].job_id)
    run_callback(env["job"].job_id)
    posts = env["fake"].posts()
    assert sorted(p["channel"] for p in posts) == ["C1", OPS]
    assert len(env["recorder"].ended) == 1
