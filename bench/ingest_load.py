"""Ingest under load: signed Events API messages at a fixed rate (open loop) against the real
ingest HTTP server (uvicorn) and a real redis-server, with the fake Slack answering the 👀
reaction and a broker consumer draining ``technoshare.start_job`` from the post queue (the
workers are not needed: what the ingest pays for a publish is the same). Each rate is measured
twice in the same run: ``GET /healthz`` at that rate (the baseline: HTTP, uvicorn, the
loopback) and then the events.

Latency is taken from each request's scheduled send time, so a sender that falls behind shows up
as latency instead of a slower rate. The senders run in a forked process of their own, apart
from the fake Slack (which answers a reaction per event) and the queue drain. CPU per request is the ingest process's CPU (and Redis's)
over the phase divided by the requests of the phase.

    python bench/ingest_load.py [--rates 50 100 200] [--seconds 8] [--runs 3] [--links 1]
        [--workers 1]

Prints a table; writes bench/results/ingest_load.json. Target: p99 < 50 ms at 200 events/s in
every run, 0 errors.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.stackstats import (  # noqa: E402
    command_delta,
    commands,
    cpu_seconds,
    percentile,
    tree_cpu,
    write_results,
)
from tests.support.fake_slack import FakeSlack  # noqa: E402
from tests.support.service import (  # noqa: E402
    BOT_TOKEN,
    Ingest,
    RedisServer,
    message_event,
    service_env,
    signed_headers,
)

RESULTS = REPO / "bench" / "results" / "ingest_load.json"
SENDERS = 24  # enough threads that a slow answer never delays the next scheduled send


def drain_post_queue(url: str, stop: threading.Event) -> None:
    """A stand-in worker: pop every message published to the post queue (and its priority
    lists), so the broker stays as small as with workers running."""
    from tasks.app import queue_keys

    client = redis.Redis.from_url(url)
    keys = queue_keys("post")
    while not stop.is_set():
        client.brpop(keys, timeout=0.2)
    client.close()


def send_all(base: str, requests: list[tuple[str, bytes | None, dict[str, str]]], rate: float,
             out: Any) -> None:  # fmt: skip
    """The load generator: ``requests`` at ``rate`` per second from SENDERS threads; sends
    (latencies, errors, elapsed) on ``out``. Run in a process of its own: in the bench's
    process it would share one GIL with the fake Slack answering every reaction."""
    n = len(requests)
    latencies: list[float] = [0.0] * n
    errors: list[str] = []
    nxt = iter(range(n))
    lock = threading.Lock()
    start = time.perf_counter() + 0.2

    def sender() -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while True:
                with lock:
                    i = next(nxt, None)
                if i is None:
                    return
                due = start + i / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                path, body, headers = requests[i]
                try:
                    if body is None:
                        resp = client.get(path)
                    else:
                        resp = client.post(path, content=body, headers=headers)
                    if resp.status_code != 200:
                        errors.append(f"{resp.status_code} {resp.text[:80]}")
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies[i] = time.perf_counter() - due

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.send((latencies, errors, time.perf_counter() - start))
    out.close()


def phase(base: str, requests: list[tuple[str, bytes | None, dict[str, str]]], rate: float,
          pid: int, r: redis.Redis, redis_pid: int) -> dict[str, Any]:  # fmt: skip
    """Send ``requests`` at ``rate`` per second from a forked load generator; latencies and
    the ingest's (and Redis's) CPU over the phase."""
    n = len(requests)
    cpu0, rcpu0, cmd0 = tree_cpu(pid), cpu_seconds(redis_pid), commands(r)  # all ingest processes
    ctx = multiprocessing.get_context("fork")
    receiving, sending = ctx.Pipe(duplex=False)
    generator = ctx.Process(target=send_all, args=(base, requests, rate, sending))
    generator.start()
    sending.close()
    latencies, errors, elapsed = receiving.recv()
    generator.join(30)
    time.sleep(0.3)  # the reactions after the responses: their CPU belongs to the phase
    cpu, rcpu = tree_cpu(pid) - cpu0, cpu_seconds(redis_pid) - rcpu0
    delta = command_delta(cmd0, commands(r))
    ms = [x * 1000 for x in latencies]
    return {
        "requests": n, "rate": rate, "achieved_rate": round(n / elapsed, 1),
        "p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2), "errors": len(errors), "error_samples": errors[:3],
        "ingest_cpu_ms_per_request": round(cpu / n * 1000, 3),
        "redis_cpu_ms_per_request": round(rcpu / n * 1000, 3),
        "redis_commands_per_request": round(sum(delta.values()) / n, 2),
        "redis_commands": {k: round(v / n, 2) for k, v in delta.items()},
    }  # fmt: skip


def event_requests(n: int, links: int, tag: str) -> list[tuple[str, bytes | None, dict[str, str]]]:
    """Signed message events built before the clock starts (signing is the client's cost)."""
    out: list[tuple[str, bytes | None, dict[str, str]]] = []
    for i in range(n):
        text = " ".join(f"<https://example.com/{tag}/{i}/{k}>" for k in range(links))
        ts = f"{int(time.time())}.{i:06d}"
        body = json.dumps(message_event(text, event_id=f"Ev{tag}{i}", ts=ts)).encode()
        out.append(("/slack/events", body, signed_headers(body)))
    return out


def one_run(run: int, args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    rows = []
    with FakeSlack(token=BOT_TOKEN) as fake:
        server = RedisServer(tmp)
        env = service_env(server.url, fake.api_url, tmp, MLFLOW_ENABLE_TRACKING="false")
        ingest = None
        stop = threading.Event()
        drain = threading.Thread(target=drain_post_queue, args=(server.url, stop), daemon=True)
        drain.start()
        r = redis.Redis.from_url(server.url)
        try:
            ingest = Ingest(env, tmp, workers=args.workers)
            base = ingest.url
            assert server._process is not None
            redis_pid = server._process.pid
            warm = event_requests(50, args.links, f"warm{run}")
            phase(base, warm, 50, ingest.pid, r, redis_pid)
            for rate in args.rates:
                n = int(rate * args.seconds)
                health = phase(base, [("/healthz", None, {})] * n, rate, ingest.pid, r, redis_pid)
                events = phase(base, event_requests(n, args.links, f"r{run}x{rate}"), rate,
                               ingest.pid, r, redis_pid)  # fmt: skip
                reactions = len(fake.calls_of("reactions.add"))
                for kind, result in (("healthz", health), ("events", events)):
                    rows.append({"run": run, "kind": kind, **result})
                print(f"run {run} rate {rate}: healthz p99 {health['p99_ms']} ms; events p50 "
                      f"{events['p50_ms']} p99 {events['p99_ms']} max {events['max_ms']} ms, "
                      f"errors {events['errors']}, reactions so far {reactions}", flush=True)  # fmt: skip
        finally:
            stop.set()
            drain.join(5)
            r.close()
            if ingest is not None:
                ingest.stop()
            server.stop()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| run | rate /s | kind | p50 ms | p99 ms | max ms | errors | ingest CPU ms/req "
        "| Redis CPU ms/req | Redis cmds/req |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['run']} | {row['rate']:g} | {row['kind']} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['max_ms']:.1f} | {row['errors']} | "
            f"{row['ingest_cpu_ms_per_request']:.2f} | {row['redis_cpu_ms_per_request']:.2f} | "
            f"{row['redis_commands_per_request']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 100.0, 200.0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per rate and phase")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="ingest HTTP processes")
    parser.add_argument("--links", type=int, default=1, help="links per message (jobs per event)")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            rows += one_run(run, args, Path(tmp))
    print(table(rows))
    top = max(args.rates)
    worst = max(r["p99_ms"] for r in rows if r["kind"] == "events" and r["rate"] == top)
    errors = sum(r["errors"] for r in rows if r["kind"] == "events")
    print(f"worst events p99 at {top:g}/s over {args.runs} runs: {worst:.1f} ms; errors {errors}")
    write_results(RESULTS, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
