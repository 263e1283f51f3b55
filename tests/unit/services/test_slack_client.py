"""The Slack transport seam against a local fake Slack Web API, and the console/file sinks."""

from __future__ import annotations

import io
import json

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
    assert ts.startswith("1700000000.")
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
