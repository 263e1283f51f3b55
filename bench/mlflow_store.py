"""MLflow store benchmark (not a test): the same recorded-job load against an sqlite-backed and
a PostgreSQL-backed ``mlflow server``, with tracking off as the baseline, in one run.

Started here, on free ports, stopped by PID: redis-server, a PostgreSQL cluster (initdb in a
temp dir, PostgreSQL's durable defaults: tests/support/postgres.py), and two ``mlflow server``s
(``--workers 2`` each, as compose runs it): one on sqlite, one on that PostgreSQL. Jobs run the
five stages through ``services.runner.run_stage`` (the stage doubles of tests/support/obs_jobs.py
with a stub model of fixed latency, ``--llm-delay`` seconds per LLM stage) on ``--threads``
threads of this process (a ``-P threads`` llm worker), with the worker-mode recorder (Redis
ledger and outbox). Rounds alternate the order of the modes so drift on a shared machine hits
each. Per mode, medians over the rounds:

- jobs/s (submission to the last ``end_job``) and its ratio to tracking off;
- MLflow requests per job, counted from the server's access log (health probes left out);
- CPU per job: this process (all threads: jobs, writer, span export) and the MLflow server's
  process group (+ the PostgreSQL cluster's for the PostgreSQL store), from /proc;
- backlog drained: seconds from the last job's end until the writer had written everything.

    python bench/mlflow_store.py [--jobs 64] [--threads 16] [--llm-delay 1.0] [--rounds 2]
        [--mlflow-app technoshare|mlflow]

Prints a table and writes bench/results/mlflow_store.json.
Targets (issue "throughput"): on/off >= 0.9 at 16 threads; <= 200 ms CPU per job, server
included; <= 12 MLflow requests per job.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
OUT = REPO / "bench" / "results" / "mlflow_store.json"
from tracking_overhead import configure, one_job  # noqa: E402

from bench.redaction import machine_ms_per_mb  # noqa: E402

MODES = ("off", "sqlite", "postgres")
TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in process group ``pgid`` (a server and the
    workers or backends it forked: each was started in a session of its own)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[2]) == pgid:  # fields from state on: state ppid pgrp ... utime stime
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def run_round(mode: str, args: argparse.Namespace, servers: dict, pgids: dict) -> dict:
    from observability.recorder import get_recorder

    if mode != "off":
        os.environ["MLFLOW_TRACKING_URI"] = servers[mode].url
    configure(tracking=mode != "off")
    one_job(0, f"warm-{mode}")  # this recorder's one-offs: experiment lookup, first trace
    get_recorder().flush(120.0)
    server = servers.get(mode)
    requests_before = sum(server.requests().values()) if server else 0
    server_before = sum(group_cpu_seconds(p) for p in pgids.get(mode, ()))
    speed_before = machine_ms_per_mb()  # this process's own CPU: read before cpu_before
    cpu_before, started = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(lambda n: one_job(n, mode), range(args.jobs)))
    elapsed = time.perf_counter() - started
    drain_started = time.perf_counter()
    drained = get_recorder().flush(300.0) if mode != "off" else True
    drain = time.perf_counter() - drain_started
    client_cpu = time.process_time() - cpu_before
    server_cpu = sum(group_cpu_seconds(p) for p in pgids.get(mode, ())) - server_before
    requests = (sum(server.requests().values()) - requests_before) if server else 0
    speed = (speed_before + machine_ms_per_mb()) / 2
    return {
        "jobs_per_s": args.jobs / elapsed,
        "requests_per_job": requests / args.jobs,
        "client_cpu_ms_per_job": client_cpu / args.jobs * 1e3,
        "server_cpu_ms_per_job": server_cpu / args.jobs * 1e3,
        "cpu_ms_per_job": (client_cpu + server_cpu) / args.jobs * 1e3,
        "machine_ms_per_mb": speed,
        "drain_s": drain if mode != "off" else 0.0,
        "drained": drained,
    }


def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    off = statistics.median(r["jobs_per_s"] for r in results["off"])
    out = {}
    for mode, rounds in results.items():
        med = {k: statistics.median(float(r[k]) for r in rounds) for k in rounds[0]}
        med["ratio_to_off"] = med["jobs_per_s"] / off
        med["drained"] = all(r["drained"] for r in rounds)
        out[mode] = med
    return out


def table(summary: dict[str, dict]) -> str:
    labels = {
        "off": "off (baseline)",
        "sqlite": "on, sqlite server",
        "postgres": "on, PostgreSQL server",
    }
    lines = [
        "| tracking | jobs/s | ratio to off | MLflow requests per job | CPU ms per job (this process + server) "
        "| machine ms/MB | server CPU ms per job | backlog drained after the last job (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode in MODES:
        s = summary[mode]
        server = f"{s['server_cpu_ms_per_job']:.0f}" if mode != "off" else "-"
        drain = f"{s['drain_s']:.1f}" if mode != "off" else "-"
        requests = f"{s['requests_per_job']:.1f}" if mode != "off" else "0"
        lines.append(
            f"| {labels[mode]} | {s['jobs_per_s']:.2f} | {s['ratio_to_off']:.3f} | {requests} | "
            f"{s['cpu_ms_per_job']:.0f} | {s['machine_ms_per_mb']:.0f} | "
            f"{server} | {drain} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--llm-delay", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mlflow-app", choices=("technoshare", "mlflow"), default="technoshare",
                        help="the servers' app: ours (one-request run writes) or MLflow's own")  # fmt: skip
    args = parser.parse_args()

    from observability.recorder import get_recorder, install_recorder
    from tests.support.mlflow_server import MlflowServer
    from tests.support.postgres import PostgresServer
    from tests.support.service import RedisServer

    os.environ.pop("TS_TEST_LITELLM", None)
    os.environ["TS_TEST_LLM_DELAY"] = str(args.llm_delay)
    load_start = os.getloadavg()[0]
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        root = Path(tmp)
        redis_server = RedisServer(root)
        postgres = PostgresServer(root / "pg-logs")
        servers: dict = {}
        try:
            (root / "pg-logs").mkdir()
            postgres.start()
            app = None if args.mlflow_app == "mlflow" else args.mlflow_app
            servers["sqlite"] = MlflowServer(root / "sqlite", app_name=app).start()
            servers["postgres"] = MlflowServer(
                root / "postgres", backend_uri=postgres.url, app_name=app
            ).start()
            assert postgres.proc is not None
            pgids = {
                "sqlite": [servers["sqlite"].proc.pid],
                "postgres": [servers["postgres"].proc.pid, postgres.proc.pid],
            }
            os.environ.update(REDIS_URL=redis_server.url, STATE_DIR=tmp)
            for i in range(args.rounds):
                order = MODES if i % 2 == 0 else tuple(reversed(MODES))
                for mode in order:
                    results[mode].append(run_round(mode, args, servers, pgids))
                    print(mode, json.dumps(results[mode][-1]), flush=True)
        finally:
            get_recorder().close()
            install_recorder(None)
            for server in servers.values():
                server.stop()
            postgres.stop()
            redis_server.stop()
    summary = summarize(results)
    report = {
        "command": "python bench/mlflow_store.py "
        f"--jobs {args.jobs} --threads {args.threads} --llm-delay {args.llm_delay:g} "
        f"--rounds {args.rounds}",
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "load_average_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "summary": summary,
        "rounds": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(table(summary))
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
