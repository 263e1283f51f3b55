"""How many HTTP requests a recorded job costs a real ``mlflow server``, counted from the
server's own access log (``MlflowServer.requests``), with the worker-mode recorder (Redis
ledger and outbox) and stage doubles that call the model through litellm (so each job has LLM
spans, as a real one does).

A count, not a time: the server's CPU per job follows the number of requests it serves (each
costs a sqlite server 15-25 ms; docs/BENCHMARKS.md). What is pinned per job:
- one trace export: every stage's spans (LLM spans included) and the root in ONE ``log_spans``
  (``POST /v1/traces``) plus the trace info (``POST /api/3.0/mlflow/traces``);
- no lookups: no ``runs/get`` (artifacts go to the URI ``runs/create`` answered), no searches
  (the parent run id travels in the headers);
- each run: one create, one ``log-batch``, one ``update``; one upload per stage artifact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.stages import STAGE_NAMES, STAGES
from tests.support import obs_jobs
from tests.support.mlflow_server import MlflowServer, client_and_experiment, the_trace
from tests.support.service import RedisServer

pytestmark = pytest.mark.mlflow_server

JOBS = 3
RUNS = 1 + len(STAGES)  # the parent and one nested run per stage
EXPECTED_PER_JOB = {
    ("POST", "/api/2.0/mlflow/runs/create"): RUNS,
    ("POST", "/api/2.0/mlflow/runs/log-batch"): RUNS,
    ("POST", "/api/2.0/mlflow/runs/update"): RUNS,
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/*"): len(STAGES),
    ("POST", "/v1/traces"): 1,
    ("POST", "/api/3.0/mlflow/traces"): 1,
}
# The floor of MLflow's REST API for 6 runs with metrics and a JSON artifact each: a run cannot
# be created finished or with metrics, so 3 requests a run + 1 per artifact + 2 for the trace.
MAX_PER_JOB = sum(EXPECTED_PER_JOB.values())  # 25 (was 35-37: a span export each, runs/get)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """Its own server: the count must hold only this module's requests."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-count")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def recorder(
    server: MlflowServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    from observability.recorder import get_recorder, install_recorder

    patch = pytest.MonkeyPatch()
    for key, value in {
        "MLFLOW_TRACKING_URI": server.url,
        "REDIS_URL": redis_server.url,
        "STATE_DIR": str(tmp_path_factory.mktemp("state")),
        "TS_TEST_LITELLM": "1",
        "MLFLOW_ENABLE_TRACKING": "true",
        "MLFLOW_ENABLE_TRACING": "true",
    }.items():
        patch.setenv(key, value)
    obs_jobs.init_process()  # worker mode: Redis ledger and outbox
    yield
    get_recorder().close()
    install_recorder(None)
    patch.undo()


def run_job(job_id: str) -> None:
    from observability.recorder import get_recorder

    job = obs_jobs.make_job(job_id, f"https://arxiv.org/abs/2401.{job_id[-5:]}")
    headers = get_recorder().begin_job(job)
    carry: dict = {}
    for stage in STAGE_NAMES:
        carry = obs_jobs.run_stage(stage, job.model_dump(mode="json"), headers, carry)


def test_a_job_costs_one_trace_export_and_no_lookups(
    server: MlflowServer, recorder: None, tmp_path: Path
) -> None:
    from observability.recorder import get_recorder

    # once per process or per server worker: experiment lookup, version probe, first trace
    run_job("jwarm00000")
    assert get_recorder().flush(60.0)
    before = server.requests()
    ids = [f"jcount{n:05d}" for n in range(JOBS)]
    for job_id in ids:
        run_job(job_id)
    assert get_recorder().flush(60.0)
    made = server.requests() - before

    assert made == Counter({k: v * JOBS for k, v in EXPECTED_PER_JOB.items()}), made
    assert sum(made.values()) / JOBS <= MAX_PER_JOB
    # and the job is all there: five nested runs, one trace with the root, stage and LLM spans
    client, exp_id = client_and_experiment(server.url)
    for job_id in ids:
        [parent] = client.search_runs(
            [exp_id], f"tags.job_id = '{job_id}' and tags.run_kind = 'job'"
        )
        children = client.search_runs([exp_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert {r.data.tags["stage"] for r in children} == set(STAGE_NAMES)
        assert all(r.info.status == "FINISHED" for r in [parent, *children])
        trace = the_trace(exp_id, server.url, job_id, 8, timeout=30)
        assert len(trace.data.spans) == 1 + len(STAGES) + 2  # root, stages, 2 LLM calls
