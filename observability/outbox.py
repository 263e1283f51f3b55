"""Run records kept in Redis while MLflow is away, written when it is back.

``push`` appends a record to the stream ``pipeline.constants.MLFLOW_OUTBOX_STREAM`` (one XADD,
sub-millisecond: this is the whole cost of MLflow to a job during an outage).
``replay_outbox`` writes the kept records in stream order and deletes each one once written;
it is what the periodic Celery beat task ``technoshare.replay_mlflow_outbox`` calls, and it also
runs by itself in a worker when that worker sees MLflow come back.

Runs are never lost while Redis keeps the stream (no TTL; trimmed to MLFLOW_OUTBOX_MAXLEN as a
safety net). Spans recorded during an outage are not kept: tracing is switched off while MLflow
is down, and a job's trace then holds only what was recorded while MLflow was up plus the root
span, which is part of the job's end record and is written on replay.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from observability.records import BeginRecord, EndRecord, StageRecord, dump_record, load_record
from observability.runtime import Runtime, get_runtime
from pipeline.constants import (
    MLFLOW_OUTBOX_LOCK_KEY,
    MLFLOW_OUTBOX_LOCK_TTL_SECONDS,
    MLFLOW_OUTBOX_MAXLEN,
    MLFLOW_OUTBOX_STREAM,
)

log = logging.getLogger("observability")

# Records younger than this are left for the live writer that may still be writing them.
MIN_AGE_SECONDS = 5.0


def queue_push(pipe: Any, record: BeginRecord | StageRecord | EndRecord) -> None:
    """Add the record's XADD to ``pipe`` (executed by the caller with its other writes)."""
    pipe.xadd(
        MLFLOW_OUTBOX_STREAM,
        {"kind": record.kind, "job_id": record.job.job_id, "record": dump_record(record)},
        maxlen=MLFLOW_OUTBOX_MAXLEN,
        approximate=True,
    )


def log_lost(record: BeginRecord | StageRecord | EndRecord, exc: BaseException) -> None:
    log.error(
        "MLflow %s record of job %s lost: MLflow and Redis both unavailable (%s)",
        record.kind,
        record.job.job_id,
        exc,
    )


def push(rt: Runtime, record: BeginRecord | StageRecord | EndRecord) -> bool:
    try:
        pipe = rt.redis().pipeline(transaction=False)
        queue_push(pipe, record)
        pipe.execute()
        return True
    except Exception as exc:
        log_lost(record, exc)
        return False


def pending(rt: Runtime | None = None) -> int:
    rt = rt or get_runtime()
    return int(rt.redis().xlen(MLFLOW_OUTBOX_STREAM))


def _entry_age(entry_id: str) -> float:
    return time.time() - int(entry_id.split("-", 1)[0]) / 1000


def replay_outbox(
    max_records: int = 1000, min_age_seconds: float = MIN_AGE_SECONDS
) -> dict[str, Any]:
    """Write kept records to MLflow, oldest first. Returns counts; never raises.

    Stops at the first record MLflow cannot take (it went away again: the rest waits for the
    next call). Records MLflow rejects for good (HTTP 4xx) are logged and dropped. One replayer
    at a time (a Redis lock), so parents are created once.
    """
    from observability.writer import apply, is_permanent

    rt = get_runtime()
    result: dict[str, Any] = {"replayed": 0, "dropped": 0, "pending": 0, "skipped": ""}
    if not rt.tracking:
        result["skipped"] = "tracking disabled"
        return result
    try:
        redis: Any = rt.redis()
        result["pending"] = int(redis.xlen(MLFLOW_OUTBOX_STREAM))
    except Exception as exc:
        result["skipped"] = f"redis unavailable: {exc}"
        return result
    if not result["pending"]:
        return result
    if not rt.health.check_now():
        result["skipped"] = f"mlflow unavailable: {rt.health.reason}"
        return result
    token = f"{os.getpid()}-{time.time()}"
    if not redis.set(MLFLOW_OUTBOX_LOCK_KEY, token, nx=True, ex=MLFLOW_OUTBOX_LOCK_TTL_SECONDS):
        result["skipped"] = "another replay is running"
        return result
    try:
        for entry_id, fields in redis.xrange(MLFLOW_OUTBOX_STREAM, count=max_records):
            if _entry_age(entry_id) < min_age_seconds:
                break
            try:
                record = load_record(fields["record"])
            except ValueError as exc:  # not a record this version can read: keep nothing
                log.error("dropping unreadable outbox entry %s: %s", entry_id, exc)
                result["dropped"] += 1
                redis.xdel(MLFLOW_OUTBOX_STREAM, entry_id)
                continue
            try:
                apply(rt, record, replay=True)
                result["replayed"] += 1
            except Exception as exc:
                if not is_permanent(exc):
                    rt.health.mark_down(f"{type(exc).__name__}: {exc}"[:300])
                    break
                log.error("dropping outbox record %s: %s", entry_id, exc)
                result["dropped"] += 1
            redis.xdel(MLFLOW_OUTBOX_STREAM, entry_id)
    finally:
        if redis.get(MLFLOW_OUTBOX_LOCK_KEY) == token:
            redis.delete(MLFLOW_OUTBOX_LOCK_KEY)
    result["pending"] = int(redis.xlen(MLFLOW_OUTBOX_STREAM))
    if result["replayed"]:
        log.info("replayed %d MLflow records from the outbox", result["replayed"])
    return result
