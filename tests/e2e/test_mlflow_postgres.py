"""MLflow on PostgreSQL, as compose runs it: a real PostgreSQL cluster (initdb in a temp dir, a
free port on 127.0.0.1, stopped by PID), a real ``mlflow server --backend-store-uri
postgresql+psycopg2://...`` on it, and one job recorded by the worker-mode recorder (Redis
ledger and outbox) through ``services.runner.run_stage``, its stage doubles calling the model
through litellm. Checked through the MLflow client: the parent run, the five nested runs with
their metrics and artifacts, the one trace with the root, stage and LLM spans.

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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp("mlflow-pg")
    postgres = PostgresServer(root, durable=False).start()
    try:
        server = MlflowServer(root, backend_uri=postgres.url).start()
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
