"""The Slack transport seam against a local fake Slack Web API, and the console/file sinks."""

from __future__ import annotations

import io
import json
import time

import pytest

from pipeline.errors import SlackAuthError, SlackChannelError, SlackRateLimited, SlackServerError
from pipeline.models import Outcome, SlackMessage
from pipeline.settings import Settings
from services.slack_client import ConsoleSink, FileSink, WebApiSink, make_sink
from tests.support.fake_slack import Failure
from tests.support.service import BOT_TOKEN

MESSAGE = SlackMessage(channel="C1", thread_ts="1.1", text="hello", blocks=[{"type": "divider"}])


@pytest.fixture
def sink(fake_slack) -> WebApiSink:
    fake_slack.reset()
    settings = Settings(
        slack_sink="slack", slack_api_url=fake_slack.api_url, slack_bot_token=BOT_TOKEN
    )
    return WebApiSink(settings)


def test_post_goes_to_the_configured_base_url_in_the_thread(sink, fake_slack):
    ts = sink.post(MESSAGE, metadata={"job_id": "j1", "attempt": 1})
    [call] = fake_slack.posts()
    assert ts == call["ts"] and call["channel"] == "C1"
    assert call["channel"] == "C1" and call["thread_ts"] == "1.1" and call["text"] == "hello"
    assert call["blocks"] == [{"type": "divider"}]
    assert call["unfurl_links"] is False
    assert call["metadata"]["event_payload"] == {"job_id": "j1", "attempt": 1}


def test_429_becomes_rate_limited_with_retry_after(sink, fake_slack):
    fake_slack.fail_next(
        "chat.postMessage", Failure(status=429, error="ratelimited", headers={"Retry-After": "7"})
    )
    with pytest.raises(SlackRateLimited) as info:
        sink.post(MESSAGE)
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize("raw", [None, b"<html>bad gateway</html>"])
def test_5xx_becomes_retryable_server_error(sink, fake_slack, raw):
    fake_slack.fail_next("chat.postMessage", Failure(status=502, raw_body=raw))
    with pytest.raises(SlackServerError):
        sink.post(MESSAGE)


def test_bad_token_and_unknown_channel_are_terminal_and_clear(sink, fake_slack):
    fake_slack.fail_next("chat.postMessage", Failure(error="channel_not_found"))
    with pytest.raises(SlackChannelError, match="channel_not_found"):
        sink.post(MESSAGE)
    bad = WebApiSink(Settings(slack_api_url=fake_slack.api_url, slack_bot_token="xoxb-wrong"))
    with pytest.raises(SlackAuthError, match="invalid_auth"):
        bad.post(MESSAGE)


def test_unreachable_slack_is_retryable():
    dead = WebApiSink(Settings(slack_api_url="http://127.0.0.1:9/api/", slack_bot_token="x"))
    with pytest.raises(SlackServerError):
        dead.post(MESSAGE)


def test_a_post_whose_connection_drops_after_slack_accepted_it_is_sent_once(sink, fake_slack):
    # slack_sdk's default ConnectionErrorRetryHandler would re-send it: a second reply
    fake_slack.fail_next("chat.postMessage", Failure(accept=True, drop=True))
    with pytest.raises(SlackServerError, match="chat.postMessage"):
        sink.post(MESSAGE)
    assert len(fake_slack.posts()) == 1


def test_a_post_answered_past_the_client_timeout_is_sent_once(fake_slack):
    fake_slack.reset()
    settings = Settings(
        slack_api_url=fake_slack.api_url, slack_bot_token=BOT_TOKEN, slack_timeout=1
    )
    fake_slack.fail_next("chat.postMessage", Failure(accept=True, hang=2.5))
    with pytest.raises(SlackServerError, match="chat.postMessage"):
        WebApiSink(settings).post(MESSAGE)
    assert len(fake_slack.posts()) == 1


def test_reactions_and_reads_still_retry_a_dropped_connection(sink, fake_slack):
    fake_slack.fail_next("reactions.add", Failure(drop=True))
    fake_slack.fail_next("conversations.replies", Failure(drop=True))
    sink.add_reaction("C1", "1.1", "eyes")
    assert sink.find_reply("C1", "1.1", {"job_id": "j1"}, since=time.time()) is None
    assert fake_slack.reactions[("C1", "1.1")] == {"eyes"}
    assert len(fake_slack.calls_of("conversations.replies")) == 1


def test_find_reply_in_the_thread_or_the_channel_by_metadata(sink, fake_slack):
    started = time.time()
    meta = {"job_id": "j1", "attempt": 1}
    in_thread = sink.post(MESSAGE, metadata=meta)
    top = MESSAGE.model_copy(update={"thread_ts": None})
    sink.post(top, metadata={"job_id": "j1", "attempt": 2})
    at_channel = sink.post(top, metadata=meta)
    assert sink.find_reply("C1", "1.1", meta, since=started) == in_thread
    assert sink.find_reply("C1", None, meta, since=started) == at_channel
    assert sink.find_reply("C1", None, {"job_id": "j1", "attempt": 3}, since=started) is None
    assert sink.find_reply("C2", None, meta, since=started) is None
    [history] = fake_slack.calls_of("conversations.history")[:1]
    assert history["include_all_metadata"] == "true" and int(history["limit"]) <= 200
    assert float(history["oldest"]) < started  # a margin for clock skew


def test_fake_history_shows_metadata_only_when_asked_like_slack(sink, fake_slack):
    sink.post(MESSAGE.model_copy(update={"thread_ts": None}), metadata={"job_id": "j1"})
    plain = sink.client.api_call("conversations.history", params={"channel": "C1"}).data
    full = sink.client.api_call(
        "conversations.history", params={"channel": "C1", "include_all_metadata": "true"}
    ).data
    assert "metadata" not in plain["messages"][0]
    assert full["messages"][0]["metadata"]["event_payload"] == {"job_id": "j1"}


def test_reactions_are_idempotent(sink, fake_slack):
    sink.add_reaction("C1", "1.1", "eyes")
    sink.add_reaction("C1", "1.1", "eyes")  # already_reacted: fine
    sink.remove_reaction("C1", "1.1", "eyes")
    sink.remove_reaction("C1", "1.1", "eyes")  # no_reaction: fine
    assert fake_slack.reactions[("C1", "1.1")] == set()
    assert sink.permalink("C1", "1.1").endswith("/archives/C1/p11")


def test_console_and_file_sinks(tmp_path):
    out = io.StringIO()
    ConsoleSink(out).post(MESSAGE.model_copy(update={"outcome": Outcome.gate_failed}))
    assert "hello" in out.getvalue() and "gate_failed" in out.getvalue()
    settings = Settings(slack_sink="file", state_dir=tmp_path)
    sink = make_sink(settings)
    assert isinstance(sink, FileSink)
    ts = sink.post(MESSAGE, metadata={"job_id": "j1"})
    sink.add_reaction("C1", "1.1", "eyes")
    lines = [json.loads(x) for x in (tmp_path / "slack_sink.jsonl").read_text().splitlines()]
    assert [x["method"] for x in lines] == ["chat.postMessage", "reactions.add"]
    assert lines[0]["ts"] == ts and lines[0]["text"] == "hello"
    assert isinstance(make_sink(Settings(slack_sink="console")), ConsoleSink)
