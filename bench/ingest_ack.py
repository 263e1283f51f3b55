"""Ingest ack latency: a signed Events API request with 3 links (verify, dedupe, 3 job records,
3 publishes) against the /healthz baseline on the same server, as a ratio. Slack wants the ack
within 3 s; the goal is that an event costs a few milliseconds over an empty request.

``--hostile``: instead, the ingest's peak RSS while 4 clients at once upload 100 MB unsigned
bodies with a Content-Length (413 unread), then 20 MB chunked bodies (413 after the 1 MB cap),
then abandon uploads halfway; and the tracebacks its log holds afterwards.

    python bench/ingest_ack.py [--events 200] [--hostile]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.processes import LocalRedis, ManagedProcess, free_port, wait_until  # noqa: E402
from tests.support.service import SIGNING_SECRET, message_event, signed_headers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--hostile", action="store_true", help="oversized and abandoned uploads")
    args = parser.parse_args()
    n = args.events
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
            if args.hostile:
                return _hostile(port, ingest.proc.pid, Path(tmp) / "ingest.log")
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


MB = 1024 * 1024


def _rss_kb(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field)))


def _upload(port: int, head: bytes, total: int, chunked: bool, abandon_at: int | None) -> str:
    """Send ``head`` then up to ``total`` body bytes; the status line the server answered
    (read as soon as it answers, mid-upload), or 'abandoned'."""
    chunk = b"x" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < total:
                if abandon_at is not None and sent >= abandon_at:
                    return "abandoned"
                if select.select([sock], [], [], 0)[0]:
                    break  # answered before the body was sent
                sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                sent += len(chunk)
        except OSError:  # the server closed the connection after answering
            pass
        try:
            return sock.recv(200).split(b"\r\n", 1)[0].decode() + f" after {sent // MB} MB sent"
        except OSError as exc:
            return f"no answer ({exc})"


def _hostile(port: int, pid: int, log_path: Path) -> None:
    start_rss = _rss_kb(pid, "VmRSS")
    ts = str(int(time.time()))
    forged = f"X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: v0={'a' * 64}\r\n"
    cases = {
        "100 MB unsigned, Content-Length": (
            f"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: {100 * MB}\r\n\r\n",
            100 * MB, False, None),
        "20 MB chunked, forged signature": (
            "POST /slack/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            + forged + "\r\n", 20 * MB, True, None),
        "abandoned at 512 KB of 900 KB": (
            f"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: {900 * 1024}\r\n"
            + forged + "\r\n", 900 * 1024, False, 512 * 1024),
    }  # fmt: skip
    print(f"ingest RSS at start: {start_rss / 1024:.1f} MB")
    for name, (head, total, chunked, abandon) in cases.items():
        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            jobs = [pool.submit(_upload, port, head.encode(), total, chunked, abandon)
                    for _ in range(4)]  # fmt: skip
            answers = [j.result() for j in jobs]
        elapsed = time.perf_counter() - t0
        print(f"{name} x4: {sorted(set(answers))} in {elapsed:.2f} s; "
              f"peak RSS so far {_rss_kb(pid, 'VmHWM') / 1024:.1f} MB")  # fmt: skip
    time.sleep(0.5)
    text = log_path.read_text(errors="replace")
    print(f"ingest log: {len(text.splitlines())} lines, {text.count('Traceback')} tracebacks")


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
