"""``technoshare dev-stack``: the compose stack as local processes, for development without Docker.

redis (redis-server, else an embedded fakeredis with a warning) -> MLflow server (through
scripts/start_mlflow.sh when present, else the local sqlite store) -> io worker (prefork) +
post worker (prefork) + llm worker (threads, LLM_WORKER_CONCURRENCY) + beat -> ingest -> Flower.
Prints the URLs; Ctrl-C (or any child dying) stops everything, by process group.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

from pipeline.constants import QUEUE_IO, QUEUE_LLM, QUEUE_POST
from pipeline.settings import REPO_ROOT, get_settings
from services.processes import (
    LocalRedis,
    ManagedProcess,
    free_port,
    prepare_tracking_store,
    wait_until,
)

START_MLFLOW = REPO_ROOT / "scripts" / "start_mlflow.sh"
# All children get SIGTERM at once and share this much time to exit; what is left is killed.
# One wait per child instead would add up (10 s each) on a loaded machine.
STOP_SECONDS = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ingest-port", type=int, default=3000)
    parser.add_argument("--flower-port", type=int, default=5555)
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--no-mlflow-server", action="store_true", help="record to local sqlite")
    parser.add_argument("--no-flower", action="store_true")
    parser.add_argument(
        "--recorded", action="store_true", help="serve fetches from the recorded web (offline)"
    )


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


class DevStack:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.settings = get_settings()
        self.state = self.settings.state_dir.resolve()
        self.logs = self.state / "dev-stack"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: list[ManagedProcess] = []
        self.redis: LocalRedis | None = None
        self.urls: dict[str, str] = {}
        self.env: dict[str, str] = {}

    def _spawn(
        self, name: str, argv: list[str], env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        proc = ManagedProcess(name, argv, env or self.env, self.logs / f"{name}.log", cwd=REPO_ROOT)
        self.children.append(proc)
        return proc

    def start(self) -> None:
        self.redis = LocalRedis(self.state / "redis", port=self.args.redis_port, durable=True)
        self.env = {**os.environ, "REDIS_URL": self.redis.url, "STATE_DIR": str(self.state)}
        if self.args.recorded:
            self.env["FETCH_RECORDED"] = "true"
        self.urls["redis"] = f"{self.redis.url}  ({self.redis.kind})"
        self._start_mlflow()
        prepare_tracking_store(self.env)
        celery = [sys.executable, "-m", "celery", "-A", "tasks"]
        concurrency = str(self.settings.llm_worker_concurrency)
        self._spawn("worker-io", [*celery, "worker", "-Q", QUEUE_IO, "-P", "prefork", "-c", "2",
                                  "-n", "io@%h", "-l", "INFO"])  # fmt: skip
        # posting has its own worker: a slow site holding both io processes never delays a reply
        self._spawn("worker-post", [*celery, "worker", "-Q", QUEUE_POST, "-P", "prefork",
                                    "-c", "2", "-n", "post@%h", "-l", "INFO"])  # fmt: skip
        self._spawn("worker-llm", [*celery, "worker", "-Q", QUEUE_LLM, "-P", "threads",
                                   "-c", concurrency, "-n", "llm@%h", "-l", "INFO"])  # fmt: skip
        self._spawn("beat", [*celery, "beat", "-s", str(self.logs / "celerybeat-schedule")])
        port = free_port(self.args.ingest_port)
        self._spawn("ingest", [sys.executable, "-m", "services.cli", "ingest", "--port", str(port)])
        self.urls["ingest"] = f"http://127.0.0.1:{port}/slack/events  (health: /healthz, /readyz)"
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), 30, "ingest")
        if not self.args.no_flower:
            self._start_flower(celery)

    def _start_mlflow(self) -> None:
        if self.args.no_mlflow_server or not START_MLFLOW.exists() or not shutil.which("mlflow"):
            self.urls["mlflow"] = (
                f"{self.settings.effective_tracking_uri()}  "
                f"(browse: mlflow ui --backend-store-uri {self.settings.effective_tracking_uri()})"
            )
            return
        port = free_port(self.args.mlflow_port)
        uri = f"http://127.0.0.1:{port}"
        env = {**self.env, "MLFLOW_PORT": str(port), "MLFLOW_HOST": "127.0.0.1"}
        self._spawn("mlflow", ["bash", str(START_MLFLOW)], env)
        wait_until(lambda: _http_ok(uri + "/health"), 90, "the MLflow server", 0.5)
        self.env["MLFLOW_TRACKING_URI"] = uri
        self.urls["mlflow"] = uri

    def _start_flower(self, celery: list[str]) -> None:
        port = free_port(self.args.flower_port)
        auth = self.settings.flower_basic_auth
        credentials = auth.get_secret_value() if auth else f"dev:{secrets.token_urlsafe(9)}"
        env = {**self.env, "FLOWER_BASIC_AUTH": credentials}
        self._spawn("flower", [*celery, "flower", "--address=127.0.0.1", f"--port={port}"], env)
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/healthcheck"), 30, "flower")
        shown = credentials if not auth else "FLOWER_BASIC_AUTH"
        self.urls["flower"] = f"http://127.0.0.1:{port}  (basic auth: {shown})"

    def died(self) -> ManagedProcess | None:
        return next((p for p in self.children if not p.alive()), None)

    def stop(self) -> None:
        for proc in self.children:
            proc.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for proc in reversed(self.children):
            proc.stop(timeout=max(0.0, deadline - time.monotonic()))
        if self.redis is not None:
            self.redis.stop()


def main(args: argparse.Namespace) -> int:
    stack = DevStack(args)
    stopping: dict[str, Any] = {}
    signal.signal(signal.SIGTERM, lambda *_: stopping.setdefault("signal", "SIGTERM"))
    try:
        stack.start()
        print("technoshare dev-stack is up:")
        for name, url in stack.urls.items():
            print(f"  {name:8} {url}")
        print(f"  logs     {stack.logs}/*.log\nCtrl-C stops everything.", flush=True)
        while not stopping:
            dead = stack.died()
            if dead is not None:
                print(
                    f"{dead.name} exited ({dead.proc.returncode}); see {dead.log_path}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    except (TimeoutError, RuntimeError) as exc:
        print(f"error: {exc} (logs in {stack.logs})", file=sys.stderr)
        return 1
    finally:
        print("stopping...", file=sys.stderr)
        stack.stop()
