"""The background writer: one daemon thread per process writing records to MLflow in order.

A stage task returns, and the next task of the chain is published, without waiting for
MLflow: the hooks hand records to this thread. What it cannot write goes to the outbox:
MLflow known down, a failed write, a full queue, or a record whose parent run has not
appeared within ``PARENT_WAIT_SECONDS`` (it waits "parked" until then, because the parent is
usually being created at that moment by the begin of the same job, here or in another
process). ``write_now`` writes one record at once on a helper thread, for ``begin_job``, which
waits a bounded time for the parent run id.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from observability.health import MlflowHealth
from observability.outbox import Outbox, ParentPending, TraceNotWritten
from observability.records import AnyRecordType

log = logging.getLogger("observability")

QUEUE_MAX = 2000  # records waiting for the writer thread; beyond that they go to the outbox
PARENT_WAIT_SECONDS = 30.0  # a record waits this long for its parent run before the outbox
PARKED_RETRY_SECONDS = 0.25

Write = Callable[[AnyRecordType], str]


class BackgroundWriter:
    def __init__(
        self,
        write: Write,
        outbox: Outbox,
        health: MlflowHealth,
        *,
        is_permanent: Callable[[BaseException], bool],
        on_written: Callable[[], None] | None = None,
        parent_wait: float = PARENT_WAIT_SECONDS,
    ) -> None:
        self.parent_wait = parent_wait
        self._write_record = write
        self.outbox = outbox
        self.health = health
        self._is_permanent = is_permanent
        self._on_written = on_written
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_MAX)
        self._parked: list[tuple[float, AnyRecordType, Future | None]] = []
        self._parked_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._now_lock = threading.Lock()
        self._now_started: dict[int, float] = {}  # write_now calls in flight -> start time
        self._now_count = 0
        self.written = 0
        self.outboxed = 0

    def submit(self, record: AnyRecordType, future: Future | None = None) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait((record, future))
        except queue.Full:
            self._to_outbox(record, future)

    def write_now(self, record: AnyRecordType, wait: float) -> str:
        """Write ``record`` at once on a helper thread (not behind the queue) and wait up to
        ``wait`` seconds for its run id; "" when it did not come in time (the write goes on in
        the background) or failed (the record went to the outbox). While an earlier
        ``write_now`` has been in flight longer than ``wait``, MLflow is slow: no wait then."""
        now = time.monotonic()
        with self._now_lock:
            slow = any(now - t >= wait for t in self._now_started.values())
            if not slow:
                self._now_count += 1
                token = self._now_count
                self._now_started[token] = now
        if slow:
            self.submit(record)
            return ""
        future: Future[str] = Future()

        def write() -> None:
            try:
                self._write(record, future, parked_since=None)
            except Exception:
                log.exception(
                    "writing a %s record of job %s failed", record.kind, record.job.job_id
                )
            finally:
                with self._now_lock:
                    self._now_started.pop(token, None)
                if not future.done():
                    future.set_result("")

        threading.Thread(target=write, name="mlflow-write-now", daemon=True).start()
        try:
            return future.result(wait) or ""
        except FutureTimeout:
            return ""

    def start(self) -> None:
        self._ensure_thread()

    def idle(self) -> bool:
        """Nothing queued, parked or being written."""
        with self._parked_lock:
            parked = bool(self._parked)
        return self._queue.unfinished_tasks == 0 and not self._now_started and not parked

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._loop, name="mlflow-writer", daemon=True
                    )
                    self._thread.start()
                    atexit.register(self.close)

    def _loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=PARKED_RETRY_SECONDS)
            except queue.Empty:
                self._retry_parked()
                continue
            try:
                if item is None:
                    return
                self._write(*item, parked_since=None)
            finally:
                self._queue.task_done()
            self._retry_parked()

    def _park(self, since: float, record: Any, future: Future | None) -> None:
        with self._parked_lock:
            self._parked.append((since, record, future))

    def _is_parked(self, run_key: str) -> bool:
        with self._parked_lock:
            return any(r.run_key == run_key for _, r, _ in self._parked)

    def _take_parked(self) -> list[tuple[float, AnyRecordType, Future | None]]:
        with self._parked_lock:
            parked, self._parked = self._parked, []
        return parked

    def _retry_parked(self) -> None:
        parked = self._take_parked()
        for since, record, future in parked:  # in order: a job's end after its stages
            self._write(record, future, parked_since=since)

    def _write(self, record: Any, future: Future | None, *, parked_since: float | None) -> None:
        if not self.health.available():
            self._to_outbox(record, future)
            return
        if parked_since is None and self._is_parked(record.run_key):
            self._park(time.monotonic(), record, future)  # behind its job's parked records
            return
        try:
            result = self._write_record(record)
        except ParentPending:
            since = parked_since if parked_since is not None else time.monotonic()
            if time.monotonic() - since < self.parent_wait:
                self._park(since, record, future)
            else:
                self._to_outbox(record, future)
            return
        except TraceNotWritten:
            self._to_outbox(record, future)  # the drainer writes it again in a few seconds
            return
        except Exception as exc:
            if self._is_permanent(exc):
                log.error(
                    "MLflow rejected a %s record of job %s: %s", record.kind, record.job.job_id, exc
                )
                if future is not None and not future.done():
                    future.set_result("")
                return
            self.health.mark_down(f"{type(exc).__name__}: {exc}"[:300])
            self._to_outbox(record, future)
            return
        self.written += 1
        if future is not None and not future.done():
            future.set_result(result)
        if self._on_written is not None:
            self._on_written()

    def _to_outbox(self, record: Any, future: Future | None) -> None:
        if self.outbox.push(record):
            self.outboxed += 1
        if future is not None and not future.done():
            future.set_result("")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted record is written or outboxed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while not self.idle() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.idle()

    def close(self, timeout: float = 5.0) -> None:
        """Drain for up to ``timeout``; what is still queued or parked then goes to the outbox."""
        if self._thread is None and not self._now_started:
            return
        self.flush(timeout)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._to_outbox(*item)
            self._queue.task_done()
        for _, record, future in self._take_parked():
            self._to_outbox(record, future)
