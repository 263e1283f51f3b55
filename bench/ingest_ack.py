"""Ingest ack latency: a signed Events API request with 3 links (verify, dedupe, 3 job records,
3 publishes) against the /healthz baseline on the same server, as a ratio. Slack wants the ack
within 3 s; the goal is that an event costs a few milliseconds over an empty request.

    python bench/ingest_ack.py [--events 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.processes import LocalRedis, ManagedProcess, free_port, wait_until  # noqa: E402
from tests.support.service import SIGNING_SECRET, message_event, signed_headers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    n = parser.parse_args().events
    with tempfile.TemporaryDirectory() as tmp:
        redis = LocalRedis(Path(tmp))
        port = free_port()
        env = {**os.environ, "REDIS_URL": redis.url, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_SINK": "console", "SLACK_CHANNELS": "C0SHARE", "STATE_DIR": tmp}  # fmt: skip
        argv = [sys.executable, "-m", "services.cli", "ingest", "--port", str(port)]
        ingest = ManagedProcess("ingest", argv, env, Path(tmp) / "ingest.log")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _ok(base + "/healthz"), 30, "ingest")
            with httpx.Client() as client:
                health = [_timed(lambda: client.get(base + "/healthz")) for _ in range(n)]
                events = []
                for i in range(n):
                    links = " ".join(f"<https://example.com/{i}/{k}>" for k in range(3))
                    body = json.dumps(message_event(links, event_id=f"Ev{i}", ts=f"1.{i}")).encode()
                    events.append(_timed(lambda b=body: _post(client, base, b)))
        finally:
            ingest.stop()
            redis.stop()
    h, e = statistics.median(health), statistics.median(events)
    p95 = sorted(events)[int(0.95 * len(events)) - 1]
    print(
        f"healthz median {h * 1000:.2f} ms; event median {e * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms"
    )
    print(f"ratio event/healthz (median): {e / h:.1f}x")


def _post(client: httpx.Client, base: str, body: bytes) -> httpx.Response:
    return client.post(base + "/slack/events", content=body, headers=signed_headers(body))


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _timed(call) -> float:
    t0 = time.perf_counter()
    resp = call()
    assert resp.status_code == 200, resp.text
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
