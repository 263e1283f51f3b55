"""Ingest handlers over HTTP (Starlette test client) with a real redis-server and fake Slack.

Enqueueing is recorded instead of published here (except in the Redis blip test);
tests/e2e/test_service.py runs the real uvicorn server against real workers, and
tests/unit/services/test_ingest_fuzz.py throws generated hostile requests at the app.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import urllib.parse

import pytest
from slack_sdk.socket_mode.request import SocketModeRequest
from starlette.testclient import TestClient

from pipeline.settings import Settings
from services.ingest import IngestService, create_app, ingest_job_store
from services.job_store import JobStore
from services.processes import free_port
from services.slack_client import WebApiSink
from services.socket_mode import handle_request
from tests.support.service import (
    BOT_TOKEN,
    CHANNEL,
    SIGNING_SECRET,
    message_event,
    sign,
    signed_headers,
)

A, B, C = "https://example.com/a", "https://arxiv.org/abs/2401.00001", "https://github.com/o/r"


class FixedClock:
    def __init__(self, now: float) -> None:
        self.value = now

    def now(self) -> float:
        return self.value


@pytest.fixture(name="ingest")
def ingest_fixture(redis_client, fake_slack, monkeypatch):
    fake_slack.reset()
    settings = Settings(
        slack_signing_secret=SIGNING_SECRET,
        slack_channels=[CHANNEL],
        slack_bot_user_id="UBOT",
        slack_bot_token=BOT_TOKEN,
        slack_api_url=fake_slack.api_url,
        slack_max_links_per_message=3,
    )
    enqueued: list[str] = []
    service = IngestService(settings, JobStore(redis_client), enqueued.append, WebApiSink(settings))
    clock = FixedClock(time.time())
    client = TestClient(create_app(settings, service=service, clock=clock))
    client.enqueued = enqueued
    client.clock = clock
    client.service = service
    return client


def send(client, payload, **headers):
    body = json.dumps(payload).encode()
    return client.post("/slack/events", content=body, headers={**signed_headers(body), **headers})


def test_url_verification_answers_the_challenge(ingest):
    resp = send(ingest, {"type": "url_verification", "challenge": "abc123"})
    assert resp.status_code == 200 and resp.json() == {"challenge": "abc123"}


def test_a_message_with_links_in_text_and_blocks_makes_one_job_per_link(ingest, fake_slack):
    blocks = [{"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
        {"type": "link", "url": C}]}]}]  # fmt: skip
    text = f"look <{A}|this> and <{B}> and again {A}?utm_source=x"
    resp = send(ingest, message_event(text, event_id="Ev1", ts="100.1", blocks=blocks))
    assert resp.status_code == 200
    store = ingest.service.store
    urls = [store.require(j).job.canonical_url for j in ingest.enqueued]
    assert len(urls) == 3 and any("example.com/a" in u for u in urls)
    job = store.require(ingest.enqueued[0]).job
    assert job.channel_id == CHANNEL and job.message_ts == "100.1" and job.thread_ts is None
    assert job.user_id == "UALICE" and "look" in job.message_text
    assert ingest.app.state.reactions.wait_idle(10)  # the reactions run on threads of their own
    assert fake_slack.calls_of("reactions.add") == [
        {"channel": CHANNEL, "timestamp": "100.1", "name": "eyes"}
    ]


def test_links_beyond_the_limit_are_dropped(ingest):
    text = " ".join(f"<https://example.com/{i}>" for i in range(6))
    send(ingest, message_event(text, event_id="Ev1", ts="1.1"))
    assert len(ingest.enqueued) == 3


def test_retries_and_duplicate_deliveries_make_no_new_jobs(ingest):
    payload = message_event(f"<{A}>", event_id="Ev1", ts="1.1")
    send(ingest, payload)
    send(ingest, payload, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    send(ingest, payload)
    # the same message delivered again under another event id (e.g. also as app_mention)
    mention = message_event(f"<@UBOT> <{A}>", event_id="Ev2", ts="1.1", type="app_mention")
    send(ingest, mention)
    assert len(ingest.enqueued) == 1


@pytest.mark.parametrize(
    "headers_for",
    [
        lambda body, now: signed_headers(body, secret="wrong-secret"),
        lambda body, now: signed_headers(body, timestamp=int(now) - 301),
        lambda body, now: signed_headers(body, timestamp=int(now) + 301),
        lambda body, now: {"Content-Type": "application/json"},
        lambda body, now: {**signed_headers(body), "X-Slack-Signature": "v0=" + "0" * 64},
    ],
    ids=["forged", "stale", "future", "unsigned", "bad-signature"],
)
def test_unverified_requests_are_refused_and_enqueue_nothing(ingest, headers_for):
    body = json.dumps(message_event(f"<{A}>", event_id="Ev1", ts="1.1")).encode()
    resp = ingest.post("/slack/events", content=body, headers=headers_for(body, ingest.clock.now()))
    assert resp.status_code == 401
    assert ingest.enqueued == []
    assert not list(ingest.service.store.r.scan_iter("ts:*"))


def test_signature_is_checked_on_the_raw_body(ingest):
    body = json.dumps(message_event(f"<{A}>", event_id="Ev1", ts="1.1")).encode()
    headers = signed_headers(body)
    tampered = body.replace(b"example.com", b"evil.example")
    assert ingest.post("/slack/events", content=tampered, headers=headers).status_code == 401
    assert ingest.enqueued == []


def test_window_is_five_minutes_by_the_injected_clock(ingest):
    body = json.dumps(message_event(f"<{A}>", event_id="Ev1", ts="1.1")).encode()
    headers = signed_headers(body, timestamp=int(ingest.clock.now()) - 290)
    assert ingest.post("/slack/events", content=body, headers=headers).status_code == 200
    ingest.clock.value += 20  # now 310 s after the signature
    body2 = json.dumps(message_event(f"<{B}>", event_id="Ev2", ts="1.2")).encode()
    headers2 = signed_headers(body2, timestamp=int(ingest.clock.now()) - 310)
    assert ingest.post("/slack/events", content=body2, headers=headers2).status_code == 401


def test_malformed_json_is_400(ingest):
    body = b'{"type": "event_callback", '
    resp = ingest.post("/slack/events", content=body, headers=signed_headers(body))
    assert resp.status_code == 400 and ingest.enqueued == []


@pytest.mark.parametrize(
    "event",
    [
        message_event(f"<{A}>", event_id="E", ts="1.1", channel="C0OTHER"),
        message_event(f"<{A}>", event_id="E", ts="1.1", bot_id="B1"),
        message_event(f"<{A}>", event_id="E", ts="1.1", subtype="bot_message"),
        message_event(f"<{A}>", event_id="E", ts="1.1", user="UBOT"),
        message_event(f"<{A}>", event_id="E", ts="1.2", thread_ts="1.1"),
        message_event(f"<{A}>", event_id="E", ts="1.1", subtype="channel_join"),
        message_event("no links here <@U1> <#C1|x>", event_id="E", ts="1.1"),
    ],
    ids=["other-channel", "bot", "bot-message", "ourselves", "thread-reply", "join", "no-link"],
)
def test_filtered_events_are_acknowledged_and_ignored(ingest, event):
    resp = send(ingest, event)
    assert resp.status_code == 200 and ingest.enqueued == []


def test_thread_replies_are_taken_when_enabled_and_answered_in_the_thread(ingest):
    ingest.service.settings = ingest.service.settings.model_copy(
        update={"slack_process_thread_replies": True}
    )
    send(ingest, message_event(f"<{A}>", event_id="E", ts="1.2", thread_ts="1.1"))
    [job_id] = ingest.enqueued
    job = ingest.service.store.require(job_id).job
    assert job.message_ts == "1.2" and job.reply_thread_ts == "1.1"


def test_an_edit_that_adds_a_link_queues_only_the_new_link(ingest):
    send(ingest, message_event(f"<{A}>", event_id="E1", ts="1.1"))
    edit = message_event("", event_id="E2", ts="1.3", subtype="message_changed")
    edit["event"]["message"] = {
        "type": "message",
        "user": "UALICE",
        "ts": "1.1",
        "text": f"<{A}> <{B}>",
    }
    edit["event"]["previous_message"] = {"type": "message", "ts": "1.1", "text": f"<{A}>"}
    send(ingest, edit)
    assert len(ingest.enqueued) == 2
    assert "arxiv" in ingest.service.store.require(ingest.enqueued[1]).job.url
    # an edit that only changes words adds nothing
    edit2 = message_event("", event_id="E3", ts="1.4", subtype="message_changed")
    edit2["event"]["message"] = {"ts": "1.1", "user": "UALICE", "text": f"see <{A}> <{B}>"}
    edit2["event"]["previous_message"] = {"ts": "1.1", "text": f"<{A}> <{B}>"}
    send(ingest, edit2)
    assert len(ingest.enqueued) == 2


def test_app_mention_queues_on_demand_even_in_a_thread(ingest):
    mention = message_event(
        f"<@UBOT> please look at <{B}>", event_id="E", ts="2.2", thread_ts="2.1", type="app_mention",
        channel="C0ELSEWHERE",
    )  # fmt: skip
    send(ingest, mention)
    [job_id] = ingest.enqueued
    job = ingest.service.store.require(job_id).job
    assert job.channel_id == "C0ELSEWHERE" and job.reply_thread_ts == "2.1"


def test_slash_command_queues_a_top_level_job(ingest):
    form = {"command": "/technoshare", "text": A, "channel_id": CHANNEL, "user_id": "U1",
            "trigger_id": "tr1"}  # fmt: skip
    body = urllib.parse.urlencode(form).encode()
    headers = {**signed_headers(body), "Content-Type": "application/x-www-form-urlencoded"}
    resp = ingest.post("/slack/commands", content=body, headers=headers)
    assert resp.status_code == 200 and "Queued 1" in resp.json()["text"]
    job = ingest.service.store.require(ingest.enqueued[0]).job
    assert job.message_ts == "" and job.reply_thread_ts == ""
    bad = ingest.post("/slack/commands", content=body, headers={"X-Slack-Signature": "v0=x"})
    assert bad.status_code == 401 and len(ingest.enqueued) == 1


def test_a_failed_enqueue_lets_slacks_retry_through(ingest):
    calls = []

    def broken(job_id: str) -> None:
        calls.append(job_id)
        if len(calls) == 1:
            raise ConnectionError("broker down")
        ingest.enqueued.append(job_id)

    ingest.service.enqueue = broken
    payload = message_event(f"<{A}>", event_id="Ev1", ts="1.1")
    resp = send(ingest, payload)
    assert resp.status_code == 503 and resp.headers["Retry-After"]  # Slack retries; never a 500
    assert not ingest.service.store.r.keys("ts:job:*")  # undone: nothing half-queued
    assert not ingest.service.store.r.keys("ts:msglink:*") and not ingest.service.store.r.keys(
        "ts:event:*"
    )
    assert send(ingest, payload, **{"X-Slack-Retry-Num": "1"}).status_code == 200
    assert len(ingest.enqueued) == 1


def test_health_and_readiness(ingest, redis_server):
    assert ingest.get("/healthz").text == "ok"
    assert ingest.get("/readyz").status_code == 200
    dead = IngestService(
        ingest.service.settings, JobStore.from_url("redis://127.0.0.1:9/0"), list().append,
        ingest.service.sink,
    )  # fmt: skip
    dead_client = TestClient(create_app(ingest.service.settings, service=dead))
    assert dead_client.get("/readyz").status_code == 503


class RecordingSocketClient:
    def __init__(self) -> None:
        self.responses = []

    def send_socket_mode_response(self, response) -> None:
        self.responses.append(response)


def test_socket_mode_uses_the_same_handlers(ingest, fake_slack):
    client = RecordingSocketClient()
    payload = message_event(f"<{A}>", event_id="EvS", ts="3.1")
    handle_request(ingest.service, client, SocketModeRequest("events_api", "env1", payload))
    handle_request(ingest.service, client, SocketModeRequest("events_api", "env2", payload))
    assert len(ingest.enqueued) == 1
    assert [r.envelope_id for r in client.responses] == ["env1", "env2"]
    command = {"command": "/technoshare", "text": B, "channel_id": CHANNEL, "trigger_id": "t9",
               "user_id": "U1"}  # fmt: skip
    handle_request(ingest.service, client, SocketModeRequest("slash_commands", "env3", command))
    assert "Queued 1" in client.responses[-1].payload["text"]
    assert len(ingest.enqueued) == 2


def test_ingest_imports_neither_mlflow_nor_litellm():
    code = (
        "import sys, services.ingest, services.socket_mode, tasks;"
        "bad = [m for m in ('mlflow', 'litellm', 'pipeline.stage_a', 'tasks.stages') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sign_helper_matches_slack_sdk():
    from slack_sdk.signature import SignatureVerifier

    body, ts = b"{}", int(time.time())
    assert SignatureVerifier(SIGNING_SECRET).is_valid(body, str(ts), sign(body, ts))


# --- hostile and malformed requests: a 4xx and one log line, never a traceback ----------------
def assert_one_line_logged(caplog) -> None:
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) == 1, [r.getMessage() for r in noisy]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in caplog.records)


def forged_headers(now: float) -> dict:
    """Well-formed, fresh signature headers that do not match any body."""
    return {"X-Slack-Request-Timestamp": str(int(now)), "X-Slack-Signature": "v0=" + "a" * 64}


@pytest.mark.parametrize(
    "bad_headers",
    [
        lambda ok: {**ok, "X-Slack-Request-Timestamp": "not-a-number"},
        lambda ok: {**ok, "X-Slack-Request-Timestamp": " " + ok["X-Slack-Request-Timestamp"]},
        lambda ok: {**ok, "X-Slack-Request-Timestamp": "١٧٠٠٠٠٠٠٠٠".encode()},  # int() takes it
        lambda ok: {**ok, "X-Slack-Request-Timestamp": "9" * 40},
        lambda ok: {**ok, "X-Slack-Signature": b"v0=" + "é".encode() * 32},  # non-ASCII
        lambda ok: {**ok, "X-Slack-Signature": ok["X-Slack-Signature"][3:]},  # no v0=
        lambda ok: {**ok, "X-Slack-Signature": ok["X-Slack-Signature"].upper()},
        lambda ok: {**ok, "X-Slack-Signature": "v1=" + ok["X-Slack-Signature"][3:]},
        lambda ok: {**ok, "X-Slack-Signature": ok["X-Slack-Signature"][:-1]},
        lambda ok: {k: v for k, v in ok.items() if k != "X-Slack-Request-Timestamp"},
        lambda ok: {k: v for k, v in ok.items() if k != "X-Slack-Signature"},
    ],
    ids=["non-numeric-ts", "padded-ts", "non-ascii-digits-ts", "huge-ts", "non-ascii-sig",
         "no-version", "upper-case", "other-version", "short", "no-ts", "no-sig"],
)  # fmt: skip
def test_each_bad_signature_form_is_401(ingest, caplog, bad_headers):
    body = json.dumps(message_event(f"<{A}>", event_id="Ev1", ts="1.1")).encode()
    resp = ingest.post("/slack/events", content=body, headers=bad_headers(signed_headers(body)))
    assert resp.status_code == 401 and ingest.enqueued == []
    assert not ingest.service.store.r.keys("ts:*")
    assert_one_line_logged(caplog)


DEEP = b'{"type": "event_callback", "event": ' + b"[" * 5000 + b"]" * 5000 + b"}"


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "event_callback", "text": "caf\xe9"}',  # Latin-1, not UTF-8
        b"\xff\xfe{}",
        b"not json at all",
        b'{"type": "event_callback", "event": {}',
        b"[1, 2, 3]",
        b'"event_callback"',
        DEEP,
        b'{"type": "event_callback", "event_id": "E", "event": {"text": "\\ud800"}}',
        b'{"type": "url_verification", "challenge": {"x": 1}}',
        b'{"type": "event_callback", "event": [1, 2]}',
        b'{"type": "event_callback", "event": "message"}',
        b'{"type": "event_callback", "event": null}',
        b'{"type": "event_callback", "event_id": 7, "event": {}}',
        b'{"type": "event_callback", "event": {}, "n": ' + b"9" * 5000 + b"}",
    ],
    ids=["latin-1", "utf-16-bom", "not-json", "truncated", "array", "string", "5000-deep",
         "lone-surrogate", "challenge-object", "event-array", "event-string", "event-null",
         "event-id-number", "huge-int"],
)  # fmt: skip
def test_each_malformed_body_is_400(ingest, caplog, body):
    resp = ingest.post("/slack/events", content=body, headers=signed_headers(body))
    assert resp.status_code == 400 and ingest.enqueued == []
    assert_one_line_logged(caplog)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "message", "channel": CHANNEL, "ts": "1.1", "text": [f"<{A}>"]},
        {"type": "message", "channel": {"id": CHANNEL}, "ts": "1.1", "text": f"<{A}>"},
        {"type": "message", "channel": CHANNEL, "ts": "1.1", "text": "x", "blocks": f"<{A}>"},
        {"type": "message", "channel": CHANNEL, "subtype": "message_changed", "message": "m"},
        {"type": "reaction_added", "user": "U1", "reaction": "+1", "item": "message"},
        {"type": ["message"], "channel": CHANNEL},
    ],
    ids=["text-list", "channel-object", "blocks-string", "changed-message-string",
         "reaction-item-string", "type-list"],
)  # fmt: skip
def test_wrongly_typed_fields_inside_an_event_are_acknowledged_and_ignored(ingest, event):
    resp = send(ingest, {"type": "event_callback", "event_id": "Ev1", "event": event})
    assert resp.status_code == 200 and ingest.enqueued == []


def test_fields_of_other_types_do_not_reach_the_job(ingest):
    event = message_event(f"<{A}>", event_id="Ev1", ts="1.1", user=42, thread_ts=["x"])
    assert send(ingest, event).status_code == 200
    job = ingest.service.store.require(ingest.enqueued[0]).job
    assert job.user_id is None and job.thread_ts is None


def test_a_link_with_an_out_of_range_port_is_skipped_and_the_good_links_queue(ingest, caplog):
    text = f"<https://example.com:99999/> <{A}> and <{B}>"
    resp = send(ingest, message_event(text, event_id="Ev1", ts="1.1"))
    assert resp.status_code == 200 and len(resp.json()["jobs"]) == 2
    urls = {ingest.service.store.require(j).job.url for j in ingest.enqueued}
    assert urls == {A, B}
    [skipped] = [r for r in caplog.records if r.name == "technoshare.links"]
    assert "99999" in skipped.getMessage()


@pytest.mark.parametrize(
    "form",
    [
        {"command": "/technoshare", "text": A, "user_id": "U1"},  # no channel
        {"command": "/technoshare", "text": A, "channel_id": CHANNEL},  # no user
        {"text": A, "channel_id": CHANNEL, "user_id": "U1"},  # no command
    ],
    ids=["no-channel", "no-user", "no-command"],
)
def test_a_slash_command_with_missing_fields_is_400(ingest, caplog, form):
    body = urllib.parse.urlencode(form).encode()
    resp = ingest.post("/slack/commands", content=body, headers=signed_headers(body))
    assert resp.status_code == 400 and ingest.enqueued == []
    assert_one_line_logged(caplog)


def test_a_slash_command_form_that_is_not_utf8_is_400(ingest):
    for body in (b"command=%2Ftechnoshare&channel_id=C&user_id=U&text=caf%E9", b"text=caf\xe9"):
        resp = ingest.post("/slack/commands", content=body, headers=signed_headers(body))
        assert resp.status_code == 400 and ingest.enqueued == []


def test_a_bug_in_a_handler_is_one_log_line_and_a_500_not_a_traceback(ingest, caplog):
    def broken(payload):
        raise KeyError("bug")

    ingest.service.handle_event_callback = broken
    resp = send(ingest, message_event(f"<{A}>", event_id="Ev1", ts="1.1"))
    assert resp.status_code == 500 and resp.text == "internal error"
    assert_one_line_logged(caplog)


def test_socket_mode_survives_malformed_envelopes_and_redis_down(ingest, caplog):
    client = RecordingSocketClient()
    bad = {"type": "event_callback", "event_id": "E1", "event": ["x"]}
    handle_request(ingest.service, client, SocketModeRequest("events_api", "env1", bad))
    down = IngestService(ingest.service.settings.model_copy(update={"ingest_redis_retry_seconds": 0.2}),
                         ingest_job_store(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")),
                         ingest.enqueued.append, ingest.service.sink)  # fmt: skip
    ok = message_event(f"<{A}>", event_id="E2", ts="1.1")
    handle_request(down, client, SocketModeRequest("events_api", "env2", ok))
    assert [r.envelope_id for r in client.responses] == ["env1", "env2"]  # both acked
    assert ingest.enqueued == [] and all(r.exc_info is None for r in caplog.records)
