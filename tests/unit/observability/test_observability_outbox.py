"""Where records wait and how they come out: the file outbox of the in-process drivers, replay
(stop when MLflow cannot take a record, drop what it never will), records parked until their
parent run exists, and one creator per parent run (given back when its create never reached
MLflow)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import fakeredis
import pytest

from observability import mlflow_parent, mlflow_writes
from observability.health import MlflowHealth
from observability.ledger import MemoryLedger, RedisLedger
from observability.mlflow_store import MlflowStore
from observability.outbox import FileOutbox, ParentPending, replay
from observability.records import BeginRecord, EndRecord, RootSpan, StageRecord, load_record
from observability.writer import BackgroundWriter
from pipeline.models import Job
from pipeline.settings import Settings
from tests.support.raw_servers import SilentServer
from tests.support.service import free_port

JOB = Job(job_id="j1", url="https://arxiv.org/abs/1", canonical_url="https://arxiv.org/abs/1")


def stage_record(run_key: str = "k1", stage: str = "fetch_evidence") -> StageRecord:
    return StageRecord(run_key=run_key, job=JOB, stage=stage, started_at=1.0, ended_at=2.0)


def end_record(run_key: str = "k1") -> EndRecord:
    return EndRecord(run_key=run_key, job=JOB, started_at=1.0, ended_at=3.0, status="FINISHED")


def test_file_outbox_keeps_records_across_instances_and_replays_them_in_order(tmp_path):
    path = tmp_path / "state" / "mlflow-outbox.jsonl"
    first = FileOutbox(path)
    records = [BeginRecord(run_key="k1", job=JOB, started_at=1.0), stage_record(), end_record()]
    assert all(first.push(r) for r in records)
    again = FileOutbox(path)  # the next run of the command
    assert again.pending() == 3
    written: list[str] = []
    result = replay(
        again,
        lambda record: written.append(record.kind) or "run",
        is_permanent=lambda exc: False,
        on_down=lambda reason: None,
    )
    assert written == ["begin", "stage", "end"] and result["replayed"] == 3
    assert again.pending() == 0


def test_replay_stops_at_the_first_record_mlflow_cannot_take_and_keeps_the_rest(tmp_path):
    outbox = FileOutbox(tmp_path / "outbox.jsonl")
    for stage in ("fetch_evidence", "stage_a", "stage_b"):
        outbox.push(stage_record(stage=stage))
    downs: list[str] = []

    def write(record):
        if record.stage == "stage_a":
            raise ConnectionError("mlflow went away")
        return "run"

    result = replay(outbox, write, is_permanent=lambda exc: False, on_down=downs.append)
    assert result["replayed"] == 1 and outbox.pending() == 2
    assert downs and "mlflow went away" in downs[0]


def test_replay_drops_what_mlflow_rejects_for_good_and_unreadable_entries(tmp_path):
    path = tmp_path / "outbox.jsonl"
    outbox = FileOutbox(path)
    outbox.push(stage_record(stage="stage_a"))
    with path.open("a") as fh:
        fh.write("not json at all\n")
    outbox.push(stage_record(stage="stage_b"))

    def write(record):
        if record.stage == "stage_a":
            raise ValueError("HTTP 400: bad value")
        return "run"

    result = replay(outbox, write, is_permanent=lambda e: isinstance(e, ValueError), on_down=print)
    assert result == {"replayed": 1, "dropped": 2, "pending": 0, "skipped": ""}


def test_replay_waits_while_a_parent_is_being_created_elsewhere(tmp_path):
    outbox = FileOutbox(tmp_path / "outbox.jsonl")
    outbox.push(stage_record())

    def write(record):
        raise ParentPending(record.run_key)

    result = replay(outbox, write, is_permanent=lambda e: False, on_down=print)
    assert result["replayed"] == 0 and outbox.pending() == 1
    assert "being created" in result["skipped"]


def test_a_parent_run_is_claimed_once_until_the_claim_expires():
    ledger = MemoryLedger()
    assert ledger.claim_parent("k1", "a") is True
    assert ledger.claim_parent("k1", "b") is False
    assert ledger.claim_parent("k2", "b") is True


def up_health() -> MlflowHealth:
    health = MlflowHealth(lambda: None)
    health.check_now()
    return health


def test_records_whose_parent_is_not_there_yet_wait_for_it_in_order(tmp_path):
    """The stage and end records of a job whose begin is still being written (here: the parent
    appears after 0.6 s) are parked, then written in their order; nothing reaches the outbox."""
    appears_at = time.monotonic() + 0.6
    written: list[str] = []

    def write(record):
        if time.monotonic() < appears_at:
            raise ParentPending(record.run_key)
        written.append(f"{record.kind}:{getattr(record, 'stage', '')}")
        return "run"

    outbox = FileOutbox(tmp_path / "outbox.jsonl")
    writer = BackgroundWriter(write, outbox, up_health(), is_permanent=lambda e: False)
    writer.submit(stage_record(stage="fetch_evidence"))
    writer.submit(stage_record(stage="stage_a"))
    writer.submit(end_record())
    assert writer.flush(10.0)
    assert written == ["stage:fetch_evidence", "stage:stage_a", "end:"]
    assert outbox.pending() == 0
    writer.close()


def test_a_parent_that_never_appears_sends_its_records_to_the_outbox(tmp_path):
    def write(record):
        raise ParentPending(record.run_key)

    outbox = FileOutbox(tmp_path / "outbox.jsonl")
    writer = BackgroundWriter(
        write, outbox, up_health(), is_permanent=lambda e: False, parent_wait=0.5
    )
    writer.submit(stage_record())
    writer.submit(end_record())
    assert writer.flush(10.0)
    assert outbox.pending() == 2
    writer.close()


# --- a parent claim whose create never reached MLflow --------------------------------------------
@pytest.fixture
def silent_port() -> Iterator[int]:
    """A hanging MLflow server: it accepts connections and never answers."""
    server = SilentServer()
    yield server.port
    server.stop()


def begin_against(url: str, run_key: str = "k1") -> tuple[MemoryLedger, Exception]:
    """A live ``begin`` (it claims the parent, then creates it) against ``url``, through the
    MLflow client as a worker makes it; the ledger and what the create raised."""
    store = MlflowStore(Settings(mlflow_tracking_uri=url, mlflow_http_max_retries=0))
    ledger = MemoryLedger()
    record = BeginRecord(run_key=run_key, job=JOB, started_at=1.0)
    with pytest.raises(Exception) as raised:
        mlflow_writes.apply(store, ledger, record, replay=False)
    return ledger, raised.value


def test_a_create_refused_gives_the_parent_claim_back_for_the_replay():
    """Before: the claim held the begin's replay (and the whole outbox behind it) for a minute
    after MLflow came back."""
    ledger, error = begin_against(f"http://127.0.0.1:{free_port()}")
    assert mlflow_parent.never_sent(error)
    assert ledger.claim_parent("k1", "the replaying process") is True


def test_a_create_that_timed_out_keeps_the_claim_it_may_still_land(silent_port):
    """ "k1" is no run id: a late create through the batch endpoint would make a run of its own
    (as the standard calls would), so the claim stays until it expires."""
    ledger, error = begin_against(f"http://127.0.0.1:{silent_port}")
    assert not mlflow_parent.never_sent(error)
    assert ledger.claim_parent("k1", "the replaying process") is False


def test_a_timed_out_create_with_the_run_key_as_its_id_gives_the_claim_back(silent_port):
    """The batch endpoint creates the parent with the run key (a trace id) as its run id: a
    late create and the replay's are one run, so the replay need not wait."""
    run_key = "ab" * 16
    ledger, error = begin_against(f"http://127.0.0.1:{silent_port}", run_key)
    assert not mlflow_parent.never_sent(error)
    assert ledger.claim_parent(run_key, "the replaying process") is True


def test_a_redis_claim_is_given_back_only_by_its_owner():
    ledger = RedisLedger(fakeredis.FakeRedis(decode_responses=True))
    assert ledger.claim_parent("k1", "a")
    ledger.release_parent("k1", "b")  # not b's: kept
    assert not ledger.claim_parent("k1", "c")
    ledger.release_parent("k1", "a")
    assert ledger.claim_parent("k1", "c")


# --- a trace the server does not take ------------------------------------------------------------
def end_with_root() -> EndRecord:
    root = RootSpan(
        trace_id="2" * 32, span_id="1" * 16, name="job-j1", start_ns=1, end_ns=2, inputs={}
    )
    return EndRecord(
        run_key="k1", job=JOB, started_at=1.0, ended_at=3.0, status="FINISHED", root=root
    )


def test_a_trace_that_keeps_timing_out_sends_the_end_to_the_outbox(monkeypatch, tmp_path):
    """Before: dropped after its tries (a plain server still importing litellm on a busy machine
    lost the job's whole trace). MLflow is not marked down: the other records go on."""
    from mlflow.exceptions import MlflowException

    tries: list[str] = []

    def slow_server(store, root, parent, spans):
        tries.append(parent)
        raise MlflowException("API request to /api/3.0/mlflow/traces failed with timeout")

    monkeypatch.setattr(mlflow_writes, "write_trace", slow_server)
    outbox = FileOutbox(tmp_path / "outbox.jsonl")
    health = up_health()

    def write(record):
        mlflow_writes._write_trace_patiently(store=None, record=record, parent="run1")  # type: ignore[arg-type]
        return "run1"

    writer = BackgroundWriter(write, outbox, health, is_permanent=mlflow_writes.is_permanent)
    writer.submit(end_with_root())
    assert writer.flush(10.0)
    assert tries == ["run1"] * 3
    assert outbox.pending() == 1 and load_record(outbox.peek(1)[0][1]).root is not None
    assert health.outages == 0  # it answered the runs: slow, not down
    writer.close()


def test_a_trace_mlflow_rejects_is_dropped_and_the_end_is_not_kept(monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    tries: list[str] = []

    def rejecting(store, root, parent, spans):
        tries.append(parent)
        raise MlflowException("bad span", error_code=INVALID_PARAMETER_VALUE)  # HTTP 400

    monkeypatch.setattr(mlflow_writes, "write_trace", rejecting)
    mlflow_writes._write_trace_patiently(store=None, record=end_with_root(), parent="run1")  # type: ignore[arg-type]
    assert tries == ["run1"]
