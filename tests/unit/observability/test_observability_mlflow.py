"""The MLflow backend against a real ``mlflow server`` and real Redis, with each stage run in
another process: a forked pool (prefork-like) for the io stages, a spawned process running
each stage on its own thread (threads-pool-like) for the LLM stages. The entry process (this
one) begins the jobs, as the entry task does.

What is checked goes through ``MlflowClient`` only: parent runs and tags, nested runs, metrics,
artifacts, the one trace per job and its span tree, the documented filter queries; then MLflow
is stopped, jobs keep going with a small MLflow overhead each, and after a restart the outbox
turns into the missing runs.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.constants import MLFLOW_PARENT_CLAIM_TTL_SECONDS
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
from tests.support.service import RedisServer, wait_until

pytestmark = pytest.mark.mlflow_server

LLM = ("stage_a", "stage_b")  # the stages whose doubles call the (stub) model
SPANS = {stage.name: stage.span_name for stage in STAGES}
ARTIFACTS = {stage.name: stage.artifact for stage in STAGES}
OVERHEAD_BUDGET = 0.050  # seconds of MLflow work on a job's critical path


def outbox_pending(redis_url: str) -> int:
    import redis

    from observability.outbox import RedisOutbox

    return RedisOutbox(redis.Redis.from_url(redis_url, decode_responses=True)).pending()


class Workers:
    """io: fork pool of 2 (each child installs its recorder, as a worker process does); llm:
    one spawned process, stages on threads."""

    def __init__(self) -> None:
        self.io = mp.get_context("fork").Pool(2, initializer=obs_jobs.init_process)
        self.llm = mp.get_context("spawn").Pool(1, initializer=obs_jobs.init_process)

    def stage(self, stage: str, job: dict, headers: dict, carry: dict) -> dict:
        if stage in LLM:
            return self.llm.apply(obs_jobs.run_stage_threaded, (stage, job, headers, carry))
        return self.io.apply(obs_jobs.run_stage, (stage, job, headers, carry))

    def close(self) -> None:
        for pool in (self.io, self.llm):
            pool.terminate()
            pool.join()


@pytest.fixture(scope="module")
def env(
    mlflow_server: MlflowServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    mp_ = pytest.MonkeyPatch()
    values = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "REDIS_URL": redis_server.url,
        "STATE_DIR": str(tmp_path_factory.mktemp("state")),
        "TS_TEST_LITELLM": "1",
        "MLFLOW_ENABLE_TRACKING": "true",
        "MLFLOW_ENABLE_TRACING": "true",
    }
    for key, value in values.items():
        mp_.setenv(key, value)
    yield values
    mp_.undo()


@pytest.fixture(scope="module")
def workers(env: dict[str, str]) -> Iterator[Workers]:
    """The pools, and this process's recorder (it begins the jobs, as the entry task does)."""
    from observability.recorder import get_recorder, install_recorder

    pools = Workers()
    obs_jobs.init_process()
    yield pools
    get_recorder().close()
    install_recorder(None)
    pools.close()


def run_job(workers: Workers, job_id: str, url: str) -> dict[str, Any]:
    from observability.recorder import get_recorder

    job = obs_jobs.make_job(job_id, url)
    job_json = job.model_dump(mode="json")
    headers = get_recorder().begin_job(job)
    carry: dict[str, Any] = {}
    for stage in STAGE_NAMES:
        try:
            carry = workers.stage(stage, job_json, headers, carry)
        except Exception as exc:  # the chain stops; the error callback ends the job
            workers.io.apply(obs_jobs.fail_job, (job_json, headers, f"{type(exc).__name__}: {exc}"))
            return {"job_id": job_id, "headers": headers, "failed_at": stage}
    return {"job_id": job_id, "headers": headers, "carry": carry}


@pytest.fixture(scope="module")
def jobs(workers: Workers, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    plan = {
        "jarxiv": "https://arxiv.org/abs/2401.00001",
        "jgithub": "https://github.com/example/fastq",
        "jgate": "https://arxiv.org/abs/2401.00002/gatefail",
        "jboom": "https://example.org/boom",
    }
    return {job_id: run_job(workers, job_id, url) for job_id, url in plan.items()}


def test_parent_runs_nested_runs_metrics_and_artifacts(jobs, env, tmp_path) -> None:
    client, exp_id = client_and_experiment(env["MLFLOW_TRACKING_URI"])
    parent = wait_for_job(client, exp_id, "jarxiv", 5)
    tags = parent.data.tags
    assert tags["mlflow.runName"] == "job-jarxiv"
    assert tags["channel_id"] == "C0SHARE"
    assert tags["message_ts"] == "1700000000.000100"
    assert tags["target_url"] == "https://arxiv.org/abs/2401.00001"
    assert tags["domain"] == "arxiv.org"
    assert tags["adapter_name"] == "ArxivAdapter"
    assert tags["outcome"] == "success"
    params = parent.data.params  # what the Compare view shows as differences
    for stage in LLM:
        assert tags[f"{stage}.model"] == obs_jobs.MODEL
        assert tags[f"{stage}.prompt_version"] == "3"
        assert params[f"{stage}.model"] == obs_jobs.MODEL
        assert params[f"{stage}.prompt_name"] == stage
        assert params[f"{stage}.prompt_version"] == "3"
    assert params["adapter"] == "ArxivAdapter"
    assert params["gate_tldr_items"] == "3" and params["app_version"]
    assert parent.info.status == "FINISHED"
    m = parent.data.metrics
    assert m["cost_usd"] == pytest.approx(2 * obs_jobs.CALL_COST)
    assert m["input_tokens"] == 200 and m["output_tokens"] == 80
    assert m["total_latency_seconds"] > 0
    assert m["tracking_overhead_seconds"] > 0  # its bound is checked where it is promised

    children = children_of(client, exp_id, parent.info.run_id)
    assert set(children) == set(STAGE_NAMES)
    for stage, run in children.items():
        assert run.info.status == "FINISHED"
        assert run.data.metrics["latency_seconds"] >= 0, stage
        assert run.data.tags["job_id"] == "jarxiv"
    r = children["fetch_evidence"].data
    assert r.metrics["snippet_count"] == 3 and r.metrics["source_count"] == 1
    assert r.tags["coverage"] == "full"
    a = children["stage_a"].data
    assert a.metrics["tool_call_count"] == 1 and a.metrics["source_count"] == 2
    for stage in LLM:
        d = children[stage].data
        assert d.metrics["input_tokens"] == 100 and d.metrics["output_tokens"] == 40
        assert d.metrics["cost_usd"] == pytest.approx(obs_jobs.CALL_COST)
        assert d.tags["model"] == obs_jobs.MODEL and d.tags["prompt_version"] == "3"
    assert children["quality_gates"].data.metrics["gate_failures"] == 0
    for stage, name in ARTIFACTS.items():
        listed = [f.path for f in client.list_artifacts(children[stage].info.run_id)]
        assert listed == [name], stage
    evidence = artifact_json(
        client, children["fetch_evidence"].info.run_id, "evidence.json", tmp_path
    )
    assert evidence["adapter"] == "ArxivAdapter"


def test_outcomes_and_parent_status(jobs, env) -> None:
    client, exp_id = client_and_experiment(env["MLFLOW_TRACKING_URI"])
    gate = wait_for_job(client, exp_id, "jgate", 5)
    assert gate.data.tags["outcome"] == "gate_failed" and gate.info.status == "FINISHED"
    assert gate.data.metrics["gate_failures"] == 1
    boom = wait_for_job(client, exp_id, "jboom", 3)
    assert boom.data.tags["outcome"] == "error" and boom.info.status == "FAILED"
    assert "LLMOutputError" in boom.data.tags["error"]
    children = children_of(client, exp_id, boom.info.run_id)
    assert set(children) == {"fetch_evidence", "stage_a", "stage_b"}
    assert children["stage_b"].info.status == "FAILED"
    assert children["stage_b"].data.tags["error_type"] == "LLMOutputError"


def test_filter_queries_from_the_guide(jobs, env) -> None:
    client, exp_id = client_and_experiment(env["MLFLOW_TRACKING_URI"])
    for job_id, n in (("jarxiv", 5), ("jgithub", 5), ("jgate", 5), ("jboom", 3)):
        wait_for_job(client, exp_id, job_id, n)

    def jobs_matching(query: str) -> set[str]:
        runs = client.search_runs([exp_id], f"{query} and tags.run_kind = 'job'")
        return {r.data.tags["job_id"] for r in runs}

    assert jobs_matching("tags.outcome = 'success'") >= {"jarxiv", "jgithub"}
    assert "jgate" not in jobs_matching("tags.outcome = 'success'")
    assert jobs_matching("tags.domain = 'arxiv.org'") >= {"jarxiv", "jgate"}
    assert "jgithub" not in jobs_matching("tags.domain = 'arxiv.org'")
    assert jobs_matching("tags.adapter_name = 'ArxivAdapter'") >= {"jarxiv", "jgate"}
    assert jobs_matching("metrics.gate_failures > 0") == {"jgate"}
    gate_runs = client.search_runs([exp_id], "metrics.gate_failures > 0")
    assert {r.data.tags["run_kind"] for r in gate_runs} == {"job", "stage"}


def test_one_trace_per_job_with_the_stage_spans(jobs, env) -> None:
    from mlflow.entities import SpanStatusCode

    client, exp_id = client_and_experiment(env["MLFLOW_TRACKING_URI"])
    parent = wait_for_job(client, exp_id, "jarxiv", 5)
    trace = the_trace(exp_id, env["MLFLOW_TRACKING_URI"], "jarxiv", 8, names=tuple(SPANS.values()))
    spans = {s.name: s for s in trace.data.spans}
    root = spans["job-jarxiv"]
    assert root.parent_id is None
    assert root.inputs["url"] == "https://arxiv.org/abs/2401.00001"
    assert root.inputs["message"] == "look at <https://arxiv.org/abs/2401.00001>"
    assert root.outputs["text"].startswith("Commentary on")
    for stage, name in SPANS.items():
        assert spans[name].parent_id == root.span_id, name
    llm_spans = [s for s in trace.data.spans if s.span_type == "LLM"]
    assert {s.parent_id for s in llm_spans} == {
        spans[SPANS["stage_a"]].span_id,
        spans[SPANS["stage_b"]].span_id,
    }
    retrieval = spans[SPANS["fetch_evidence"]].attributes
    assert retrieval["url"] == "https://arxiv.org/abs/2401.00001"
    assert retrieval["adapter"] == "ArxivAdapter"
    assert retrieval["coverage"] == "full" and retrieval["snippet_count"] == 3
    stage_a = spans[SPANS["stage_a"]].attributes
    assert stage_a["model"] == obs_jobs.MODEL and stage_a["tool_calls"] == 1
    assert stage_a["input_tokens"] == 100 and stage_a["output_tokens"] == 40
    gates = spans[SPANS["quality_gates"]].attributes
    assert gates["gate_failures"] == 0 and gates["failed_gates"] == []
    slack = spans[SPANS["slack_post"]].attributes
    assert slack["channel"] == "C0SHARE" and slack["reply_ts"] == obs_jobs.REPLY_TS

    info = trace.info
    assert info.tags["outcome"] == "success"
    assert info.trace_metadata["mlflow.trace.session"] == "C0SHARE"
    assert info.trace_metadata["mlflow.trace.user"] == "UALICE"
    assert info.state.value == "OK"
    # the trace's usage is the job's: every LLM call of every process (the parent's metrics)
    usage = info.token_usage
    assert usage["input_tokens"] == parent.data.metrics["input_tokens"] == 200
    assert usage["output_tokens"] == parent.data.metrics["output_tokens"] == 80
    import mlflow

    linked = mlflow.search_traces(locations=[exp_id], run_id=parent.info.run_id, return_type="list")
    assert [t.info.trace_id for t in linked] == [info.trace_id]

    boom = the_trace(exp_id, env["MLFLOW_TRACKING_URI"], "jboom", 4, names=(SPANS["stage_b"],))
    assert boom.info.tags["outcome"] == "error"
    assert boom.info.state.value == "ERROR"
    names = {s.name: s for s in boom.data.spans}
    assert names[SPANS["stage_b"]].status.status_code == SpanStatusCode.ERROR
    assert SPANS["quality_gates"] not in names


def test_mlflow_down_jobs_go_on_and_runs_come_back(jobs, workers, env, mlflow_server) -> None:
    """The first job after the kill is where each process finds MLflow gone (a write fails on
    the background thread); the bound is checked on the jobs after it, as promised for an
    outage. Every job's runs arrive after the restart, the detecting job's included, written by
    the processes themselves (no beat, nobody calls a replay): each drains the outbox once it
    sees MLflow healthy again, idle or not, and without waiting out the detecting job's parent
    claim."""
    client, exp_id = client_and_experiment(env["MLFLOW_TRACKING_URI"])
    for job_id, stages in (("jarxiv", 5), ("jgithub", 5), ("jgate", 5), ("jboom", 3)):
        wait_for_job(client, exp_id, job_id, stages)  # nothing left to write: writers idle
    mlflow_server.stop()
    down_jobs = [f"jdown{i}" for i in range(5)]
    for job_id in down_jobs:
        result = run_job(workers, job_id, f"https://arxiv.org/abs/2402.0000{job_id[-1]}")
        assert result["carry"]["reply"]["ts"] == obs_jobs.REPLY_TS  # the reply went out
    redis_url = env["REDIS_URL"]
    assert outbox_pending(redis_url) > 0

    mlflow_server.start()
    # well within the parent claim's minute: the first job's begin, whose create was refused,
    # gave its claim back (the outbox waited 60 s behind it before)
    drain_bound = 0.75 * MLFLOW_PARENT_CLAIM_TTL_SECONDS
    wait_until(lambda: outbox_pending(redis_url) == 0, drain_bound, "the outbox drained")

    for i, job_id in enumerate(down_jobs):
        parent = wait_for_job(client, exp_id, job_id, 5, timeout=30)
        assert parent.data.tags["outcome"] == "success"
        assert parent.data.metrics["cost_usd"] == pytest.approx(2 * obs_jobs.CALL_COST)
        if i > 0:
            assert parent.data.metrics["tracking_overhead_seconds"] < OVERHEAD_BUDGET, job_id
        children = children_of(client, exp_id, parent.info.run_id)
        assert set(children) == set(STAGE_NAMES)
        assert [f.path for f in client.list_artifacts(children["fetch_evidence"].info.run_id)] == [
            "evidence.json"
        ]
