"""Per-process state of the MLflow recorder: the store, its health, the ledger, the outbox, the
background writer and the outbox drainer.

One ``Runtime`` per process (``observability.backend`` builds a new one after a fork: a prefork
child must not reuse the parent's HTTP connections, tracer provider or threads).

``local=True`` is for drivers that run every stage in one process (``technoshare run``,
demo): the ledger lives in memory and the outbox in a file under STATE_DIR, so nothing depends
on a Redis that may be temporary or absent. Workers use Redis for both, so stages on different
machines share one ledger and any process can drain the outbox.

The drainer: while anything is in the outbox, each process that records checks every
``MLFLOW_OUTBOX_DRAIN_SECONDS`` whether MLflow is healthy and, if so, writes it all; MLflow
coming back wakes it at once. An idle worker therefore notices a recovery by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from observability import mlflow_writes
from observability.health import MlflowHealth
from observability.ledger import Ledger, MemoryLedger, RedisLedger
from observability.mlflow_store import MlflowStore
from observability.outbox import FileOutbox, Outbox, RedisOutbox, replay
from observability.records import AnyRecordType
from observability.writer import BackgroundWriter
from pipeline.constants import MLFLOW_OUTBOX_DRAIN_SECONDS, MLFLOW_OUTBOX_FILE
from pipeline.settings import Settings

log = logging.getLogger("observability")


def redis_client(settings: Settings) -> Any:
    import redis as redis_lib

    return redis_lib.Redis.from_url(
        settings.redis_url, decode_responses=True, socket_timeout=0.5, socket_connect_timeout=0.5
    )


class Runtime:
    def __init__(self, settings: Settings, *, local: bool = False) -> None:
        self.settings = settings
        self.local = local
        self.pid = os.getpid()
        self.store = MlflowStore(settings)
        self.health = MlflowHealth(self.store.probe, self._on_health_change)
        self.ledger: Ledger
        self.outbox: Outbox
        if local:
            self.ledger = MemoryLedger()
            self.outbox = FileOutbox(settings.state_dir / MLFLOW_OUTBOX_FILE)
        else:
            redis = redis_client(settings)
            self.ledger, self.outbox = RedisLedger(redis), RedisOutbox(redis)
        self.writer = BackgroundWriter(
            self.write,
            self.outbox,
            self.health,
            is_permanent=mlflow_writes.is_permanent,
            on_written=self._after_write,
        )
        self.overhead_seconds = 0.0  # time spent on the caller's thread, all jobs of the process
        self._wake = threading.Event()
        self._drainer: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        # set by the recorder: the record as MLflow may see it (secrets redacted)
        self.redact: Callable[[AnyRecordType], AnyRecordType] = lambda record: record

    # --- writing -----------------------------------------------------------------------------
    def write(self, record: AnyRecordType) -> str:
        return mlflow_writes.apply(self.store, self.ledger, self.redact(record), replay=False)

    def replay_outbox(self, max_records: int = 1000) -> dict[str, Any]:
        """Write what the outbox keeps, if MLflow answers now (probed, not cached)."""
        if not self.health.check_now():
            return {"replayed": 0, "dropped": 0, "pending": self._pending(), "skipped": "mlflow"}
        return replay(
            self.outbox,
            lambda r: mlflow_writes.apply(self.store, self.ledger, self.redact(r), replay=True),
            is_permanent=mlflow_writes.is_permanent,
            on_down=self.health.mark_down,
            max_records=max_records,
        )

    def _pending(self) -> int:
        try:
            return self.outbox.pending()
        except Exception:
            return -1

    def tracing_ready(self) -> bool:
        """Record spans for this job step? Only with a known experiment and a live server."""
        return self.store.tracing and self.health.available() and self.store.experiment_ready

    # --- the drainer ---------------------------------------------------------------------------
    def start(self) -> None:
        self.writer.start()
        with self._lock:
            if self._drainer is None and not self._closed:
                self._drainer = threading.Thread(
                    target=self._drain_loop, name="mlflow-outbox-drainer", daemon=True
                )
                self._drainer.start()

    def _after_write(self) -> None:
        if self._drainer is None:
            self.start()

    def _drain_loop(self) -> None:
        while not self._closed:
            self._wake.wait(MLFLOW_OUTBOX_DRAIN_SECONDS)
            self._wake.clear()
            if self._closed:
                return
            try:
                if self._pending() > 0 and self.health.available():
                    self.replay_outbox()
            except Exception:
                log.exception("draining the MLflow outbox failed (retried later)")

    def _on_health_change(self, up: bool) -> None:
        if up:
            self._wake.set()  # MLflow is back: write what waited in the outbox
        if not self.store.tracing or "mlflow" not in sys.modules:
            return
        import mlflow

        if up:
            mlflow.tracing.enable()
            self.store.point_tracing_at()
        else:
            mlflow.tracing.disable()  # spans cost ~0 ms while the server is away

    def shutdown(self, timeout: float = 5.0) -> None:
        """Write what is queued (the rest goes to the outbox), then stop the drainer."""
        self.writer.close(timeout)
        self._closed = True
        self._wake.set()
        with contextlib.suppress(Exception):
            if self._drainer is not None:
                self._drainer.join(timeout=1.0)
