"""Posting exactly once per job attempt (real redis-server, fake Slack, no worker needed)."""

from __future__ import annotations

import pytest

from pipeline.errors import SlackServerError
from pipeline.models import Job, SlackMessage
from pipeline.settings import Settings
from services.job_store import JobStore
from services.posting import PostInProgress, post_once
from services.slack_client import WebApiSink
from tests.support.fake_slack import Failure
from tests.support.service import BOT_TOKEN

JOB = Job(
    job_id="jp1",
    channel_id="C1",
    message_ts="9.1",
    url="https://a.example/",
    canonical_url="https://a.example/",
)
MESSAGE = SlackMessage(channel="C1", thread_ts="9.1", text="the reply")
# a slash command's reply: at channel level, no thread to look in
CHANNEL_MESSAGE = SlackMessage(channel="C1", thread_ts=None, text="the reply")


@pytest.fixture
def parts(redis_client, fake_slack):
    fake_slack.reset()
    store = JobStore(redis_client)
    store.create(JOB)
    settings = Settings(
        slack_api_url=fake_slack.api_url, slack_bot_token=BOT_TOKEN, slack_timeout=1
    )
    sink = WebApiSink(settings)
    return store, sink, fake_slack


def test_second_call_returns_the_recorded_reply(parts):
    store, sink, fake = parts
    first = post_once(store, sink, JOB, 1, MESSAGE)
    assert post_once(store, sink, JOB, 1, MESSAGE) == first
    assert len(fake.posts()) == 1
    second_attempt = post_once(store, sink, JOB, 2, MESSAGE)  # a reprocess posts again
    assert second_attempt != first and len(fake.posts()) == 2


@pytest.mark.parametrize("message", [MESSAGE, CHANNEL_MESSAGE], ids=["thread", "channel"])
def test_a_copy_that_died_after_posting_is_not_posted_again(parts, message):
    store, sink, fake = parts
    # the dead copy: marked the post as started, Slack accepted it, the ts was never recorded
    store.mark_post_started(JOB.job_id, 1)
    ts = sink.post(message, metadata={"job_id": JOB.job_id, "attempt": 1})
    assert store.reply_for(JOB.job_id, 1) is None
    assert post_once(store, sink, JOB, 1, message) == ts
    assert len(fake.posts()) == 1 and store.reply_for(JOB.job_id, 1) == ts


LOST_ANSWERS = {
    "dropped": Failure(accept=True, drop=True),  # connection closed after Slack accepted
    "timed_out": Failure(accept=True, hang=2.5),  # answered past the client's 1 s timeout
}


@pytest.mark.parametrize("lost", LOST_ANSWERS.values(), ids=LOST_ANSWERS.keys())
@pytest.mark.parametrize("message", [MESSAGE, CHANNEL_MESSAGE], ids=["thread", "channel"])
def test_a_post_whose_answer_was_lost_is_found_not_posted_again(parts, message, lost):
    store, sink, fake = parts
    fake.fail_next("chat.postMessage", lost)
    with pytest.raises(SlackServerError):  # the task retries this
        post_once(store, sink, JOB, 1, message)
    assert len(fake.posts()) == 1 and store.reply_for(JOB.job_id, 1) is None
    ts = post_once(store, sink, JOB, 1, message)  # the retry: maybe posted, so it looks first
    [posted] = fake.posts()  # posted once, not twice, not lost
    assert ts == posted["ts"] and store.reply_for(JOB.job_id, 1) == ts


def test_a_post_slack_refused_is_posted_by_the_retry(parts):
    store, sink, fake = parts
    fake.fail_next("chat.postMessage", Failure(status=503))
    with pytest.raises(SlackServerError):
        post_once(store, sink, JOB, 1, CHANNEL_MESSAGE)
    assert fake.posts() == []
    ts = post_once(store, sink, JOB, 1, CHANNEL_MESSAGE)  # looked, found nothing, posted
    assert [p["ts"] for p in fake.posts()] == [ts]
    assert len(fake.calls_of("conversations.history")) == 1


def test_a_copy_that_died_before_slack_accepted_posts(parts):
    store, sink, fake = parts
    store.mark_post_started(JOB.job_id, 1)
    sink.post(MESSAGE, metadata={"job_id": JOB.job_id, "attempt": 0})  # another attempt's reply
    ts = post_once(store, sink, JOB, 1, MESSAGE)
    assert len(fake.posts()) == 2 and store.reply_for(JOB.job_id, 1) == ts


def test_a_concurrent_copy_waits_for_the_lock_holder(parts):
    store, sink, fake = parts
    assert store.acquire_post_lock(JOB.job_id, 1, "someone-else")
    with pytest.raises(PostInProgress) as info:
        post_once(store, sink, JOB, 1, MESSAGE)
    assert info.value.retry_after and fake.posts() == []
