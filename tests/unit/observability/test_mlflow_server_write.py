"""The server-side run write (observability/mlflow_server_write.py) on MLflow's own SQL store,
in process (sqlite in a temp dir): the one-transaction create gives a run the same info, tags,
params, metric history and latest metrics as MLflow's own calls (exact repeats, NaN and
infinity included), and a second insert of one run id (a concurrent write that lost the race)
reads as "written already" instead of failing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from observability.mlflow_server_write import (
    WriteRequest,
    _create_in_one_transaction,
    _write_with_store_calls,
)

pytest.importorskip("sqlalchemy")

RUN_ID = "ab" * 16
METRICS = [
    ("latency_ms", 900.0, 1_700_000_000_000, 0),
    ("latency_ms", 900.0, 1_700_000_000_000, 0),  # an exact repeat
    ("latency_ms", 850.0, 1_700_000_000_500, 0),  # later: the latest
    ("score", math.nan, 1_700_000_000_000, 0),
    ("ceiling", math.inf, 1_700_000_000_000, 2),
    ("ceiling", -1.0, 1_700_000_000_900, 1),  # a lower step: not the latest
]


@pytest.fixture
def store(tmp_path: Path) -> Any:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    return SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"))


def request(experiment_id: str, **extra: Any) -> WriteRequest:
    return WriteRequest(
        experiment_id=experiment_id, start_time=1_699_999_999_000, user_id="worker",
        tags={"mlflow.runName": "stage_a", "ts_record_id": RUN_ID, "stage": "stage_a"},
        metrics=list(METRICS), params={"model": "stub/m", "prompt": "3"},
        status="FINISHED", end_time=1_700_000_001_000, **extra,
    )  # fmt: skip


def view(store: Any, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    info = {k: v for k, v in dict(run.info).items() if k not in ("run_id", "run_uuid")}
    info["artifact_uri"] = info["artifact_uri"].replace(run_id, "<id>")
    history = {
        key: sorted((m.step, m.timestamp, repr(m.value)) for m in store.get_metric_history(run_id, key))
        for key in ("latency_ms", "score", "ceiling")
    }  # fmt: skip
    latest = {k: repr(v) for k, v in run.data.metrics.items()}
    return {"info": info, "tags": run.data.tags, "params": run.data.params, "latest": latest,
            "history": history}  # fmt: skip


def test_the_one_transaction_run_is_the_run_mlflows_calls_make(store: Any) -> None:
    experiment = store.create_experiment("e")
    location = store.get_experiment(experiment).artifact_location
    assert _create_in_one_transaction(store, request(experiment, new_run_id=RUN_ID), location)
    standard = _write_with_store_calls(store, request(experiment))["run_id"]
    assert standard != RUN_ID
    mine, theirs = view(store, RUN_ID), view(store, standard)
    assert mine == theirs
    assert mine["latest"] == {
        "latency_ms": "850.0",
        "score": "nan",
        "ceiling": "1.7976931348623157e+308",
    }
    assert mine["info"]["status"] == "FINISHED" and mine["info"]["end_time"] == 1_700_000_001_000


def test_a_second_insert_of_one_run_id_reads_as_written_already(store: Any) -> None:
    from mlflow.entities import ViewType

    experiment = store.create_experiment("e")
    location = store.get_experiment(experiment).artifact_location
    req = request(experiment, new_run_id=RUN_ID)
    assert _create_in_one_transaction(store, req, location) is True
    assert _create_in_one_transaction(store, req, location) is False  # lost the race: no error
    runs = store.search_runs([experiment], "", ViewType.ALL)
    assert [r.info.run_id for r in runs] == [RUN_ID]
    assert len(store.get_metric_history(RUN_ID, "latency_ms")) == 2  # nothing logged twice
