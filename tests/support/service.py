"""Process fixtures for the service tests: a real redis-server, real `celery worker` processes,
the ingest HTTP server, signed Slack requests.

Every process: free port (bind 0), bounded poll-until-ready, its own process group (so a
teardown stops its children too), PR_SET_PDEATHSIG so it dies with the test process, stopped
by PID in teardown. Logs go to files under the test's tmp dir (a pipe left open by a worker
that outlived pytest would hang `cmd | tail`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from services.processes import (
    LocalRedis,
    ManagedProcess,
    free_port,
    prepare_tracking_store,
    wait_until,
)
from tests.support.fake_slack import FakeSlack

REPO = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"
CHANNEL = "C0SHARE"


class Process(ManagedProcess):
    """A child of the test: output in ``<log_dir>/<name>.log``, repo root as cwd."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        super().__init__(name, argv, env, log_dir / f"{name}.log", cwd=REPO)


class RedisServer(LocalRedis):
    """A real redis-server (the tests want the real thing, not the fakeredis fallback).
    ``durable``: AOF on, so a restart (``restart``) keeps the queues and the job store."""

    def __init__(self, log_dir: Path, *, durable: bool = False) -> None:
        assert shutil.which("redis-server"), (
            "redis-server is required (apt-get install redis-server)"
        )
        self.log_dir, self.restarts = log_dir, 0
        super().__init__(log_dir, durable=durable)

    def restart(self, down_seconds: float) -> None:
        """Shut redis-server down (SIGTERM: it writes its AOF and exits), stay down
        ``down_seconds``, start it again on the same port with the same data directory."""
        assert self._process is not None
        argv = [str(a) for a in self._process.proc.args]  # same port, dir and AOF setting
        self._process.stop()
        time.sleep(down_seconds)
        self.restarts += 1
        log = self.log_dir / f"redis-{self.restarts}.log"
        self._process = ManagedProcess("redis", argv, os.environ, log)
        wait_until(self._ping, 10, "redis after its restart")


def subprocess_env(*drop_prefixes: str) -> dict[str, str]:
    """The hermetic environment of this test process (tests/conftest.py), minus what a library
    set in it since: mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI, and the MLflow
    client variables are exported too, so a server of an earlier test would reach the next
    test's processes. Only the offline switches of pipeline/offline.py are kept of those."""
    from pipeline.offline import OFFLINE_ENV

    drop = ("MLFLOW_", *drop_prefixes)
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update({k: v for k, v in OFFLINE_ENV.items() if k.startswith("MLFLOW_")})
    return env


def service_env(
    redis_url: str, slack_api_url: str, state_dir: Path, **extra: str
) -> dict[str, str]:
    """Environment of every service process of a test: real Redis, fake Slack, tmp state."""
    env = subprocess_env("SLACK_")
    env.update(
        APP_ENV="test",
        REDIS_URL=redis_url,
        SLACK_SINK="slack",
        SLACK_API_URL=slack_api_url,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_CHANNELS=CHANNEL,
        SLACK_BOT_USER_ID="UBOT",
        STATE_DIR=str(state_dir),
        PYTHONUNBUFFERED="1",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_OFFLINE_MODE="true",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    env.update(extra)
    return env


class Worker(Process):
    """`celery -A tasks worker` (through tests/support/worker_main.py, which can install the
    test stand-ins before the pool forks)."""

    def __init__(
        self, name: str, queue: str, pool: str, concurrency: int, env: Mapping[str, str],
        log_dir: Path,
    ) -> None:  # fmt: skip
        argv = [
            sys.executable, "-m", "tests.support.worker_main", "-A", "tasks", "worker",
            "-Q", queue, "-P", pool, "-c", str(concurrency), "-n", f"{name}@%h",
            "--without-gossip", "--without-mingle", "-l", "INFO",
        ]  # fmt: skip
        super().__init__(name, argv, env, log_dir)

    def wait_ready(self, timeout: float = 60) -> Worker:
        wait_until(lambda: "ready." in self.log() or not self.alive(), timeout, self.name, 0.1)
        if not self.alive():
            raise RuntimeError(f"worker {self.name} exited:\n{self.log()[-3000:]}")
        return self

    def children(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in out.stdout.split()]


class Ingest(Process):
    def __init__(self, env: Mapping[str, str], log_dir: Path, *, workers: int = 1) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "services.cli", "ingest", "--port", str(self.port)]
        argv += ["--workers", str(workers)] if workers > 1 else []
        super().__init__(f"ingest-{self.port}", argv, env, log_dir)
        wait_until(self._healthy, 30, "ingest /healthz", 0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"ingest exited:\n{self.log()[-3000:]}")
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


# --- Slack requests ------------------------------------------------------------------------
def sign(body: bytes, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(body: bytes, *, timestamp: int | None = None, secret: str = SIGNING_SECRET):
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sign(body, ts, secret),
        "Content-Type": "application/json",
    }


def message_event(
    text: str,
    *,
    event_id: str,
    ts: str,
    channel: str = CHANNEL,
    user: str = "UALICE",
    **fields: Any,
) -> dict[str, Any]:
    event = {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts}
    event.update(fields)
    return {
        "type": "event_callback",
        "team_id": "T1",
        "api_app_id": "A1",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": event,
    }


def post_event(base_url: str, payload: dict[str, Any], **headers: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    return httpx.post(
        base_url + "/slack/events", content=body, headers={**signed_headers(body), **headers}
    )


# --- fixtures: import the *_fixture functions into a test module; use the short names ------------------------------------
@pytest.fixture(scope="module", name="redis_server")
def redis_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(name="redis_client")
def redis_client_fixture(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A clean database for each test."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="module", name="fake_slack")
def fake_slack_fixture() -> Iterator[FakeSlack]:
    with FakeSlack(token=BOT_TOKEN) as fake:
        yield fake


# --- a worker stack for task tests --------------------------------------------------------
# role -> (queue, pool, concurrency): as compose.yaml and dev-stack run them (smaller)
WORKER_ROLES: dict[str, tuple[str, str, int]] = {
    "io": ("io", "prefork", 2),
    "llm": ("llm", "threads", 2),
    "post": ("post", "prefork", 1),
}
ROLES = ("io", "llm", "post")


class Stack:
    """redis-server + fake Slack + workers: io (prefork, fetching), llm (threads) and post
    (prefork: posting, the failure note, the starts), each consuming its own queue only."""

    def __init__(self, tmp: Path, fake: FakeSlack, *, durable_redis: bool = False,
                 **env_extra: str) -> None:  # fmt: skip
        from pipeline.settings import Settings
        from services.job_store import JobStore
        from tasks.app import create_app

        self.tmp, self.fake = tmp, fake
        if env_extra.get("TS_TEST_STANDINS") == "1":  # the MLflow backend is stood in for too
            env_extra.setdefault("MLFLOW_ENABLE_TRACKING", "false")
        self.redis = RedisServer(tmp, durable=durable_redis)
        (tmp / "state").mkdir(exist_ok=True)
        self.env = service_env(self.redis.url, fake.api_url, tmp / "state", **env_extra)
        self.workers: list[Worker] = []
        self.store = JobStore.from_url(self.redis.url)
        self.celery = create_app(Settings(redis_url=self.redis.url))

    def start_workers(
        self, llm_pool: str = "threads", llm_concurrency: int = 2, roles: tuple[str, ...] = ROLES
    ) -> Stack:
        """The workers of ``roles`` (in ``ROLES`` order: ``workers[1]`` is the llm worker)."""
        prepare_tracking_store(self.env)
        started = [self.start_worker(role, llm_pool, llm_concurrency, wait=False) for role in roles]
        for worker in started:
            worker.wait_ready()
        return self

    def start_worker(
        self, role: str, llm_pool: str = "threads", llm_concurrency: int = 2, *, wait: bool = True
    ) -> Worker:
        queue, pool, concurrency = WORKER_ROLES[role]
        if role == "llm":
            pool, concurrency = llm_pool, llm_concurrency
        worker = Worker(role, queue, pool, concurrency, self.env, self.tmp)
        self.workers.append(worker)
        return worker.wait_ready() if wait else worker

    def wait_idle(self, timeout: float = 60) -> None:
        """Every queue empty and nothing delivered but unacknowledged (kombu's ``unacked``
        hash): each task sent has run to its end."""
        from pipeline.constants import QUEUES
        from tasks.app import queue_keys  # one list per priority step

        r = self.store.r
        keys = [key for q in QUEUES for key in queue_keys(q)]

        def idle() -> bool:
            return not any(r.llen(k) for k in keys) and not r.hlen("unacked")

        wait_until(idle, timeout, "the workers to go idle", 0.1)

    def submit(self, url: str, *, ts: str, channel: str = CHANNEL, thread_ts: str | None = None):
        from pipeline.models import Job

        job = Job(
            job_id=Job.make_id(channel, ts, url), channel_id=channel, message_ts=ts,
            thread_ts=thread_ts, url=url, canonical_url=url, message_text=f"<{url}>",
        )  # fmt: skip
        assert self.store.create(job)
        self.celery.send_task("technoshare.start_job", args=[job.job_id], ignore_result=True)
        return job.job_id

    def wait_final(self, job_ids: list[str], timeout: float = 60) -> dict[str, Any]:
        from services.job_store import FINAL_STATUSES

        def done() -> dict[str, Any] | None:
            records = {j: self.store.require(j, with_seen=True) for j in job_ids}
            return records if all(r.status in FINAL_STATUSES for r in records.values()) else None

        try:
            return wait_until(done, timeout, f"jobs {job_ids} to finish", 0.1)
        except TimeoutError:
            raise AssertionError(self.diagnostics(job_ids)) from None

    def diagnostics(self, job_ids: list[str]) -> str:
        out = [f"{j}: {self.store.get(j, with_seen=True)}" for j in job_ids]
        out += [f"--- {w.name}\n{w.log()[-4000:]}" for w in self.workers]
        return "\n".join(out)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.celery.close()
        self.redis.stop()


@contextmanager
def running_stack(tmp: Path, fake: FakeSlack, **env_extra: str) -> Iterator[Stack]:
    """A ``Stack`` with its workers and the ingest HTTP server started, stopped at the end."""
    stack = Stack(tmp, fake, **env_extra)
    try:
        stack.start_workers()
        stack.ingest = Ingest(stack.env, tmp)
        stack.workers.append(stack.ingest)  # stopped with the rest
        yield stack
    finally:
        stack.stop()
