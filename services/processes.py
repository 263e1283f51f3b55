"""Local child processes and a local Redis, for ``technoshare dev-stack`` and ``technoshare demo``
(the tests use them too).

Every child runs in its own process group (stopping it stops its pool children too) and gets
SIGTERM when its parent dies (Linux PR_SET_PDEATHSIG), so nothing outlives the command.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("technoshare.processes")


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")


def die_with_parent() -> None:
    """``preexec_fn``: SIGTERM this child when the parent dies (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class ManagedProcess:
    """A child in its own process group; output to ``log_path`` (or inherited when None)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] | None = log_path.open("wb") if log_path else None
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log else None,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - sets the death signal only
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def terminate(self) -> None:
        """Ask the leader to stop (SIGTERM) without waiting: stop several children in parallel."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the leader (a celery worker then stops its pool), SIGKILL to the group."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(5)
        if self._log:
            self._log.close()


class LocalRedis:
    """redis-server when installed, else fakeredis' TCP server in a thread (with a warning)."""

    def __init__(
        self, data_dir: Path, *, port: int | None = None, durable: bool = False, quiet: bool = False
    ) -> None:
        self.port = free_port(port)
        self.embedded = shutil.which("redis-server") is None
        self._process: ManagedProcess | None = None
        self._server: Any = None
        data_dir.mkdir(parents=True, exist_ok=True)
        if self.embedded:
            self._start_fakeredis(quiet)
        else:
            argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                    "--dir", str(data_dir.resolve()), "--save", "",
                    "--appendonly", "yes" if durable else "no"]  # fmt: skip
            self._process = ManagedProcess("redis", argv, os.environ, data_dir / "redis.log")
        wait_until(self._ping, 10, "redis")

    def _start_fakeredis(self, quiet: bool) -> None:
        try:
            from fakeredis import TcpFakeServer
        except ImportError as exc:
            raise RuntimeError(
                "neither redis-server nor fakeredis is installed: "
                "apt-get install redis-server (or pip install 'fakeredis[lua]')"
            ) from exc
        if not quiet:
            log.warning("redis-server not found: using an embedded fakeredis server (dev only)")
        self._server = TcpFakeServer(("127.0.0.1", self.port), server_type="redis")
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fakeredis").start()

    def _ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def kind(self) -> str:
        return "fakeredis (embedded)" if self.embedded else "redis-server"

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def prepare_tracking_store(env: Mapping[str, str]) -> None:
    """Create the local sqlite MLflow store once, before several workers start.

    A belt to ``observability.mlflow_store.store_init_lock`` (the braces: workers opening the store
    take a file lock next to the database, so workers starting together no longer race on
    table creation): here the store is created once by a one-off process, and the workers
    then only open it. A server-backed tracking URI needs nothing here.
    """
    uri = env.get("MLFLOW_TRACKING_URI") or ""
    if uri and not uri.startswith("sqlite:"):
        return
    if (env.get("MLFLOW_ENABLE_TRACKING") or "true").lower() in ("0", "false", "no"):
        return
    code = (
        "from observability.mlflow_store import MlflowStore\n"
        "from pipeline.settings import get_settings\n"
        "MlflowStore(get_settings()).probe()"
    )
    subprocess.run([sys.executable, "-c", code], env=dict(env), check=False, timeout=180,
                   stdout=subprocess.DEVNULL)  # fmt: skip
