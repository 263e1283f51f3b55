"""A mention of the bot without a link (real redis-server): in the thread of one of its replies
it becomes a follow-up job, anywhere else a help job; one job per mention whatever Slack's
retries; no 👀 on either (no chain will turn it into ✅); a mention with a link is a link job."""

from __future__ import annotations

from typing import Any

from pipeline.models import Job, JobKind
from pipeline.settings import Settings
from services.history_store import RedisHistory
from services.job_store import JobStore
from services.slack_events import IngestService
from tests.support.service import CHANNEL, message_event

THREAD = "1700000100.000100"


class Reactions:
    def __init__(self) -> None:
        self.added: list[tuple[str, str, str]] = []

    def add_reaction(self, channel: str, ts: str, name: str) -> None:
        self.added.append((channel, ts, name))


def service(redis_client) -> tuple[IngestService, list[str], Reactions]:
    settings = Settings(slack_bot_user_id="UBOT", slack_channels=[CHANNEL])
    enqueued: list[str] = []
    sink = Reactions()
    return IngestService(settings, JobStore(redis_client), enqueued.append, sink), enqueued, sink  # type: ignore[arg-type]


def mention(text: str, *, event_id: str, ts: str, thread_ts: str | None = None) -> dict[str, Any]:
    payload = message_event(
        text, event_id=event_id, ts=ts, **({"thread_ts": thread_ts} if thread_ts else {})
    )
    payload["event"]["type"] = "app_mention"
    return payload


def answered_thread(redis_client, settings: Settings) -> str:
    """A link job that replied in THREAD, as slack_post leaves it in the history."""
    from pipeline.followup import ArchivedJob

    job = Job(job_id="first", channel_id=CHANNEL, message_ts=THREAD, url="https://github.com/o/r",
              canonical_url="https://github.com/o/r")  # fmt: skip
    JobStore(redis_client).create(job)
    RedisHistory(redis_client, settings).store(ArchivedJob(job=job, title="o/r"), None)
    return job.job_id


def test_question_in_an_answered_thread_is_a_followup_job(redis_client):
    ingest, enqueued, sink = service(redis_client)
    answered_thread(redis_client, ingest.settings)
    jobs = ingest.handle_event_callback(
        mention("<@UBOT> does it run on Windows?", event_id="Ev1", ts="1700000100.000500", thread_ts=THREAD)
    )  # fmt: skip
    [job] = jobs
    assert job.kind == JobKind.followup and job.thread_ts == THREAD
    assert job.url == "https://github.com/o/r" and job.message_text.endswith("Windows?")
    assert enqueued == [job.job_id] and JobStore(redis_client).require(job.job_id).job == job
    ingest.react_queued(jobs)
    assert sink.added == []


def test_bare_mention_outside_our_threads_is_a_help_job_once(redis_client):
    ingest, enqueued, _ = service(redis_client)
    first = ingest.handle_event_callback(mention("<@UBOT>", event_id="Ev2", ts="1700000200.000100"))
    again = ingest.handle_event_callback(
        mention("<@UBOT>", event_id="Ev2b", ts="1700000200.000100")
    )
    [job] = first
    assert job.kind == JobKind.help and job.reply_thread_ts == "1700000200.000100"
    assert again == [] and enqueued == [job.job_id]  # a second delivery claims nothing
    other_thread = ingest.handle_event_callback(
        mention("<@UBOT> hello", event_id="Ev3", ts="1700000300.000200", thread_ts="1700000300.000100")
    )  # fmt: skip
    assert [j.kind for j in other_thread] == [JobKind.help]  # not a thread the bot replied in


def test_mention_with_a_link_is_a_link_job_with_its_reaction(redis_client):
    ingest, enqueued, sink = service(redis_client)
    answered_thread(redis_client, ingest.settings)
    jobs = ingest.handle_event_callback(
        mention("<@UBOT> and <https://example.com/post>", event_id="Ev4", ts="1700000100.000900", thread_ts=THREAD)
    )  # fmt: skip
    assert [j.kind for j in jobs] == [JobKind.link] and jobs[0].canonical_url
    ingest.react_queued(jobs)
    assert sink.added == [(CHANNEL, "1700000100.000900", "eyes")]


def test_our_own_mention_is_ignored(redis_client):
    ingest, enqueued, _ = service(redis_client)
    payload = mention("<@UBOT>", event_id="Ev5", ts="1700000400.000100")
    payload["event"]["user"] = "UBOT"
    assert ingest.handle_event_callback(payload) == [] and enqueued == []
