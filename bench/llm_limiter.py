"""The shared LLM rate limiter under load (not a test): worker processes hammer one model
through ``services.llm_limits.worker_llm_factory`` (LLMClient with the Redis limiter) and a
stub model; the requests the stub receives must stay within the limit in every window.

A real redis-server is started on a free port (``services.processes.LocalRedis``) and stopped
by PID; each worker process runs ``--threads`` threads that call the stub model (a litellm
custom provider answering after ``--latency`` seconds) as fast as the limiter lets them. A call
refused with ``LLMRateLimitedError`` sleeps its ``retry_after`` (what a Celery task's retry
countdown does) and goes on. Every request the stub receives is timestamped; the bench reports
the most requests in any window of the limiter's length, and per 10 s.

    python bench/llm_limiter.py [--workers 3] [--threads 4] [--rpm 120] [--duration 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "llm_limiter.json"
MODEL = "benchstub/model"
PROMPT_TOKENS, COMPLETION_TOKENS = 500, 100

from pipeline.offline import apply_offline_defaults  # noqa: E402

apply_offline_defaults()


# --- a worker process ----------------------------------------------------------------------
def _stub_provider(received: list[float], latency: float) -> Any:
    from litellm import CustomLLM
    from litellm.types.utils import ModelResponse, Usage

    class Stub(CustomLLM):
        def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
            received.append(time.time())  # the provider receives the request now
            time.sleep(latency)
            response: ModelResponse = kwargs["model_response"]
            response.choices[0].message.content = '{"verdict": "ok"}'  # type: ignore[union-attr]
            response.model = MODEL
            response.usage = Usage(  # type: ignore[attr-defined]
                prompt_tokens=PROMPT_TOKENS,
                completion_tokens=COMPLETION_TOKENS,
                total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS,
            )
            return response

    return Stub()


def worker(args: argparse.Namespace) -> int:
    from pydantic import BaseModel

    from pipeline.errors import LLMRateLimitedError
    from pipeline.llm_litellm import lib
    from pipeline.settings import Settings
    from services.llm_limits import worker_llm_factory

    class Verdict(BaseModel):
        verdict: str

    litellm = lib()
    received: list[float] = []
    litellm.custom_provider_map = [
        *litellm.custom_provider_map,
        {"provider": "benchstub", "custom_handler": _stub_provider(received, args.latency)},
    ]
    settings = Settings(
        llm_model=MODEL,
        llm_max_retries=0,
        redis_url=args.redis,
        llm_rate_limits=f"{MODEL}={args.rpm}rpm",
        llm_rate_limit_max_wait_seconds=args.max_wait,
        mlflow_enable_tracking=False,
    )
    client = worker_llm_factory(settings)
    unlimited = worker_llm_factory(settings.model_copy(update={"llm_rate_limits": ""}))
    unlimited.complete_model("stage_a", [{"role": "user", "content": "warm"}], Verdict)  # Router
    received.clear()
    out = Path(args.out)
    out.with_suffix(".ready").write_text("ready")
    start_file = Path(args.start_file)
    while not start_file.exists():
        time.sleep(0.01)
    start = float(start_file.read_text())
    time.sleep(max(0.0, start - time.time()))
    deadline = start + args.duration
    limited: list[float] = []
    done: list[int] = []

    def hammer(n: int) -> None:
        i = 0
        while time.time() < deadline:
            i += 1
            messages = [{"role": "user", "content": f"call {os.getpid()} {n} {i}"}]
            try:
                client.complete_model("stage_a", messages, Verdict)
                done.append(1)
            except LLMRateLimitedError as exc:
                limited.append(exc.retry_after or 0.0)
                time.sleep(min(exc.retry_after or 1.0, max(0.0, deadline - time.time())))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.write_text(json.dumps({"received": received, "limited": limited, "done": len(done)}))
    return 0


# --- the parent ------------------------------------------------------------------------------
def max_in_window(times: list[float], window: float) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4, help="per worker process")
    parser.add_argument("--rpm", type=int, default=120)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--latency", type=float, default=0.05, help="stub model, seconds")
    parser.add_argument("--max-wait", type=float, default=10.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--start-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    from pipeline.llm_limits import WINDOW_SECONDS
    from services.processes import LocalRedis, ManagedProcess, wait_until

    with tempfile.TemporaryDirectory(prefix="llm-limiter-") as tmp:
        root = Path(tmp)
        redis = LocalRedis(root / "redis", quiet=True)
        procs: list[ManagedProcess] = []
        try:
            start_file = root / "start"
            outs = [root / f"worker-{i}.json" for i in range(args.workers)]
            for out in outs:
                argv_ = [sys.executable, __file__, "--worker", "--redis", redis.url,
                         "--out", str(out), "--start-file", str(start_file),
                         "--threads", str(args.threads), "--rpm", str(args.rpm),
                         "--duration", str(args.duration), "--latency", str(args.latency),
                         "--max-wait", str(args.max_wait)]  # fmt: skip
                procs.append(ManagedProcess(out.stem, argv_, os.environ, out.with_suffix(".log")))
            wait_until(lambda: all(o.with_suffix(".ready").exists() for o in outs), 180, "workers")
            start = time.time() + 1.0
            start_file.write_text(repr(start))
            wait_until(lambda: all(o.exists() for o in outs), args.duration + 120, "results")
            parts = [json.loads(o.read_text()) for o in outs]
        finally:
            for proc in procs:
                proc.stop()
            redis.stop()
    received = sorted(t for p in parts for t in p["received"])
    limited = [w for p in parts for w in p["limited"]]
    buckets = [0] * int(args.duration // 10 + 1)
    for t in received:
        buckets[min(len(buckets) - 1, int((t - start) // 10))] += 1
    worst = max_in_window(received, WINDOW_SECONDS)
    result = {
        "workers": args.workers,
        "threads_per_worker": args.threads,
        "limit_rpm": args.rpm,
        "window_seconds": WINDOW_SECONDS,
        "duration_seconds": args.duration,
        "stub_latency_seconds": args.latency,
        "requests": len(received),
        "max_requests_in_any_window": worst,
        "per_10s": buckets,
        "refused_with_LLMRateLimitedError": len(limited),
        "observed_rpm": round(len(received) / args.duration * 60, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| workers x threads | limit | run | requests | most in any 60 s | per 10 s | refused |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {args.workers} x {args.threads} | {args.rpm} rpm | {args.duration:g} s "
        f"| {len(received)} | {worst} | {' '.join(map(str, buckets))} | {len(limited)} |"
    )
    ok = worst <= args.rpm
    print(f"\nmost requests in any {WINDOW_SECONDS:g} s window: {worst} (cap {args.rpm}): "
          f"{'within the cap' if ok else 'OVER THE CAP'}; written to {RESULTS.relative_to(REPO)}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
