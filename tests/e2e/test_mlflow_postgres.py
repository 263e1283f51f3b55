"""MLflow on PostgreSQL, as compose runs it: a real PostgreSQL cluster (initdb in a temp dir, a
free port on 127.0.0.1, stopped by PID), a real ``mlflow server --backend-store-uri
postgresql+psycopg2://...`` on it, and one job recorded by the worker-mode recorder (Redis
ledger and outbox) through ``services.runner.run_stage``, its stage doubles calling the model
through litellm. Checked through the MLflow client: the parent run, the five nested runs with
their metrics and artifacts, the one trace with the root, stage and LLM spans. Twice: against
MLflow's own server app (the standard REST calls) and the ``technoshare`` app compose runs,
whose endpoint writes each new run in one PostgreSQL transaction under the id the client chose
(a stage run's record id, the parent's trace id); there, concurrent writes of one run make one.

Nothing is skipped: CI installs ``postgresql`` (.ci/run) and tests/support/postgres.py finds
its binaries off PATH.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.stages import STAGE_NAMES, STAGES
from tests.support import obs_jobs
from tests.support.mlflow_server import (
    MlflowServer,
    artifact_json,
    children_of,
    client_and_experiment,
    the_trace,
    wait_for_job,
)
from tests.support.postgres import PostgresServer
from tests.support.service import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.mlflow_server]

JOB = "jpostgres1"
URL = "https://arxiv.org/abs/2401.00042"


@pytest.fixture(scope="module", params=[None, "technoshare"], ids=["mlflow-app", "technoshare-app"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp("mlflow-pg")
    postgres = PostgresServer(root, durable=False).start()
    try:
        server = MlflowServer(root, backend_uri=postgres.url, app_name=request.param).start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        postgres.stop()


@pytest.fixture(scope="module")
def recorded(
    server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    from observability.recorder import get_recorder

    state = str(tmp_path_factory.mktemp("state"))
    with obs_jobs.worker_recording(server.url, redis_server.url, state):
        headers, carry = obs_jobs.record_job(JOB, URL)
        assert get_recorder().flush(60.0)
        yield {"headers": headers, "carry": carry}


def test_a_job_recorded_on_a_postgres_backed_server(
    server: MlflowServer, recorded: dict, tmp_path: Path
) -> None:
    client, exp_id = client_and_experiment(server.url)
    parent = wait_for_job(client, exp_id, JOB, len(STAGES), timeout=60)
    assert parent.info.run_id == recorded["headers"]["ts_parent_run_id"]
    assert parent.info.status == "FINISHED" and parent.data.tags["outcome"] == "success"
    assert parent.data.tags["adapter_name"] == "ArxivAdapter"
    assert parent.data.metrics["cost_usd"] == pytest.approx(2 * obs_jobs.CALL_COST)
    assert parent.data.params["stage_a.model"] == obs_jobs.MODEL

    children = children_of(client, exp_id, parent.info.run_id)
    assert set(children) == set(STAGE_NAMES)
    assert all(r.info.status == "FINISHED" for r in children.values())
    if server.app_name == "technoshare":  # written in one transaction each, under chosen ids
        trace_id = recorded["headers"]["traceparent"].split("-")[1]
        assert parent.info.run_id == trace_id
        assert all(r.info.run_id == r.data.tags["ts_record_id"] for r in children.values())
    assert children["fetch_evidence"].data.metrics["snippet_count"] == 3
    assert children["stage_a"].data.tags["model"] == obs_jobs.MODEL
    for stage in STAGES:
        run_id = children[stage.name].info.run_id
        assert [f.path for f in client.list_artifacts(run_id)] == [stage.artifact]
    evidence = artifact_json(
        client, children["fetch_evidence"].info.run_id, "evidence.json", tmp_path
    )
    assert evidence["url"] == URL and len(evidence["snippets"]) == 3

    trace = the_trace(exp_id, server.url, JOB, 1 + len(STAGES) + 2, timeout=60)
    spans = {s.name: s for s in trace.data.spans}
    root = spans[f"job-{JOB}"]
    assert root.parent_id is None and root.inputs["url"] == URL
    for stage in STAGES:
        assert spans[stage.span_name].parent_id == root.span_id, stage.name
    llm = [s for s in trace.data.spans if s.span_type == "LLM"]
    assert {s.parent_id for s in llm} == {
        spans[STAGES[1].span_name].span_id,
        spans[STAGES[2].span_name].span_id,
    }
    assert trace.info.tags["outcome"] == "success" and trace.info.state.value == "OK"
    assert trace.info.token_usage["input_tokens"] == parent.data.metrics["input_tokens"]


@pytest.mark.parametrize("server", ["technoshare"], indirect=True)  # the endpoint is its own
def test_concurrent_writes_of_one_run_make_one_run_on_postgres(server: MlflowServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from observability.mlflow_batch import ENDPOINT

    client, exp_id = client_and_experiment(server.url)
    run_id = "feed" + "0" * 27 + "7"
    body = {
        "protocol": 1, "experiment_id": exp_id, "new_run_id": run_id, "start_time": 1_700_000_000_000,
        "tags": {"ts_record_id": run_id, "mlflow.runName": "stage_a"},
        "metrics": [{"key": "latency_ms", "value": 5.0, "timestamp": 1_700_000_000_500, "step": 0}],
        "params": {"model": "stub"}, "status": "FINISHED", "end_time": 1_700_000_000_500,
    }  # fmt: skip
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: httpx.post(server.url + ENDPOINT, json=body, timeout=30), range(8))
        )
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    assert sum(a.json()["created"] for a in answers) == 1
    found = client.search_runs([exp_id], f"tags.ts_record_id = '{run_id}'")
    assert [r.info.run_id for r in found] == [run_id]
    assert [m.value for m in client.get_metric_history(run_id, "latency_ms")] == [5.0]


@pytest.mark.parametrize("server", ["technoshare"], indirect=True)
def test_a_second_insert_of_one_run_id_reads_as_written_on_postgres(
    server: MlflowServer, tmp_path: Path
) -> None:
    """The race the look-up cannot close: both writers past it, the loser's insert hits the
    primary key (PostgreSQL aborts its transaction) and answers "written already"."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from observability.mlflow_server_write import WriteRequest, _create_in_one_transaction

    assert server.backend_uri is not None
    store = SqlAlchemyStore(server.backend_uri, str(tmp_path))
    experiment = store.create_experiment("race")
    location = store.get_experiment(experiment).artifact_location
    req = WriteRequest(
        experiment_id=experiment, new_run_id="be" * 16, start_time=1, tags={"k": "v"},
        metrics=[("m", 1.0, 2, 0)], params={"p": "1"}, status="FINISHED", end_time=3,
    )  # fmt: skip
    assert _create_in_one_transaction(store, req, location) is True
    assert _create_in_one_transaction(store, req, location) is False
    run = store.get_run("be" * 16)
    assert run.data.params == {"p": "1"} and run.data.metrics == {"m": 1.0}
    assert len(store.get_metric_history("be" * 16, "m")) == 1
