"""End to end with the real service: `celery worker` processes (io: prefork, llm: threads) running
the real pipeline on the recorded web with the offline model, a real redis-server, a local Slack
stand-in and a real `mlflow server`; then the MLflow server is stopped mid-test and restarted.

Checked through the MLflow client: parent and nested runs, the one trace per job and its span
tree, the filter queries of docs/MLFLOW_GUIDE.md, and that runs made while MLflow was down
arrive once it is back, the replies having gone out meanwhile with a small MLflow overhead.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.constants import MLFLOW_PARENT_CLAIM_TTL_SECONDS
from pipeline.stages import STAGE_BY_NAME, STAGE_NAMES
from pipeline.stages import STAGES as STAGE_TABLE
from tests.support.fake_slack import FakeSlack
from tests.support.mlflow_server import (
    MlflowServer,
    artifact_json,
    children_of,
    client_and_experiment,
    the_trace,
    wait_for_job,
)
from tests.support.service import Stack, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.mlflow_server]

STAGES = set(STAGE_NAMES)
SPANS = tuple(stage.span_name for stage in STAGE_TABLE)
ARXIV = "https://arxiv.org/abs/2101.04061"
GITHUB = "https://github.com/celery/celery"
OVERHEAD_BUDGET = 0.050


@pytest.fixture(scope="module")
def prompt_versions(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """`technoshare prompts sync` into the server before the workers start: the stages then
    read the registry's templates (alias production). Name -> registered version."""
    from pipeline.prompting import PROMPTS_DIR
    from pipeline.settings import Settings
    from prompts.sync import sync_all

    state = tmp_path_factory.mktemp("prompt-sync")
    settings = Settings(mlflow_tracking_uri=mlflow_server.url, state_dir=state)
    return {r.name: str(r.version) for r in sync_all(settings, PROMPTS_DIR)}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    fake_slack: FakeSlack,
    mlflow_server: MlflowServer,
    prompt_versions: dict[str, str],
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("obs-e2e")
    s = Stack(
        tmp,
        fake_slack,
        FETCH_RECORDED="true",
        LLM_MODEL="offline/extractive",
        MLFLOW_ENABLE_TRACKING="true",
        MLFLOW_ENABLE_TRACING="true",
        MLFLOW_TRACKING_URI=mlflow_server.url,
    )
    patch = pytest.MonkeyPatch()  # this process reads the same MLflow and Redis (replay, checks)
    patch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    patch.setenv("REDIS_URL", s.redis.url)
    patch.setenv("STATE_DIR", str(tmp / "state"))
    try:
        s.start_workers(llm_pool="threads", llm_concurrency=2)
        yield s
    finally:
        s.stop()
        patch.undo()


@pytest.fixture(scope="module")
def first_jobs(stack: Stack) -> dict[str, str]:
    ids = {
        "arxiv": stack.submit(ARXIV, ts="1700000100.000100"),
        "github": stack.submit(GITHUB, ts="1700000100.000200"),
    }
    stack.wait_final(list(ids.values()), timeout=180)
    return ids


def test_runs_and_trace_of_real_jobs(
    stack, first_jobs, mlflow_server, fake_slack, prompt_versions, tmp_path
) -> None:
    client, exp_id = client_and_experiment(mlflow_server.url)
    arxiv = wait_for_job(client, exp_id, first_jobs["arxiv"], 5)
    tags = arxiv.data.tags
    assert tags["domain"] == "arxiv.org" and tags["adapter_name"] == "ArxivAdapter"
    assert tags["target_url"] == ARXIV and tags["channel_id"] == "C0SHARE"
    assert tags["message_ts"] == "1700000100.000100"
    assert tags["outcome"] in ("success", "gate_failed")
    assert arxiv.info.status == "FINISHED"
    prompts = {
        "stage_a": ["stage_a_system", "stage_a_user"],
        "stage_b": ["stage_b_system", "stage_b_user"],
    }
    for stage, names in prompts.items():  # from the registry (alias production), not the files
        assert tags[f"{stage}.model"] == "offline/extractive"
        assert tags[f"{stage}.prompt_name"] == ",".join(names)
        assert tags[f"{stage}.prompt_version"] == ",".join(prompt_versions[n] for n in names)
    assert "total_latency_seconds" in arxiv.data.metrics and "cost_usd" in arxiv.data.metrics

    record = stack.store.require(first_jobs["arxiv"], with_seen=True)  # what the tasks saw
    assert record.parent_run_id == arxiv.info.run_id
    assert {seen["headers"].get("ts_parent_run_id") for seen in record.seen.values()} == {
        arxiv.info.run_id
    }
    assert len(record.seen) == len(STAGES)

    children = children_of(client, exp_id, arxiv.info.run_id)
    assert set(children) == STAGES
    assert children["fetch_evidence"].data.metrics["snippet_count"] > 0
    assert children["stage_a"].data.metrics["input_tokens"] >= 0
    assert "gate_failures" in children["quality_gates"].data.metrics
    assert children["slack_post"].data.tags["reply_ts"]
    artifacts = {
        s: [f.path for f in client.list_artifacts(r.info.run_id)] for s, r in children.items()
    }
    assert artifacts == {stage.name: [stage.artifact] for stage in STAGE_TABLE}
    run_id = children["slack_post"].info.run_id
    payload = artifact_json(client, run_id, "slack_payload.json", tmp_path)
    [posted] = [p for p in fake_slack.posts() if p.get("thread_ts") == tags["message_ts"]]
    assert payload["text"] == posted["text"] and payload["channel"] == "C0SHARE"
    for stage, names in prompts.items():
        run_tags = children[stage].data.tags
        assert run_tags["prompt_name"] == ",".join(names)
        assert run_tags["prompt_version"] == tags[f"{stage}.prompt_version"]

    root_name = f"job-{first_jobs['arxiv']}"
    trace = the_trace(exp_id, mlflow_server.url, first_jobs["arxiv"], 6, names=(*SPANS, root_name))
    spans = {s.name: s for s in trace.data.spans}
    root = spans[f"job-{first_jobs['arxiv']}"]
    for name in SPANS:
        assert spans[name].parent_id == root.span_id, name
    assert spans[STAGE_BY_NAME["fetch_evidence"].span_name].attributes["adapter"] == "ArxivAdapter"
    assert spans[STAGE_BY_NAME["slack_post"].span_name].attributes["reply_ts"]
    for stage, names in prompts.items():
        attributes = spans[STAGE_BY_NAME[stage].span_name].attributes
        assert attributes["prompt_name"] == ",".join(names)
        assert attributes["prompt_version"] == tags[f"{stage}.prompt_version"]
    assert arxiv.data.params["stage_a.prompt_version"] == tags["stage_a.prompt_version"]
    assert trace.info.tags["outcome"] == tags["outcome"]
    assert trace.info.trace_metadata["mlflow.trace.session"] == "C0SHARE"

    github = wait_for_job(client, exp_id, first_jobs["github"], 5)
    assert github.data.tags["adapter_name"] == "GitHubAdapter"
    query = "tags.domain = 'arxiv.org' and tags.run_kind = 'job'"
    assert {r.data.tags["job_id"] for r in client.search_runs([exp_id], query)} == {
        first_jobs["arxiv"]
    }
    query = "tags.adapter_name = 'ArxivAdapter' and tags.run_kind = 'job'"
    assert {r.data.tags["job_id"] for r in client.search_runs([exp_id], query)} == {
        first_jobs["arxiv"]
    }


def test_a_repeat_link_is_recorded_as_a_duplicate_job(stack, first_jobs, mlflow_server) -> None:
    """The same link again in the channel is answered with a link to the earlier thread; the
    job is still recorded: a parent run with outcome `duplicate` and no stage runs."""
    client, exp_id = client_and_experiment(mlflow_server.url)
    answered = [j for j in first_jobs.values() if stack.store.require(j).status == "posted"]
    assert answered, "no first job was answered: nothing to repeat"
    earlier = stack.store.require(answered[0])
    repeat = stack.submit(earlier.job.url, ts="1700000100.000300")
    record = stack.wait_final([repeat], timeout=60)[repeat]
    assert record.status == "duplicate" and record.duplicate_of == earlier.job_id
    parent = wait_for_job(client, exp_id, repeat, 0)
    assert parent.data.tags["outcome"] == "duplicate" and parent.info.status == "FINISHED"
    assert parent.data.tags["target_url"] == earlier.job.url
    assert children_of(client, exp_id, parent.info.run_id) == {}
    trace = the_trace(exp_id, mlflow_server.url, repeat, 1)
    root = trace.data.spans[0]
    assert root.name == f"job-{repeat}" and "earlier thread" in root.outputs["text"]


def test_mlflow_stopped_jobs_still_post_and_runs_arrive_after_restart(
    stack: Stack, first_jobs, mlflow_server: MlflowServer, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """No beat runs here: the workers drain the outbox themselves once MLflow is back."""
    import redis

    from observability.outbox import RedisOutbox

    outbox = RedisOutbox(redis.Redis.from_url(stack.redis.url, decode_responses=True))
    client, exp_id = client_and_experiment(mlflow_server.url)
    for job_id in first_jobs.values():
        wait_for_job(client, exp_id, job_id, 5)
    posts_before = len(fake_slack.posts())
    mlflow_server.stop()
    # The first job after the stop is where each worker finds MLflow gone (a failed write on
    # its background thread); the 50 ms bound is checked on the jobs after it.
    urls = [
        "https://arxiv.org/abs/0704.0108",
        "https://arxiv.org/abs/1809.00949",
        "https://arxiv.org/abs/1604.08245",
    ]
    ids = []
    for i, url in enumerate(urls):
        ids.append(stack.submit(url, ts=f"1700000200.00010{i}"))
        records = stack.wait_final(ids[-1:], timeout=180)
        assert all(r.reply_ts for r in records.values())  # the reply went out
    assert len(fake_slack.posts()) >= posts_before + len(urls)
    wait_until(lambda: outbox.pending() > 0, 30, "records kept while MLflow was away")

    mlflow_server.start()
    # within the parent claim's minute: the detecting job's refused create gave its claim back
    drain_bound = 0.75 * MLFLOW_PARENT_CLAIM_TTL_SECONDS
    wait_until(lambda: outbox.pending() == 0, drain_bound, "the outbox drained", 1.0)
    for i, job_id in enumerate(ids):
        parent = wait_for_job(client, exp_id, job_id, 5, timeout=60)
        assert parent.data.tags["domain"] == "arxiv.org"
        if i > 0:
            assert parent.data.metrics["tracking_overhead_seconds"] < OVERHEAD_BUDGET, job_id
        assert set(children_of(client, exp_id, parent.info.run_id)) == STAGES
    # "MLflow tracking disabled: <reason>" once per outage in each process, not once per call
    disabled: Counter[tuple[str, str]] = Counter()
    for worker in stack.workers:
        for line in worker.log().splitlines():
            if "MLflow tracking disabled" in line:
                process = re.search(r"/([\w-]+)\]", line)
                disabled[(worker.name, process.group(1) if process else line)] += 1
    assert disabled and max(disabled.values()) == 1, disabled
    # and each worker process said at start what it records to, with the URI
    for worker in stack.workers:
        started = [line for line in worker.log().splitlines() if "MLflow tracking enabled" in line]
        assert started and all(mlflow_server.url in line for line in started), worker.name
