"""Writing records to MLflow: the parent run, one nested run per stage, the parent's totals.

Runs are created with ``MlflowClient.create_run`` (nested ones with tag ``mlflow.parentRunId``)
by the process that made the record; the parent is never reopened with ``start_run``. Each
stage's metrics, params and tags go in ONE ``log_batch``.

Live writes happen on a background thread per process (``BackgroundWriter``), so a stage task
returns, and the next task of the chain is published, without waiting for MLflow. A record
that cannot be written (MLflow down or hanging, or its parent not created yet) goes to the
Redis outbox and is written by ``replay_outbox``; replay reuses these functions with
``replay=True``, which looks runs up by their keys first, so a record is never written twice.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from observability import ledger, outbox
from observability.records import (
    RECORD_ID_TAG,
    RUN_KEY_TAG,
    RUN_KIND_TAG,
    BeginRecord,
    EndRecord,
    StageRecord,
)
from observability.runtime import Runtime

log = logging.getLogger("observability")

QUEUE_MAX = 2000  # records waiting for the writer thread; beyond that they go to the outbox


class ParentPending(Exception):
    """The parent run of this record does not exist yet (created late or during an outage)."""


def is_permanent(exc: BaseException) -> bool:
    """A 4xx from MLflow (bad value, deleted run): retrying the record cannot help."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return 400 <= status < 500 and status != 429
    return False


def parent_tags(job: Any, run_key: str, reprocess_of: str | None) -> dict[str, str]:
    from observability.derive import domain_of

    tags = {
        "mlflow.runName": f"job-{job.job_id}",
        RUN_KIND_TAG: "job",
        RUN_KEY_TAG: run_key,
        "job_id": job.job_id,
        "channel_id": job.channel_id,
        "message_ts": job.message_ts,
        "target_url": job.url,
        "canonical_url": job.canonical_url,
        "domain": domain_of(job.url),
    }
    if job.user_id:
        tags["slack_user"] = job.user_id
    if reprocess_of:
        tags["reprocess_of"] = reprocess_of
    return tags


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _find_run(rt: Runtime, filter_string: str) -> Any:
    runs = rt.client().search_runs([rt.experiment_id()], filter_string, max_results=1)
    return runs[0] if runs else None


def _create_parent(rt: Runtime, record: BeginRecord | StageRecord | EndRecord) -> str:
    started = getattr(record, "started_at", time.time())
    tags = record.tags if isinstance(record, BeginRecord) else {}
    tags = tags or parent_tags(record.job, record.run_key, None)
    run = rt.client().create_run(rt.experiment_id(), start_time=_ms(started), tags=tags)
    return str(run.info.run_id)


def resolve_parent(rt: Runtime, record: StageRecord | EndRecord, *, replay: bool) -> str:
    if record.parent_run_id:
        return record.parent_run_id
    try:
        if found := ledger.get_parent(rt.redis(), record.run_key):
            return found
    except Exception:  # Redis away: MLflow itself still knows the parent by its key
        log.debug("ledger unavailable while resolving a parent run", exc_info=True)
    run = _find_run(rt, f"tags.{RUN_KEY_TAG} = '{record.run_key}' and tags.{RUN_KIND_TAG} = 'job'")
    if run is None and not replay:
        raise ParentPending(record.run_key)
    parent = str(run.info.run_id) if run is not None else _create_parent(rt, record)
    try:
        ledger.set_parent(rt.redis(), record.run_key, parent)
    except Exception:
        log.debug("could not store the parent run id in the ledger", exc_info=True)
    return parent


def apply_begin(rt: Runtime, record: BeginRecord, *, replay: bool) -> str:
    parent = ""
    try:  # created already: a replay of this attempt's records found no parent and made it
        parent = ledger.get_parent(rt.redis(), record.run_key)
    except Exception:
        log.debug("ledger unavailable while creating a parent run", exc_info=True)
    if parent:
        return parent
    if replay:
        run = _find_run(
            rt, f"tags.{RUN_KEY_TAG} = '{record.run_key}' and tags.{RUN_KIND_TAG} = 'job'"
        )
        parent = str(run.info.run_id) if run is not None else ""
    parent = parent or _create_parent(rt, record)
    try:
        ledger.set_parent(rt.redis(), record.run_key, parent)
    except Exception:
        log.warning("could not store parent run %s in the Redis ledger", parent, exc_info=True)
    return parent


def apply_stage(rt: Runtime, record: StageRecord, *, replay: bool) -> str:
    from mlflow.entities import Metric, Param

    client = rt.client()
    parent = resolve_parent(rt, record, replay=replay)
    run_id = ""
    if replay:
        run = _find_run(rt, f"tags.{RECORD_ID_TAG} = '{record.record_id}'")
        if run is not None and run.info.status in ("FINISHED", "FAILED"):
            return str(run.info.run_id)  # written before the outbox entry was removed
        run_id = str(run.info.run_id) if run is not None else ""
    if not run_id:
        tags = {
            **record.tags,
            "mlflow.parentRunId": parent,
            "mlflow.runName": record.stage,
            RUN_KIND_TAG: "stage",
            RECORD_ID_TAG: record.record_id,
            "job_id": record.job.job_id,
            "stage": record.stage,
        }
        run_id = str(
            client.create_run(rt.experiment_id(), _ms(record.started_at), tags).info.run_id
        )
    stamp = _ms(record.ended_at)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, stamp, 0) for k, v in record.metrics.items()],
        params=[Param(k, v) for k, v in record.params.items()],
    )
    for name, text in record.artifacts.items():
        client.log_text(run_id, text, name)
    client.set_terminated(run_id, record.status, end_time=stamp)
    return run_id


def apply_end(rt: Runtime, record: EndRecord, *, replay: bool) -> str:
    from mlflow.entities import Metric, RunTag

    from observability.tracing import write_root

    client = rt.client()
    parent = resolve_parent(rt, record, replay=replay)
    stamp = _ms(record.ended_at)
    client.log_batch(
        parent,
        metrics=[Metric(k, v, stamp, 0) for k, v in record.metrics.items()],
        tags=[RunTag(k, v) for k, v in record.tags.items()],
    )
    client.set_terminated(parent, record.status, end_time=stamp)
    if record.root is not None and rt.tracing:
        try:  # traces are best effort: a failed root never holds back the run record
            write_root(rt, record.root, parent)
        except Exception:
            log.info("root span of job %s not written", record.job.job_id, exc_info=True)
    return parent


def apply(rt: Runtime, record: BeginRecord | StageRecord | EndRecord, *, replay: bool) -> str:
    if isinstance(record, BeginRecord):
        return apply_begin(rt, record, replay=replay)
    if isinstance(record, StageRecord):
        return apply_stage(rt, record, replay=replay)
    return apply_end(rt, record, replay=replay)


class BackgroundWriter:
    """One daemon thread per process writing records in order; failures go to the outbox."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._now_lock = threading.Lock()
        self._now_started: dict[int, float] = {}  # write_now calls in flight -> start time
        self._now_count = 0
        self.written = 0
        self.outboxed = 0

    def submit(
        self, record: BeginRecord | StageRecord | EndRecord, future: Future | None = None
    ) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait((record, future))
        except queue.Full:
            self._to_outbox(record, future)

    def write_now(self, record: BeginRecord | StageRecord | EndRecord, wait: float) -> str:
        """Write ``record`` at once on a helper thread (not behind the queue) and wait up to
        ``wait`` seconds for its run id; "" when it did not come in time (the write goes on in
        the background, or the record goes to the outbox) or failed. While an earlier
        ``write_now`` has been in flight longer than ``wait``, MLflow is slow: no wait then,
        the record is queued like any other."""
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
                self._write(record, future)
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
        """Nothing queued or being written."""
        return self._queue.unfinished_tasks == 0 and not self._now_started

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
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._write(*item)
            finally:
                self._queue.task_done()

    def _write(self, record: Any, future: Future | None) -> None:
        if not self.rt.health.available():
            self._to_outbox(record, future)
            return
        try:
            result = apply(self.rt, record, replay=False)
        except ParentPending:
            self._to_outbox(record, future)
            return
        except Exception as exc:
            if is_permanent(exc):
                log.error(
                    "MLflow rejected a %s record of job %s: %s", record.kind, record.job.job_id, exc
                )
                if future is not None:
                    future.set_result("")
                return
            self.rt.health.mark_down(f"{type(exc).__name__}: {exc}"[:300])
            self._to_outbox(record, future)
            return
        self.written += 1
        if future is not None:
            future.set_result(result)

    def _to_outbox(self, record: Any, future: Future | None) -> None:
        if outbox.push(self.rt, record):
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
        """Drain for up to ``timeout``; what is still queued then goes to the outbox."""
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
