"""`technoshare ingest --socket-mode on` as a real process against a local Slack: the fake Web API
answers ``apps.connections.open`` with a ``ws://127.0.0.1`` URL served by FakeSocketMode, which
sends envelopes and records the acks; jobs are read from the Celery queues (Redis lists) of a
real redis-server, no workers.

Slack's contract checked here: every envelope acked within 3 s; an envelope not acked, or sent
while the app is disconnected, is delivered again (new envelope_id, ``retry_attempt``), and
must not give a second job.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from pipeline.links import canonical_url
from pipeline.models import Job
from services.job_store import JobStore
from services.processes import free_port, wait_until
from tests.support.fake_slack import FakeSlack
from tests.support.fake_socket_mode import Ack, FakeSocketMode, envelope
from tests.support.service import CHANNEL, Process, RedisServer, message_event, service_env

pytestmark = pytest.mark.e2e

ACK_DEADLINE = 3.0  # Slack's: an envelope not acked by then is retried
START_JOB, FEEDBACK = "technoshare.start_job", "technoshare.record_feedback"


class SocketIngest(Process):
    """`technoshare ingest --socket-mode on`: ready when /healthz answers and the WebSocket is up."""

    def __init__(self, env: dict[str, str], log_dir: Path, ws: FakeSocketMode) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "services.cli", "ingest", "--port", str(self.port),
                "--socket-mode", "on"]  # fmt: skip
        super().__init__(f"socket-ingest-{self.port}", argv, env, log_dir)
        wait_until(self._healthy, 30, "ingest /healthz", 0.1)
        ws.wait_connections(1, 15)

    def _healthy(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"ingest exited:\n{self.log()[-3000:]}")
        try:
            url = f"http://127.0.0.1:{self.port}/healthz"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="module")
def socket_mode() -> Iterator[FakeSocketMode]:
    with FakeSocketMode() as ws:
        yield ws


@pytest.fixture(scope="module")
def ingest(
    redis_server: RedisServer,
    fake_slack: FakeSlack,
    socket_mode: FakeSocketMode,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SocketIngest]:
    fake_slack.socket_mode_url = socket_mode.new_url
    tmp = tmp_path_factory.mktemp("socket-ingest")
    (tmp / "state").mkdir()
    env = service_env(redis_server.url, fake_slack.api_url, tmp / "state",
                      SLACK_APP_TOKEN=fake_slack.app_token, LOG_LEVEL="INFO")  # fmt: skip
    for key in [k for k in env if k.lower().endswith("_proxy")]:  # 127.0.0.1 only, no proxy
        del env[key]
    process = SocketIngest(env, tmp, socket_mode)
    yield process
    process.stop()
    fake_slack.socket_mode_url = None


# --- helpers --------------------------------------------------------------------------------
def queued(r: redis.Redis) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """(task name, args, kwargs) of every task message waiting in Redis, in whichever Celery
    queue (list) its route names: the test checks what was published, not the routing."""
    out = []
    for key in sorted(r.scan_iter(_type="list")):
        for raw in r.lrange(key, 0, -1):
            message = json.loads(raw)
            args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            out.append((message["headers"]["task"], args, kwargs))
    return out


def start_jobs(r: redis.Redis) -> Counter[str]:
    return Counter(args[0] for name, args, _ in queued(r) if name == START_JOB)


def settled(r: redis.Redis, count: int, ingest: SocketIngest) -> list[tuple[str, list, dict]]:
    """The queue once it holds ``count`` tasks, and still after a pause (a late duplicate)."""
    try:
        wait_until(lambda: len(queued(r)) >= count, 10, f"{count} queued tasks", 0.05)
    except TimeoutError:
        raise AssertionError(f"queued: {queued(r)}\n{ingest.log()[-4000:]}") from None
    time.sleep(1.0)
    return queued(r)


def job_id(url: str, ts: str) -> str:
    return Job.make_id(CHANNEL, ts, canonical_url(url))


def event_envelope(payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return envelope("events_api", payload, **extra)


def redelivery(body: dict[str, Any]) -> dict[str, Any]:
    """Slack's retry of an envelope: same payload, a new envelope_id, retry_attempt + 1."""
    return event_envelope(
        body["payload"], retry_attempt=body.get("retry_attempt", 0) + 1, retry_reason="timeout"
    )


def assert_acked_in_time(acks: list[Ack]) -> None:
    slow = [(a.envelope_id, round(a.latency, 3)) for a in acks if a.latency >= ACK_DEADLINE]
    assert not slow, f"acked after {ACK_DEADLINE} s: {slow}"
    print("ack latencies (s):", [round(a.latency, 3) for a in acks])


# --- tests ----------------------------------------------------------------------------------
def test_envelopes_are_acked_in_time_and_handled_like_their_http_twins(
    ingest: SocketIngest,
    socket_mode: FakeSocketMode,
    fake_slack: FakeSlack,
    redis_client: redis.Redis,
    redis_server: RedisServer,
) -> None:
    ts = "1700000100.000100"
    links = ["https://example.org/a", "https://example.org/b?utm_source=x"]
    message = event_envelope(
        message_event(f"see <{links[0]}> and <{links[1]}>", event_id="EvM1", ts=ts)
    )
    command = envelope("slash_commands", {
        "command": "/technoshare", "text": "https://example.org/c", "channel_id": CHANNEL,
        "user_id": "UALICE", "trigger_id": "trig-1", "team_id": "T1",
    })  # fmt: skip
    reply = {"type": "message", "channel": CHANNEL, "ts": "1700000000.000042"}
    reaction = event_envelope({
        "type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event_id": "EvR1",
        "event_time": int(time.time()),
        "event": {"type": "reaction_added", "user": "UALICE", "reaction": "+1", "item": reply,
                  "item_user": "UBOT", "event_ts": "1700000200.000001"},
    })  # fmt: skip
    bodies = [message, command, reaction, redelivery(message)]
    for body in bodies:
        socket_mode.send(body)

    acks = socket_mode.wait_acks([b["envelope_id"] for b in bodies], 10)
    assert_acked_in_time(acks)
    assert acks[1].payload == {"response_type": "ephemeral", "text": "Queued 1 link(s)."}

    tasks = settled(redis_client, 4, ingest)
    expected = {
        job_id(links[0], ts),
        job_id(links[1], ts),
        Job.make_id(CHANNEL, "cmd-trig-1", canonical_url("https://example.org/c")),
    }
    assert start_jobs(redis_client) == Counter(expected), tasks  # the redelivery: no 2nd job
    feedback = [kwargs for name, _, kwargs in tasks if name == FEEDBACK]
    assert feedback == [{"channel": CHANNEL, "reply_ts": reply["ts"], "user": "UALICE",
                         "positive": True, "reaction": "+1"}]  # fmt: skip
    store = JobStore.from_url(redis_server.url)
    assert all(store.get(j) is not None for j in expected)
    # like over HTTP: 👀 on the message whose links were queued
    wait_until(lambda: fake_slack.reactions.get((CHANNEL, ts)), 5, ":eyes: reaction")


def test_a_dropped_connection_is_reopened_and_nothing_is_lost_or_doubled(
    ingest: SocketIngest, socket_mode: FakeSocketMode, fake_slack: FakeSlack,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    opens, count = len(fake_slack.calls_of("apps.connections.open")), len(socket_mode.connections)
    old = socket_mode.wait_connections(count, 5)
    # A: handled, but its ack is lost with the connection (Slack will send it again)
    old.lose_acks = True
    a = event_envelope(message_event("<https://example.org/lost-ack>", event_id="EvA", ts="1700000300.000001"))  # fmt: skip
    socket_mode.send(a)
    wait_until(lambda: start_jobs(redis_client), 10, "event A handled")
    dropped_at = time.monotonic()
    old.drop()  # no close frame: the TCP connection just goes away
    # B: happens while the app is disconnected; Slack delivers it on the next connection
    b = event_envelope(message_event("<https://example.org/while-down>", event_id="EvB", ts="1700000300.000002"))  # fmt: skip
    socket_mode.send(b)

    socket_mode.wait_connections(count + 1, 15)
    reconnect = time.monotonic() - dropped_at
    print(f"reconnected {reconnect:.2f} s after the drop")
    assert len(fake_slack.calls_of("apps.connections.open")) == opens + 1
    unacked = [e for e in socket_mode.unacked() if e is not b]
    assert unacked == [a]
    retry = redelivery(a)
    c = event_envelope(message_event("<https://example.org/after>", event_id="EvC", ts="1700000300.000003"))  # fmt: skip
    socket_mode.send(retry)
    socket_mode.send(c)

    assert_acked_in_time(
        socket_mode.wait_acks([b["envelope_id"], retry["envelope_id"], c["envelope_id"]], 10)
    )
    settled(redis_client, 3, ingest)
    assert start_jobs(redis_client) == Counter({
        job_id("https://example.org/lost-ack", "1700000300.000001"): 1,
        job_id("https://example.org/while-down", "1700000300.000002"): 1,
        job_id("https://example.org/after", "1700000300.000003"): 1,
    })  # fmt: skip
    assert ingest.alive()


def test_a_disconnect_envelope_moves_to_a_new_connection(
    ingest: SocketIngest, socket_mode: FakeSocketMode, fake_slack: FakeSlack,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    opens, count = len(fake_slack.calls_of("apps.connections.open")), len(socket_mode.connections)
    old = socket_mode.wait_connections(count, 5)
    socket_mode.send({"type": "disconnect", "reason": "refresh_requested",
                      "debug_info": {"host": "fake"}})  # fmt: skip
    socket_mode.wait_connections(count + 1, 10)
    assert len(fake_slack.calls_of("apps.connections.open")) == opens + 1
    d = event_envelope(message_event("<https://example.org/refreshed>", event_id="EvD", ts="1700000400.000001"))  # fmt: skip
    socket_mode.send(d)  # at once: the client is still closing the old connection

    assert_acked_in_time(socket_mode.wait_acks([d["envelope_id"]], 10))
    wait_until(lambda: not old.open, 5, "the client to close the old connection")
    settled(redis_client, 1, ingest)
    assert start_jobs(redis_client) == Counter(
        {job_id("https://example.org/refreshed", "1700000400.000001"): 1}
    )
