"""The parent run of a job attempt: its tags, who creates it, and how a record finds it.

A parent run is created by whoever claims it in the ledger (``observability.ledger``):
``begin_job`` normally, a replay when the begin was lost; a record whose parent is being
created elsewhere raises ``ParentPending`` and waits. A claim lasts
``MLFLOW_PARENT_CLAIM_TTL_SECONDS`` unless its holder gives it back: it does when its create
failed and cannot have made a run (it never reached MLflow), or can only have made the one a
replay would (the batch endpoint, with the run key as the run's id). Otherwise a create that
timed out may still land, and the replay waits out the claim rather than make a second parent.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from observability import mlflow_batch
from observability.derive import domain_of
from observability.ledger import Ledger
from observability.mlflow_store import MlflowStore
from observability.outbox import ParentPending
from observability.records import RUN_KEY_TAG, RUN_KIND_TAG, BeginRecord, EndRecord, StageRecord

log = logging.getLogger("observability")


def never_sent(exc: BaseException) -> bool:
    """Did the request fail before a connection was made (refused, unreachable, connect
    timeout), so MLflow cannot have acted on it? The MLflow client's transport errors keep
    urllib3's error in their context chain (and a ``MaxRetryError`` its ``reason``)."""
    from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ConnectTimeoutError | ConnectionRefusedError):
            return True  # urllib3's NewConnectionError is a ConnectTimeoutError
        reason = err.reason if isinstance(err, MaxRetryError) else None
        wrapped = [a for a in err.args if isinstance(a, BaseException)]  # requests' errors
        todo += [err.__cause__, err.__context__, reason, *wrapped]
    return False


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def parent_tags(
    job: Any, run_key: str, reprocess_of: str | None, followup_of: str | None = None
) -> dict[str, str]:
    """The parent run's tags; ``followup_of``: the parent run of the job whose thread a
    follow-up question was asked in (the follow-up is a small job of its own)."""
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
    if followup_of:
        tags["followup_of"] = followup_of
    return tags


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def find_run(store: MlflowStore, filter_string: str) -> Any:
    runs = store.client().search_runs([store.experiment_id()], filter_string, max_results=1)
    return runs[0] if runs else None


def _find_parent(store: MlflowStore, run_key: str) -> str:
    run = find_run(store, f"tags.{RUN_KEY_TAG} = '{run_key}' and tags.{RUN_KIND_TAG} = 'job'")
    return str(run.info.run_id) if run is not None else ""


def _ledger_parent(ledger: Ledger, run_key: str) -> str:
    try:
        return ledger.get_parent(run_key)
    except Exception:  # Redis away: MLflow itself still knows the parent by its key
        log.debug("ledger unavailable while resolving a parent run", exc_info=True)
        return ""


def _claim(ledger: Ledger, run_key: str) -> bool:
    try:
        return ledger.claim_parent(run_key, owner_id())
    except Exception:  # no ledger to coordinate through: this process creates it
        return True


def _create_claimed(store: MlflowStore, ledger: Ledger, record: Any) -> str:
    """Create the parent this process has claimed. When that fails, the record goes to the
    outbox, and the replay that writes it must not wait out the claim's minute (the whole
    outbox queues behind it): the claim is given back if the create never reached MLflow, or
    if it went through the batch endpoint with the run key as its id (a create that lands late
    and the replay's then make one run). After a timeout or a dropped answer on the standard
    calls the create may still land as a run of its own, so the claim stays."""
    try:
        return _create_parent(store, ledger, record)
    except Exception as exc:
        # asked after the failure: a server found without the endpoint took the standard calls
        repeatable = mlflow_batch.usable(store) and _keyed(record.run_key)
        if repeatable or never_sent(exc):
            try:
                ledger.release_parent(record.run_key, owner_id())
            except Exception:  # the claim expires by itself
                log.debug("could not release the parent claim", exc_info=True)
        raise


def _keyed(run_key: str) -> bool:
    """Does the batch endpoint create this attempt's parent with the run key as its id?"""
    return mlflow_batch.NEW_RUN_ID.fullmatch(run_key) is not None


def _batch_parent(
    store: MlflowStore, run_key: str, started: int, tags: dict[str, str]
) -> str | None:
    """The parent run created through the batch endpoint, running; its id is the run key (the
    attempt's trace id) when that has a run id's form, so a create retried after a lost answer
    finds it. None when the server has no batch endpoint (nothing written)."""
    if not mlflow_batch.usable(store):
        return None
    body = {
        "experiment_id": store.experiment_id(),
        "new_run_id": run_key if _keyed(run_key) else uuid.uuid4().hex,
        "start_time": started,
        "user_id": tags.get("mlflow.user", "unknown"),
        "tags": tags,
    }
    try:
        return str(mlflow_batch.write_run(store, body)["run_id"])
    except mlflow_batch.Unavailable:
        return None


def _create_parent(store: MlflowStore, ledger: Ledger, record: Any) -> str:
    tags = record.tags if isinstance(record, BeginRecord) else {}
    tags = tags or parent_tags(record.job, record.run_key, None)
    started = getattr(record, "started_at", time.time())
    parent = _batch_parent(store, record.run_key, ms(started), tags)
    if parent is None:
        run = store.client().create_run(store.experiment_id(), start_time=ms(started), tags=tags)
        parent = str(run.info.run_id)
    try:
        ledger.set_parent(record.run_key, parent)
    except Exception:
        log.warning("could not store parent run %s in the ledger", parent, exc_info=True)
    return parent


def resolve_parent(
    store: MlflowStore, ledger: Ledger, record: StageRecord | EndRecord, *, replay: bool
) -> str:
    if record.parent_run_id:
        return record.parent_run_id
    if found := _ledger_parent(ledger, record.run_key) or _find_parent(store, record.run_key):
        return found
    if not replay or not _claim(ledger, record.run_key):
        raise ParentPending(record.run_key)  # its begin is still being written
    return _create_claimed(store, ledger, record)


def apply_begin(store: MlflowStore, ledger: Ledger, record: BeginRecord, *, replay: bool) -> str:
    if found := _ledger_parent(ledger, record.run_key):
        return found  # a replay of this attempt's records created it already
    if replay and (found := _find_parent(store, record.run_key)):
        return found
    if not _claim(ledger, record.run_key):
        raise ParentPending(record.run_key)  # a replay is creating it right now
    return _create_claimed(store, ledger, record)
