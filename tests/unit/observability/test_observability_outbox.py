"""Where records wait and how they come out: the file outbox of the in-process drivers, replay
(stop when MLflow cannot take a record, drop what it never will), records parked until their
parent run exists, and one creator per parent run."""

from __future__ import annotations

import time

from observability.health import MlflowHealth
from observability.ledger import MemoryLedger
from observability.outbox import FileOutbox, ParentPending, replay
from observability.records import BeginRecord, EndRecord, StageRecord
from observability.writer import BackgroundWriter
from pipeline.models import Job

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
