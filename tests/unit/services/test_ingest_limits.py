"""Ingest under resource pressure: bodies bounded in size (413, before reading when declared)
and time (408), abandoned uploads, and Redis outages (retried within the budget, then 503 with
Retry-After so Slack retries; never a 500). Redis here is a real redis-server this module
starts and stops itself.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import anyio
import httpx
import redis
from starlette.testclient import TestClient

from pipeline.settings import Settings
from services.ingest import IngestService, create_app, ingest_job_store
from services.job_store import JobStore
from services.processes import ManagedProcess, free_port, wait_until
from services.slack_client import WebApiSink
from services.slack_events import CeleryPublisher
from tests.support.service import (
    BOT_TOKEN,
    CHANNEL,
    SIGNING_SECRET,
    message_event,
    signed_headers,
)
from tests.unit.services.test_ingest import (  # noqa: F401 - ingest_fixture
    A,
    assert_one_line_logged,
    forged_headers,
    ingest_fixture,
    send,
)


def post_streamed(
    app, path: str, chunks: Iterable[bytes], headers: dict, *, pause: float = 0.0
) -> tuple[httpx.Response, int]:
    """POST a body streamed chunk by chunk (chunked unless a Content-Length is given), in-process;
    also returns how many chunks the app pulled."""
    pulled = 0

    async def body():
        nonlocal pulled
        for chunk in chunks:
            await anyio.sleep(pause)
            pulled += 1
            yield chunk

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            return await client.post(path, content=body(), headers=headers)

    return anyio.run(run), pulled


def test_a_body_declared_over_the_limit_is_413_before_a_byte_is_read(ingest, caplog):
    chunks = itertools.repeat(b"x" * 65536, 1600)  # 100 MB, never materialised
    headers = {**forged_headers(ingest.clock.now()), "Content-Length": str(1600 * 65536)}
    resp, pulled = post_streamed(ingest.app, "/slack/events", chunks, headers)
    assert resp.status_code == 413 and resp.headers["connection"] == "close"
    assert pulled == 0 and ingest.enqueued == []
    assert_one_line_logged(caplog)


def test_a_streamed_body_over_the_limit_is_413_once_past_the_cap(ingest):
    chunks = itertools.repeat(b"x" * 65536, 320)  # 20 MB, chunked: no Content-Length
    resp, pulled = post_streamed(ingest.app, "/slack/events", chunks, forged_headers(time.time()))
    assert resp.status_code == 413
    assert pulled * 65536 <= 1024 * 1024 + 65536  # stopped right after the 1 MB cap


def test_a_slow_body_is_408(ingest, caplog):
    settings = ingest.service.settings.model_copy(update={"ingest_read_timeout_seconds": 0.2})
    app = create_app(settings, service=ingest.service, clock=ingest.clock)
    body = json.dumps(message_event(f"<{A}>", event_id="Ev1", ts="1.1")).encode()
    pieces = [body[i : i + 10] for i in range(0, len(body), 10)]
    resp, _ = post_streamed(app, "/slack/events", pieces, signed_headers(body), pause=0.05)
    assert resp.status_code == 408 and ingest.enqueued == []
    assert_one_line_logged(caplog)


def test_an_abandoned_upload_ends_quietly(ingest, caplog):
    messages = [{"type": "http.request", "body": b'{"type": ', "more_body": True},
                {"type": "http.disconnect"}]  # fmt: skip
    sent: list[dict] = []
    headers = [(k.lower().encode(), v.encode()) for k, v in forged_headers(time.time()).items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/slack/events", "raw_path": b"/slack/events",
             "query_string": b"", "root_path": "", "headers": headers,
             "server": ("127.0.0.1", 3000), "client": ("127.0.0.1", 5555)}  # fmt: skip

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    with caplog.at_level(logging.INFO, logger="technoshare.ingest"):
        anyio.run(ingest.app, scope, receive, send)
    assert ingest.enqueued == []
    assert [r.getMessage() for r in caplog.records] == [
        "POST /slack/events: client went away before the body was complete"
    ]
    assert caplog.records[0].exc_info is None


# --- Redis outages: retried within the budget, then 503 (Slack retries), never a 500 ----------
def redis_outage_ingest(redis_url: str, retry_seconds: float, fake_slack) -> TestClient:
    settings = Settings(
        slack_signing_secret=SIGNING_SECRET, slack_channels=[CHANNEL], redis_url=redis_url,
        slack_bot_token=BOT_TOKEN, slack_api_url=fake_slack.api_url,
        ingest_redis_retry_seconds=retry_seconds,
    )  # fmt: skip
    publisher = CeleryPublisher(settings)  # the real publish path: kombu's retry policy
    service = IngestService(
        settings, ingest_job_store(settings), publisher.enqueue, WebApiSink(settings)
    )
    return TestClient(create_app(settings, service=service))


class RestartableRedis:
    """A redis-server on a fixed port that can be stopped and started again on that port."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.port, self.proc = tmp, free_port(), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.tmp)]  # fmt: skip
        self.proc = ManagedProcess("redis", argv, os.environ, self.tmp / "redis.log")
        wait_until(self._up, 10, "redis-server")

    def _up(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def test_redis_down_is_503_with_retry_after_never_500(fake_slack, caplog):
    client = redis_outage_ingest(f"redis://127.0.0.1:{free_port()}/0", 0.3, fake_slack)
    t0 = time.monotonic()
    resp = send(client, message_event(f"<{A}>", event_id="Ev1", ts="1.1"))
    assert resp.status_code == 503 and resp.headers["Retry-After"].isdigit()
    assert time.monotonic() - t0 < 3  # the retry budget, not redis-py's or kombu's own defaults
    assert all(r.exc_info is None for r in caplog.records)


def test_a_redis_blip_shorter_than_the_retry_bound_is_200_and_the_job_is_queued(
    tmp_path, fake_slack
):
    server = RestartableRedis(tmp_path)
    server.start()
    try:
        # a generous retry budget: on a loaded machine the restart itself may take seconds
        client = redis_outage_ingest(server.url, 30.0, fake_slack)
        assert client.get("/readyz").status_code == 200
        server.stop()
        answers: list = []
        event = message_event(f"<{A}>", event_id="Ev1", ts="1.1")
        sender = threading.Thread(target=lambda: answers.append(send(client, event)))
        t0 = time.monotonic()
        sender.start()
        time.sleep(1.5)
        # restarted from this thread: redis-server dies with the thread that started it
        # (PR_SET_PDEATHSIG), and a timer thread ends as soon as the server is up
        server.start()
        sender.join(60)
        [resp] = answers
        assert resp.status_code == 200 and 1.4 < time.monotonic() - t0 < 30
        [job_id] = resp.json()["jobs"]
        check = redis.Redis.from_url(server.url, decode_responses=True)
        assert JobStore(check).require(job_id).job.url == A
        from pipeline.constants import START_JOB_TASK
        from tasks.app import ROUTES

        [message] = check.lrange(ROUTES[START_JOB_TASK], 0, -1)  # on the broker, once
        assert json.loads(message)["headers"]["task"] == START_JOB_TASK
        assert job_id in json.loads(message)["headers"]["argsrepr"]
    finally:
        server.stop()
