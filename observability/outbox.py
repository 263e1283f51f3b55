"""Records kept while MLflow cannot take them, written when it can.

A record goes to the outbox when MLflow is down or hanging, when its write failed, when its
parent run has not appeared in time, or when MLflow took a job's runs but not its trace in time
(``TraceNotWritten``). ``replay`` writes the kept records in order and removes each once
written; every process that records runs it whenever it sees MLflow healthy
(``observability.runtime``: on recovery and every ``MLFLOW_OUTBOX_DRAIN_SECONDS`` while
anything is kept), and beat's ``technoshare.replay_mlflow_outbox`` does too.

Two stores with one interface:
- ``RedisOutbox``: the stream ``MLFLOW_OUTBOX_STREAM`` (one XADD, sub-millisecond), for workers.
  No TTL: records are not lost while Redis keeps the stream (trimmed to MLFLOW_OUTBOX_MAXLEN
  as a safety net). One replayer at a time (a Redis lock), so a parent is created once.
- ``FileOutbox``: a JSON-lines file under STATE_DIR, for the in-process drivers (``technoshare
  run``, demo), whose Redis (if any) is temporary: the next run replays it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from observability.records import AnyRecordType, dump_record, load_record
from pipeline.constants import (
    MLFLOW_OUTBOX_LOCK_KEY,
    MLFLOW_OUTBOX_LOCK_TTL_SECONDS,
    MLFLOW_OUTBOX_MAXLEN,
    MLFLOW_OUTBOX_STREAM,
)

log = logging.getLogger("observability")


class ParentPending(Exception):
    """The record's parent run does not exist yet and another process is creating it."""


class TraceNotWritten(Exception):
    """The job's runs are written but MLflow did not take its trace in time: the end record
    waits in the outbox and is written again (the same values, spans upserted by id). MLflow
    answered the runs, so it is not marked down."""


class Outbox(Protocol):
    where: str  # for people: where the kept records are

    def push(self, record: AnyRecordType) -> bool: ...

    def pending(self) -> int: ...

    def peek(self, count: int) -> list[tuple[str, str]]: ...  # (entry id, record JSON)

    def remove(self, entry_id: str) -> None: ...

    def exclusive(self) -> contextlib.AbstractContextManager[bool]: ...


def log_lost(record: AnyRecordType, exc: BaseException) -> None:
    log.error(
        "MLflow %s record of job %s lost: MLflow and its outbox both unavailable (%s)",
        record.kind,
        record.job.job_id,
        exc,
    )


class RedisOutbox:
    def __init__(self, redis: Any, where: str = "") -> None:
        self.redis = redis
        self.where = where or f"Redis stream {MLFLOW_OUTBOX_STREAM}"

    def push(self, record: AnyRecordType) -> bool:
        try:
            self.redis.xadd(
                MLFLOW_OUTBOX_STREAM,
                {"kind": record.kind, "job_id": record.job.job_id, "record": dump_record(record)},
                maxlen=MLFLOW_OUTBOX_MAXLEN,
                approximate=True,
            )
            return True
        except Exception as exc:
            log_lost(record, exc)
            return False

    def pending(self) -> int:
        return int(self.redis.xlen(MLFLOW_OUTBOX_STREAM))

    def peek(self, count: int) -> list[tuple[str, str]]:
        entries = self.redis.xrange(MLFLOW_OUTBOX_STREAM, count=count)
        return [(str(entry_id), str(fields.get("record", ""))) for entry_id, fields in entries]

    def remove(self, entry_id: str) -> None:
        self.redis.xdel(MLFLOW_OUTBOX_STREAM, entry_id)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[bool]:
        token = f"{os.getpid()}-{time.time()}"
        got = bool(
            self.redis.set(
                MLFLOW_OUTBOX_LOCK_KEY, token, nx=True, ex=MLFLOW_OUTBOX_LOCK_TTL_SECONDS
            )
        )
        try:
            yield got
        finally:
            if got and self.redis.get(MLFLOW_OUTBOX_LOCK_KEY) == token:
                self.redis.delete(MLFLOW_OUTBOX_LOCK_KEY)


class FileOutbox:
    """One record a line; ``flock`` on a lock file next to it orders writers and replayers of
    every process on the machine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._lock_path = path.with_name(path.name + ".lock")
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, self._lock_path.open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _lines(self) -> list[str]:
        try:
            return [line for line in self.path.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    def push(self, record: AnyRecordType) -> bool:
        try:
            line = json.dumps({"id": record.record_id, "record": dump_record(record)})
            with self._locked(), self.path.open("a") as out:
                out.write(line + "\n")
            return True
        except OSError as exc:
            log_lost(record, exc)
            return False

    def pending(self) -> int:
        return len(self._lines())

    def peek(self, count: int) -> list[tuple[str, str]]:
        out = []
        for line in self._lines()[:count]:
            try:
                entry = json.loads(line)
                out.append((str(entry["id"]), str(entry["record"])))
            except (ValueError, KeyError, TypeError):
                out.append((line, line))  # unreadable: replay drops it by its text
        return out

    def remove(self, entry_id: str) -> None:
        with self._locked():
            kept = []
            for line in self._lines():
                try:
                    if json.loads(line).get("id") == entry_id:
                        continue
                except (ValueError, AttributeError):
                    if line == entry_id:
                        continue
                kept.append(line)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(self.path)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[bool]:
        yield True  # every write above is under the file lock; one replayer per process


def replay(
    outbox: Outbox,
    write: Callable[[AnyRecordType], object],
    *,
    is_permanent: Callable[[BaseException], bool],
    on_down: Callable[[str], None],
    max_records: int = 1000,
) -> dict[str, Any]:
    """Write kept records, oldest first; returns counts, never raises.

    Stops at the first record MLflow cannot take now (it went away again, or a parent is being
    created elsewhere): the rest waits for the next pass. Records MLflow rejects for good
    (HTTP 4xx) and entries this version cannot read are logged and dropped."""
    result: dict[str, Any] = {"replayed": 0, "dropped": 0, "pending": 0, "skipped": ""}
    try:
        result["pending"] = outbox.pending()
    except Exception as exc:
        result["skipped"] = f"outbox unavailable: {exc}"
        return result
    if not result["pending"]:
        return result
    with outbox.exclusive() as mine:
        if not mine:
            result["skipped"] = "another replay is running"
            return result
        for entry_id, text in outbox.peek(max_records):
            try:
                record = load_record(text)
            except ValueError as exc:
                log.error("dropping unreadable outbox entry %s: %s", entry_id[:40], exc)
                result["dropped"] += 1
                outbox.remove(entry_id)
                continue
            try:
                write(record)
                result["replayed"] += 1
            except ParentPending:
                result["skipped"] = "a parent run is being created elsewhere"
                break
            except TraceNotWritten:
                result["skipped"] = "MLflow did not take a trace in time"
                break
            except Exception as exc:
                if not is_permanent(exc):
                    on_down(f"{type(exc).__name__}: {exc}"[:300])
                    result["skipped"] = "MLflow unavailable"
                    break
                log.error("dropping outbox record %s: %s", entry_id, exc)
                result["dropped"] += 1
            outbox.remove(entry_id)
    with contextlib.suppress(Exception):
        result["pending"] = outbox.pending()
    if result["replayed"]:
        log.info("replayed %d MLflow records from the outbox", result["replayed"])
    return result
