"""Generated hostile requests against the ingest app, in-process (Starlette test client, a
fakeredis job store, the enqueue seam counted).

Properties: never a 5xx; never an enqueue (nor a Redis write) without a valid signature; a
huge body is refused without being held in memory.
"""

from __future__ import annotations

import itertools
import json
import time
import tracemalloc
import urllib.parse
from collections.abc import Iterator

import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from pipeline.settings import Settings
from services.ingest import IngestService, create_app
from services.job_store import JobStore
from tests.support.service import CHANNEL, SIGNING_SECRET, message_event, sign, signed_headers
from tests.unit.services.test_ingest_limits import post_streamed

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)  # a few seconds per property


class NoSlack:
    def add_reaction(self, channel: str, ts: str, name: str) -> None:
        pass


class Harness:
    def __init__(self) -> None:
        self.settings = Settings(
            slack_signing_secret=SIGNING_SECRET, slack_channels=[CHANNEL], slack_bot_user_id="UBOT"
        )
        self.redis = fakeredis.FakeRedis(decode_responses=True)
        self.enqueued: list[str] = []
        self.service = IngestService(
            self.settings, JobStore(self.redis), self.enqueued.append, NoSlack()
        )
        self.app = create_app(self.settings, service=self.service)
        self.client = TestClient(self.app)


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    with h.client:  # one event loop thread for every request, not one per request
        yield h


# --- strategies -----------------------------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip
event_keys = st.sampled_from(
    ["type", "channel", "user", "text", "ts", "thread_ts", "subtype", "blocks", "message",
     "previous_message", "bot_id", "item", "reaction", "item_user"]
)  # fmt: skip
good_event = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "app_mention", "reaction_added"]),
     "channel": st.sampled_from([CHANNEL, "C0OTHER"]),
     "text": st.sampled_from(["<https://example.com/a>", "<https://example.com:99999/> x",
                              "<http://[::1/>", "https://b.example/x", ""]),
     "ts": st.sampled_from(["1.1", "2.2"])}
)  # fmt: skip
# well-formed envelopes whose event fields are overwritten with values of any type
event_payloads = st.builds(
    lambda event, overrides, top: {"type": "event_callback", "event_id": "Ev", **top,
                                   "event": {**event, **overrides}},
    good_event,
    st.dictionaries(event_keys, json_values, max_size=4),
    st.dictionaries(st.sampled_from(["event_id", "type", "team_id"]), json_values, max_size=2),
)  # fmt: skip
payloads = (
    event_payloads
    | json_values
    | st.dictionaries(st.sampled_from(["type", "event", "challenge", "event_id"]), json_values)
)
deep_bodies = st.builds(
    lambda depth, opener: opener * depth + b"1" + (b"]" if opener == b"[" else b"}") * depth,
    st.integers(1, 5000),
    st.sampled_from([b"[", b'{"a":']),
)
header_text = st.binary(max_size=80).filter(lambda b: not any(c in b for c in b"\r\n\x00"))
timestamps = st.one_of(
    st.none(), header_text, st.integers(-(10**15), 10**15).map(lambda n: str(n).encode()),
    st.just("now"),
)  # fmt: skip


def _header_values(timestamp, signature) -> dict:
    headers: dict = {"Content-Type": "application/json"}
    if timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = (
            str(int(time.time())).encode() if timestamp == "now" else timestamp
        )
    if signature is not None:
        headers["X-Slack-Signature"] = signature
    return headers


def _post(h: Harness, path: str, body: bytes, headers: dict):
    before = len(h.enqueued)
    resp = h.client.post(path, content=body, headers=headers)
    assert resp.status_code < 500, (resp.status_code, resp.text, body[:200], headers)
    return resp, len(h.enqueued) - before


# --- properties -----------------------------------------------------------------------------
@FUZZ
@given(
    body=st.binary(max_size=2048) | payloads.map(lambda p: json.dumps(p).encode()),
    timestamp=timestamps,
    signature=st.none() | header_text | st.just(b"v0=" + b"0" * 64),
    path=st.sampled_from(["/slack/events", "/slack/commands"]),
)
def test_without_a_valid_signature_never_a_5xx_nor_an_enqueue(harness, body, timestamp, signature,
                                                              path):  # fmt: skip
    keys_before = harness.redis.dbsize()
    resp, enqueued = _post(harness, path, body, _header_values(timestamp, signature))
    assert resp.status_code in (400, 401) and enqueued == 0
    assert harness.redis.dbsize() == keys_before  # not even a dedupe claim


@FUZZ
@given(payload=payloads, secret=st.sampled_from(["wrong-secret", SIGNING_SECRET + "x"]))
def test_signed_with_another_secret_or_another_body_is_401(harness, payload, secret):
    body = json.dumps(payload).encode()
    for headers in (signed_headers(body, secret=secret), signed_headers(body + b" ")):
        resp, enqueued = _post(harness, "/slack/events", body, headers)
        assert resp.status_code == 401 and enqueued == 0


@FUZZ
@given(body=st.binary(max_size=4096) | deep_bodies | payloads.map(lambda p: json.dumps(p).encode()))
def test_signed_garbage_wrong_types_and_deep_json_are_never_a_5xx(harness, body):
    harness.redis.flushdb()
    resp, _ = _post(harness, "/slack/events", body, signed_headers(body))
    assert resp.status_code in (200, 400)


@FUZZ
@given(
    form=st.dictionaries(
        st.sampled_from(["command", "text", "channel_id", "user_id", "trigger_id", "x"]),
        st.text(max_size=40) | st.sampled_from(["<https://example.com:99999/>", "https://a.b/c"]),
    ),
    raw=st.none() | st.binary(max_size=512),
)
def test_signed_slash_commands_of_any_shape_are_never_a_5xx(harness, form, raw):
    body = raw if raw is not None else urllib.parse.urlencode(form).encode()
    resp, _ = _post(harness, "/slack/commands", body, signed_headers(body))
    assert resp.status_code in (200, 400)


def test_a_signed_message_with_one_bad_link_queues_the_good_ones(harness):
    text = "<https://example.com:99999/> <https://a.example/1> <https://b.example/2>"
    body = json.dumps(message_event(text, event_id="EvFuzzLinks", ts="9.9")).encode()
    resp, enqueued = _post(harness, "/slack/events", body, signed_headers(body))
    assert resp.status_code == 200 and enqueued == 2


# --- memory ---------------------------------------------------------------------------------
def _peak_bytes(call) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_100mb_unsigned_body_with_content_length_is_413_unread(harness):
    chunk = b"x" * 65536
    headers = {"Content-Length": str(100 * 1024 * 1024)}
    (resp, pulled), peak = _peak_bytes(
        lambda: post_streamed(harness.app, "/slack/events", itertools.repeat(chunk, 1600), headers)
    )
    assert resp.status_code == 413 and pulled == 0
    assert peak < 2 * 1024 * 1024, peak


def test_a_20mb_chunked_body_is_413_after_about_1mb(harness):
    chunk = b"x" * 65536
    ts = int(time.time())
    headers = {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sign(b"", ts)}
    (resp, pulled), peak = _peak_bytes(
        lambda: post_streamed(harness.app, "/slack/events", itertools.repeat(chunk, 320), headers)
    )
    assert resp.status_code == 413
    assert pulled * len(chunk) <= 1024 * 1024 + len(chunk)
    assert peak < 4 * 1024 * 1024, peak  # the 1 MB read, its chunks, the client's buffers
