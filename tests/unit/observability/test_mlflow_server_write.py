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


def prepared_run(store: Any, experiment: str) -> str:
    """A running parent as begin_job leaves it, with a first batch already logged."""
    from mlflow.entities import Metric, Param, RunTag

    run = store.create_run(experiment, "worker", 1_699_999_000_000, [RunTag("mlflow.runName", "job-j1"), RunTag("outcome", "pending")], None)  # fmt: skip
    run_id = run.info.run_id
    store.log_batch(
        run_id,
        [Metric("cost_usd", 0.5, 1_700_000_000_000, 0), Metric("latency_ms", 10.0, 1_700_000_000_000, 3)],
        [Param("stage_a.model", "stub/m")],
        [RunTag("domain", "arxiv.org")],
    )  # fmt: skip
    return str(run_id)


END = dict(
    tags={"outcome": "success", "adapter_name": "ArxivAdapter"},  # one changed, one new
    params={"stage_a.model": "stub/m", "stage_b.model": "stub/m"},  # one logged again, one new
    metrics=[
        ("cost_usd", 0.5, 1_700_000_000_000, 0),  # logged already: not twice
        ("cost_usd", 0.75, 1_700_000_009_000, 0),  # newer: the latest
        ("latency_ms", 99.0, 1_700_000_009_000, 1),  # a lower step: not the latest
        ("input_tokens", math.nan, 1_700_000_009_000, 0),
    ],
    status="FINISHED",
    end_time=1_700_000_010_000,
)


def end_view(store: Any, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    history = {
        key: sorted((m.step, m.timestamp, repr(m.value)) for m in store.get_metric_history(run_id, key))
        for key in ("cost_usd", "latency_ms", "input_tokens")
    }  # fmt: skip
    return {"status": run.info.status, "end_time": run.info.end_time, "name": run.info.run_name,
            "tags": {k: v for k, v in run.data.tags.items()}, "params": run.data.params,
            "latest": {k: repr(v) for k, v in run.data.metrics.items()}, "history": history}  # fmt: skip


def test_an_existing_runs_end_in_one_transaction_is_what_mlflows_calls_make(store: Any) -> None:
    from observability.mlflow_server_write import _update_in_one_transaction

    experiment = store.create_experiment("e")
    mine, theirs = prepared_run(store, experiment), prepared_run(store, experiment)
    assert _update_in_one_transaction(store, WriteRequest(run_id=mine, **END)) is not None
    _write_with_store_calls(store, WriteRequest(run_id=theirs, **END))
    assert end_view(store, mine) == end_view(store, theirs)
    view = end_view(store, mine)
    assert view["latest"]["cost_usd"] == "0.75" and view["latest"]["latency_ms"] == "10.0"
    assert len(view["history"]["cost_usd"]) == 2 and view["tags"]["outcome"] == "success"
    again = _update_in_one_transaction(store, WriteRequest(run_id=mine, **END))  # repeated end
    assert again is not None and end_view(store, mine) == view


def test_what_mlflow_must_answer_itself_is_left_to_its_calls(store: Any) -> None:
    from observability.mlflow_server_write import _update_in_one_transaction

    experiment = store.create_experiment("e")
    run_id = prepared_run(store, experiment)
    before = end_view(store, run_id)
    changed = WriteRequest(run_id=run_id, params={"stage_a.model": "other"}, status="FINISHED")
    renamed = WriteRequest(run_id=run_id, tags={"mlflow.runName": "x"})
    missing = WriteRequest(run_id="0" * 32, status="FINISHED")
    for req in (changed, renamed, missing):
        assert _update_in_one_transaction(store, req) is None
    assert end_view(store, run_id) == before  # nothing written
    store.delete_run(run_id)
    assert _update_in_one_transaction(store, WriteRequest(run_id=run_id, status="FINISHED")) is None


def test_another_mlflow_release_gets_its_own_store_calls(monkeypatch, caplog) -> None:
    import mlflow

    from observability import mlflow_server_write

    mlflow_server_write._schema_known.cache_clear()
    monkeypatch.setattr(mlflow, "__version__", "3.18.0")
    try:
        assert mlflow_server_write._schema_known() is False
        assert "through its store calls" in caplog.text
        mlflow_server_write._schema_known.cache_clear()
        monkeypatch.setattr(mlflow, "__version__", mlflow_server_write.SCHEMA_VERSION + ".2")
        assert mlflow_server_write._schema_known() is True
    finally:
        mlflow_server_write._schema_known.cache_clear()


def test_the_server_app_loads_the_span_pricing_library_at_start_offline(tmp_path: Path) -> None:
    """What MLflow's server imports on the first trace with LLM spans (3-4 s of CPU in that
    request) is loaded when the app starts, with litellm's offline switches set."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_")}
    code = (
        "import os, sys\n"
        "from observability.mlflow_server_app import load_cost_library\n"
        "load_cost_library()\n"
        "print('litellm' in sys.modules, os.environ['LITELLM_LOCAL_MODEL_COST_MAP'],"
        " os.environ['LITELLM_MODE'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, text=True,
                         capture_output=True, timeout=120, check=True,
                         ).stdout.split()  # fmt: skip
    assert out == ["True", "True", "PRODUCTION"]


def test_artifacts_from_many_threads_land_whole_and_leave_no_staged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each server thread stages the files it copies in a folder of its own, made once: runs
    written at the same time with the same artifact names keep their own texts, and nothing is
    left staged after a write."""
    import threading

    from mlflow.server import handlers
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    from observability import mlflow_server_artifacts

    root = tmp_path / "artifacts"
    monkeypatch.setattr(
        handlers, "_get_artifact_repo_mlflow_artifacts", lambda: LocalArtifactRepository(str(root))
    )
    folders: set[str] = set()

    def write(index: int) -> None:
        for repeat in range(5):
            run = f"{index:02d}{repeat:02d}" * 8
            texts = {"stage.json": f'{{"run": "{run}"}}', "prompts/b.txt": "x" * index * 1000}
            mlflow_server_artifacts.write_texts(f"mlflow-artifacts:/1/{run}/artifacts", texts)
        folders.add(mlflow_server_artifacts._staging.folder())

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(6):
        for repeat in range(5):
            run = f"{index:02d}{repeat:02d}" * 8
            written = root / "1" / run / "artifacts"
            assert (written / "stage.json").read_text() == f'{{"run": "{run}"}}'
            assert (written / "prompts" / "b.txt").read_text() == "x" * index * 1000
    assert len(folders) == 6  # a folder per thread
    assert all(not list(Path(folder).iterdir()) for folder in folders)
