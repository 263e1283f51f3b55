"""The whole chain under load: real redis-server, the real ingest, real Celery workers (io prefork
2, llm threads in one or more processes, post prefork 2), fake Slack, the recorded web
(``FETCH_RECORDED``) and an OpenAI-compatible stub that answers every call in exactly
``--llm-delay`` seconds (its answers: the offline model's, computed once per prompt, so the
stub's own CPU stays out of the machine's budget). Tracking off; ``--tracking`` adds runs with a
real ``mlflow server`` (its requests counted from its access log, its CPU counted with the
stack's).

Per configuration: jobs/s (the completion rate between the 10th and 90th percentile finish, so
the pipeline's fill and drain do not count; it overstates when finishes bunch up), the
wall-clock jobs/s (all jobs over first created .. last final), achieved/bound where bound = LLM
slots (threads x processes) / LLM calls per job (the stub's own count), how busy the LLM slots
were (the stub's calls x latency over slots x its first call .. last answer: the steadiest
measure of "bounded by LLM concurrency"), p50/p95 end to end (job record created ->
final status), CPU per job (every process of the stack: redis, ingest, workers with their pool
children; the LLM wait is sleep, not CPU, and the stub is not counted), Redis commands per job
(INFO commandstats, the bench's own reads subtracted) and Redis memory per finished job, RSS per
process, MLflow requests per job. Plus the bare chain (the stage stand-ins of
tests/support/standins.py: no fetch, no LLM) as the orchestration floor, and a burst of
``--burst`` jobs at 4 threads (p50 end to end; FIFO queues gave p50 = the whole burst).

    python bench/chain_throughput.py [--llm 4x1 16x2 32x2] [--llm-delay 1.0] [--tracking]
        [--burst 100] [--skip-bare]

Writes bench/results/chain_throughput.json and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TECHNOSHARE_ENV_FILE", "")  # hermetic: never a developer's .env

import redis  # noqa: E402

from bench.redaction import machine_ms_per_mb  # noqa: E402
from bench.stackstats import (  # noqa: E402
    command_delta,
    commands,
    percentile,
    rss_mb,
    tree,
    tree_cpu,
    used_memory,
    write_results,
)
from tests.support.fake_slack import FakeSlack  # noqa: E402
from tests.support.openai_stub import OpenAIStub, completion  # noqa: E402
from tests.support.service import (  # noqa: E402
    BOT_TOKEN,
    Ingest,
    Stack,
    Worker,
    message_event,
    signed_headers,
)

RESULTS = REPO / "bench" / "results" / "chain_throughput.json"
NONCE = re.compile(r"\b[0-9a-f]{16}\b")  # the data blocks' random nonces (pipeline/prompting.py)
SUBMIT_RATE = 50.0  # events/s, one link each


class FixedLatencyStub(OpenAIStub):
    """Every answer exactly ``delay`` s after its request arrived, whatever it cost to make."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._answers: dict[str, str] = {}
        self.arrivals: list[float] = []  # when each call arrived (monotonic)
        super().__init__()

    def _respond(self, body: dict[str, Any]) -> tuple[int, dict, dict[str, str]]:
        arrived = time.monotonic()
        with self._lock:
            self.requests += 1
            self.arrivals.append(arrived)
        key = NONCE.sub("N", json.dumps([body.get("messages"), body.get("tools")], sort_keys=True))
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = self._offline(body)
        time.sleep(max(0.0, arrived + self.delay - time.monotonic()))
        return 200, completion(answer), {}


def recorded_urls() -> list[str]:
    manifest = json.loads((REPO / "data" / "recorded" / "manifest.json").read_text())
    return sorted({e["url"] for e in manifest if e.get("url")})


def when(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Bench:
    """One configuration: a fresh stack, ``jobs`` jobs through the ingest, the figures."""

    def __init__(self, tmp: Path, fake: FakeSlack, stub: FixedLatencyStub, *, slots: int,
                 processes: int, bare: bool, mlflow_url: str | None) -> None:  # fmt: skip
        env: dict[str, str] = {
            "FETCH_RECORDED": "true", "LLM_MODEL": "openai/stub", "LLM_API_BASE": stub.url,
            "OPENAI_API_KEY": "stub", "REPEAT_WINDOW_DAYS": "0", "LOG_LEVEL": "WARNING",
            "MLFLOW_ENABLE_TRACKING": "true" if mlflow_url else "false",
        }  # fmt: skip
        if mlflow_url:
            env.update(MLFLOW_TRACKING_URI=mlflow_url, MLFLOW_ENABLE_TRACING="true")
        if bare:
            env["TS_TEST_STANDINS"] = "1"
        self.stack = Stack(tmp, fake, **env)
        self.fake, self.stub, self.tmp = fake, stub, tmp
        self.slots, self.processes = slots, processes
        self.r = redis.Redis.from_url(self.stack.redis.url, decode_responses=True)
        self.ingest: Ingest | None = None
        self.extra_pids: dict[str, int] = {}
        self.settle: Any = None

    def start(self) -> Bench:
        self.stack.start_workers(roles=("io", "post"))
        per = self.slots // self.processes
        llm = [Worker(f"llm{i}", "llm", "threads", per, self.stack.env, self.tmp)
               for i in range(self.processes)]  # fmt: skip
        self.stack.workers += llm
        for worker in llm:
            worker.wait_ready()
        self.ingest = Ingest(self.stack.env, self.tmp)
        return self

    def pids(self) -> dict[str, int]:
        assert self.ingest is not None and self.stack.redis._process is not None
        out = {"redis": self.stack.redis._process.pid, "ingest": self.ingest.pid}
        out.update({w.name: w.pid for w in self.stack.workers})
        out.update(self.extra_pids)
        return out

    def wait_mlflow_idle(self, server: Any, quiet_s: float = 3.0, timeout: float = 180) -> None:
        """Until the server's request count has stood still for ``quiet_s`` (the writers'
        backlog drained), so every job's requests are counted."""
        deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < deadline:
            now = sum(server.requests().values())
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.5)

    def submit(self, urls: list[str], tag: str) -> list[str]:
        """One signed message per URL, at SUBMIT_RATE; the job ids the ingest answered."""
        import httpx

        assert self.ingest is not None
        ids: list[str] = []
        start = time.perf_counter()
        with httpx.Client(base_url=self.ingest.url, timeout=10) as client:
            for i, url in enumerate(urls):
                time.sleep(max(0.0, start + i / SUBMIT_RATE - time.perf_counter()))
                ts = f"{int(time.time())}.{i:06d}"
                body = json.dumps(message_event(f"see <{url}>", event_id=f"Ev{tag}{i}", ts=ts))
                resp = client.post("/slack/events", content=body.encode(),
                                   headers=signed_headers(body.encode()))  # fmt: skip
                resp.raise_for_status()
                ids += resp.json()["jobs"]
        return ids

    def wait_posted(self, n: int, timeout: float) -> None:
        """Until Slack has ``n`` replies (polling fake Slack, not Redis: no commands counted)."""
        deadline = time.monotonic() + timeout
        while len(self.fake.posts()) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.fake.posts())} of {n} replies in {timeout:.0f} s")
            time.sleep(0.2)

    def run(self, n: int, tag: str, urls: list[str]) -> dict[str, Any]:
        from services.job_store import FINAL_STATUSES, JobStore

        store = JobStore(self.r)
        warm = self.submit(urls[:4], f"{tag}w")  # imports, connections, first prompts
        self.wait_posted(len(warm), 300)
        self._wait_final(store, warm, FINAL_STATUSES)
        self.fake.reset()
        time.sleep(1.0)
        pids = self.pids()
        speed_before = machine_ms_per_mb()
        cpu0 = {name: tree_cpu(pid) for name, pid in pids.items()}
        cmd0, mem0, calls0 = commands(self.r), used_memory(self.r), self.stub.requests
        arrivals0 = len(self.stub.arrivals)
        self._polls = 0
        jobs = [urls[i % len(urls)] for i in range(n)]
        ids = self.submit(jobs, tag)
        self.wait_posted(len(ids), 60 + 10 * n)
        records = self._wait_final(store, ids, FINAL_STATUSES)
        time.sleep(1.0)  # the last acks and finishes
        if self.settle is not None:
            self.settle()  # e.g. the MLflow writers' backlog: its CPU is this run's
        cpu = {name: tree_cpu(pid) - cpu0[name] for name, pid in pids.items()}
        speed = (speed_before + machine_ms_per_mb()) / 2
        own = {"hgetall": len(ids) * self._polls, "info": 4}  # the bench's reads
        delta = command_delta(cmd0, commands(self.r))
        for name, count in own.items():
            delta[name] = delta.get(name, 0) - count
        mem = used_memory(self.r) - mem0
        created = [when(r.created_at) for r in records]
        final = sorted(when(r.updated_at) for r in records)
        latency = [when(r.updated_at) - when(r.created_at) for r in records]
        lo, hi = final[int(0.1 * len(final))], final[int(0.9 * len(final)) - 1]
        counted = int(0.9 * len(final)) - int(0.1 * len(final))
        rate = counted / (hi - lo) if hi > lo else float("nan")
        calls = (self.stub.requests - calls0) / len(ids)
        # how busy the LLM slots were while the model was being called at all: calls x latency
        # over slots x (first call .. last answer); 1.0 = every slot busy the whole time
        arrived = self.stub.arrivals[arrivals0:]
        window = (max(arrived) + self.stub.delay - min(arrived)) if arrived else 0.0
        utilization = len(arrived) * self.stub.delay / (self.slots * window) if window else None
        statuses: dict[str, int] = {}
        for record in records:
            statuses[str(record.status)] = statuses.get(str(record.status), 0) + 1
        return {
            "jobs": len(ids), "statuses": statuses, "llm_slots": self.slots,
            "llm_processes": self.processes, "jobs_per_s": round(rate, 2),
            # jobs / (last final status - first job created): fill and drain included, and
            # right where finishes bunch up (the 10-90% rate then overstates: tracking on)
            "jobs_per_s_wall": round(len(ids) / (final[-1] - min(created)), 2),
            "llm_slot_utilization": round(utilization, 3) if utilization else None,
            "wall_s": round(final[-1] - min(created), 1), "llm_calls_per_job": round(calls, 2),
            "p50_s": round(percentile(latency, 50), 2), "p95_s": round(percentile(latency, 95), 2),
            "cpu_ms_per_job": round(sum(cpu.values()) / len(ids) * 1000, 1),
            "machine_ms_per_mb": round(speed, 1),  # before and after the run (bench/redaction.py)
            "cpu_ms_per_job_by_process": {k: round(v / len(ids) * 1000, 1) for k, v in cpu.items()},
            "redis_commands_per_job": round(sum(delta.values()) / len(ids), 1),
            "redis_commands": {k: round(v / len(ids), 2) for k, v in delta.items() if v > 0},
            "redis_bytes_per_job": round(mem / len(ids)),
            "redis_keys_by_prefix": (families := self._key_prefixes()),
            "redis_bytes_per_job_by_lifetime": self.kept_bytes(families, len(ids)),
            "rss_mb": {k: round(sum(rss_mb(p) for p in tree(pid)), 1) for k, pid in pids.items()},
        }  # fmt: skip

    _polls = 0

    def _wait_final(self, store: Any, ids: list[str], final: Any) -> list[Any]:
        deadline = time.monotonic() + 120
        while True:
            self._polls += 1
            records = [store.require(j) for j in ids]
            if all(r.status in final for r in records) or time.monotonic() > deadline:
                return records
            time.sleep(0.5)

    def _key_prefixes(self) -> dict[str, dict[str, int]]:
        """Per key family: how many keys, and their bytes (``MEMORY USAGE``, which counts the
        value, the key and the allocator's overhead for them) summed over the family."""
        families: dict[str, dict[str, int]] = {}
        for key in self.r.scan_iter(count=1000):
            prefix = re.sub(r"[:-][0-9a-f]{8,}.*$|:[^:]*$", "", key)
            family = families.setdefault(prefix, {"keys": 0, "bytes": 0, "ttl_s": -1})
            family["keys"] += 1
            family["bytes"] += int(self.r.memory_usage(key, samples=0) or 0)
            family["ttl_s"] = max(family["ttl_s"], int(self.r.ttl(key)))
        return dict(sorted(families.items(), key=lambda kv: -kv[1]["bytes"])[:12])

    @staticmethod
    def kept_bytes(families: dict[str, dict[str, int]], jobs: int) -> dict[str, int]:
        """Bytes per job by how long they stay: for a month or more (the job record, its
        archive, its history entry, the thread index), and for a day or less (dedupe markers,
        the stages' view, the evidence cache); queues and bindings are not per job."""
        month = day = 0
        for name, family in families.items():
            if not name.startswith("ts:") or family["keys"] < jobs // 2:
                continue  # not one per job (the channel's index, kombu's bindings)
            if family["ttl_s"] >= 7 * 86400:
                month += family["bytes"]
            else:
                day += family["bytes"]
        return {
            "kept_30_days_or_more": round(month / jobs),
            "kept_a_day_or_less": round(day / jobs),
        }

    def stop(self) -> None:
        if self.ingest is not None:
            self.ingest.stop()
        self.stack.stop()
        self.r.close()


def measure(label: str, args: argparse.Namespace, *, slots: int, processes: int, jobs: int,
            bare: bool = False, tracking: bool = False) -> dict[str, Any]:  # fmt: skip
    """One configuration on a fresh stack (and a fresh MLflow server when tracking)."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-chain-")))
        fake = stack.enter_context(FakeSlack(token=BOT_TOKEN))
        stub = FixedLatencyStub(args.llm_delay)
        stack.callback(stub.stop)
        mlflow_url, server = None, None
        if tracking:
            from tests.support.mlflow_server import MlflowServer

            (tmp / "mlflow").mkdir()
            app = None if args.mlflow_app == "mlflow" else args.mlflow_app
            server = MlflowServer(tmp / "mlflow", app_name=app)
            stack.callback(server.stop)
            server.start()
            mlflow_url = server.url
        bench = Bench(tmp, fake, stub, slots=slots, processes=processes, bare=bare,
                      mlflow_url=mlflow_url)  # fmt: skip
        if server is not None and server.proc is not None:
            bench.extra_pids["mlflow"] = server.proc.pid  # its CPU is the job's too
            bench.settle = lambda: bench.wait_mlflow_idle(server)
        stack.callback(bench.stop)
        bench.start()
        t0 = time.monotonic()
        # requests counted from the server's own access log (health probes left out)
        before = sum(server.requests().values()) if server else 0
        result = bench.run(jobs, label.replace(" ", ""), recorded_urls())
        if server is not None:
            result["mlflow_requests_per_job"] = round(
                (sum(server.requests().values()) - before) / jobs, 1
            )
        bound = slots / result["llm_calls_per_job"] if result["llm_calls_per_job"] else None
        result["bound_jobs_per_s"] = round(bound, 2) if bound else None
        result["achieved_over_bound"] = round(result["jobs_per_s"] / bound, 3) if bound else None
        result["achieved_over_bound_wall"] = (
            round(result["jobs_per_s_wall"] / bound, 3) if bound else None
        )
        result.update(label=label, tracking=tracking, bare=bare, run_s=round(time.monotonic() - t0))
        print(json.dumps(result), flush=True)
        return result


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| configuration | jobs | LLM calls/job | jobs/s | jobs/s wall | bound | achieved/bound "
        "| LLM slots busy | p50 s | p95 s "
        "| CPU ms/job | machine ms/MB | Redis cmds/job | Redis B/job | B/job kept 30 d+ | B/job kept <= 1 d "
        "| MLflow req/job |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |",
    ]
    for r in results:
        ratio = r.get("achieved_over_bound")
        kept = r.get("redis_bytes_per_job_by_lifetime") or {}
        lines.append(
            f"| {r['label']} | {r['jobs']} | {r['llm_calls_per_job']} | {r['jobs_per_s']} | "
            f"{r.get('jobs_per_s_wall', '-')} | "
            f"{r.get('bound_jobs_per_s') or '-'} | {ratio if ratio is not None else '-'} | "
            f"{r.get('llm_slot_utilization') or '-'} | "
            f"{r['p50_s']} | {r['p95_s']} | {r['cpu_ms_per_job']} | "
            f"{r.get('machine_ms_per_mb', '-')} | "
            f"{r['redis_commands_per_job']} | {r['redis_bytes_per_job']} | "
            f"{kept.get('kept_30_days_or_more', '-')} | {kept.get('kept_a_day_or_less', '-')} | "
            f"{r.get('mlflow_requests_per_job', '-')} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", nargs="+", default=["4x1", "16x2", "32x2"],
                        help="LLM slots x llm worker processes (threads each: slots/processes)")  # fmt: skip
    parser.add_argument("--llm-delay", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=25.0, help="jobs ~ bound x this")
    parser.add_argument("--tracking", action="store_true")
    parser.add_argument("--mlflow-app", choices=("technoshare", "mlflow"), default="technoshare",
                        help="the server's app: ours (one-request run writes) or MLflow's own")  # fmt: skip
    parser.add_argument("--burst", type=int, default=100, help="0: no burst run")
    parser.add_argument("--skip-bare", action="store_true")
    args = parser.parse_args()
    results = []
    configs = [tuple(int(x) for x in spec.split("x")) for spec in args.llm]
    for tracking in (False, True) if args.tracking else (False,):
        for slots, processes in configs:
            jobs = max(40, int(slots / 2 / args.llm_delay * args.seconds))
            label = f"llm {slots} = {processes}x{slots // processes}" + (
                " tracking" if tracking else ""
            )
            results.append(measure(label, args, slots=slots, processes=processes, jobs=jobs,
                                   tracking=tracking))  # fmt: skip
    if not args.skip_bare:
        results.append(measure("bare chain (stand-ins), llm 16 = 2x8", args, slots=16,
                               processes=2, jobs=200, bare=True))  # fmt: skip
    if args.burst:
        results.append(measure(f"burst {args.burst}, llm 4 = 1x4", args, slots=4, processes=1,
                               jobs=args.burst))  # fmt: skip
    print(table(results))
    write_results(RESULTS, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
