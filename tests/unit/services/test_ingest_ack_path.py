"""What the ingest's ack path costs Redis, on a real redis-server: one command for a new job
record, no result channel for a publish, and the 👀 reaction on threads of its own (a slow Slack
holds none of the request threads). bench/ingest_load.py measures the latencies."""

from __future__ import annotations

import json
import threading

import redis

from pipeline.models import Job
from pipeline.settings import Settings
from services.ingest import Reactions, create_app
from services.job_store import JobStatus, JobStore
from services.slack_events import CeleryPublisher, IngestService
from tests.support.service import CHANNEL, SIGNING_SECRET, message_event, signed_headers


def commands(r: redis.Redis) -> dict[str, int]:
    """Calls per command since redis-server started (INFO itself left out)."""
    stats = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"}


def sent_since(r: redis.Redis, before: dict[str, int]) -> dict[str, int]:
    after = commands(r)
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def job(job_id: str) -> Job:
    url = f"https://example.com/{job_id}"
    return Job(job_id=job_id, channel_id="C1", message_ts="1.1", url=url, canonical_url=url)


class CountingConnection(redis.Connection):
    """Counts what is written to the socket: one write per command, one per pipeline."""

    writes = 0

    def send_packed_command(self, command, check_health=True):  # noqa: ANN001 - redis-py's
        CountingConnection.writes += 1
        super().send_packed_command(command, check_health)


def test_a_new_job_record_is_one_round_trip_and_a_known_id_writes_nothing(redis_server):
    pool = redis.ConnectionPool.from_url(redis_server.url, decode_responses=True,
                                         connection_class=CountingConnection)  # fmt: skip
    client = redis.Redis(connection_pool=pool)
    client.flushdb()
    store = JobStore(client)
    assert store.create(job("warm"))  # connects, loads the script once
    before = CountingConnection.writes
    assert store.create(job("j1"))
    assert CountingConnection.writes - before == 1
    record = store.require("j1")
    assert record.status == JobStatus.queued and record.attempt == 0 and record.created_at
    assert client.ttl("ts:job:j1") > 0
    store.set_status("j1", JobStatus.posted)
    assert not store.create(job("j1").model_copy(update={"url": "https://other.example/"}))
    assert store.require("j1").status == JobStatus.posted  # untouched
    assert store.require("j1").job.url == "https://example.com/j1"
    client.close()


def test_a_publish_subscribes_to_no_result_channel(redis_server, redis_client):
    publisher = CeleryPublisher(Settings(redis_url=redis_server.url))
    try:
        before = commands(redis_client)
        for i in range(3):
            publisher.enqueue(f"job-{i}")
        sent = sent_since(redis_client, before)
        assert sent.get("lpush") == 3, sent
        assert not {"subscribe", "psubscribe"} & set(sent), sent
        assert redis_client.pubsub_channels() == []
    finally:
        publisher.client.close()


class SlowSink:
    """A Slack whose reactions hang until released; records the threads that called it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: list[str] = []

    def add_reaction(self, channel: str, ts: str, name: str) -> None:
        self.threads.append(threading.current_thread().name)
        self.release.wait(30)


def test_reactions_never_block_the_ack_and_a_full_backlog_drops_them():
    sink = SlowSink()
    reactions = Reactions(lambda jobs: sink.add_reaction("C", "1.1", "eyes"), threads=1, backlog=2)
    try:
        assert reactions.submit([job("a")]) and reactions.submit([job("b")])
        assert not reactions.submit([job("c")])  # two waiting: dropped, not queued
        assert not reactions.wait_idle(0.05)
        sink.release.set()
        assert reactions.wait_idle(10)
        assert reactions.submit([job("d")])  # room again
        assert reactions.wait_idle(10)
        assert len(sink.threads) == 3
    finally:
        reactions.close()


def test_the_eyes_reaction_runs_off_the_request_threads(redis_client):
    from starlette.testclient import TestClient

    settings = Settings(slack_signing_secret=SIGNING_SECRET, slack_channels=[CHANNEL])
    sink = SlowSink()
    sink.release.set()
    enqueued: list[str] = []
    service = IngestService(settings, JobStore(redis_client), enqueued.append, sink)
    client = TestClient(create_app(settings, service=service))
    resp = post_event_via(client, message_event("<https://example.com/x>", event_id="E1", ts="5.1"))
    assert resp.status_code == 200 and len(enqueued) == 1
    assert client.app.state.reactions.wait_idle(10)
    assert sink.threads and all(t.startswith("ingest-reactions") for t in sink.threads)


def post_event_via(client, payload):
    body = json.dumps(payload).encode()
    return client.post("/slack/events", content=body, headers=signed_headers(body))
