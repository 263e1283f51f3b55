"""End to end on real processes: redis-server, the ingest HTTP server (uvicorn), an io worker
(prefork) and an llm worker (threads) running the REAL pipeline with the offline model against
the recorded web server (arXiv and GitHub APIs and pages on 127.0.0.1), MLflow recording to a
local sqlite store, and a fake Slack on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pipeline.constants import HEADER_JOB_ID, HEADER_PARENT_RUN_ID, HEADER_TRACEPARENT
from pipeline.stages import STAGE_NAMES as STAGES
from services.job_store import FINAL_STATUSES, JobStatus
from services.recorded_web import serve_recorded
from tests.support.service import (
    CHANNEL,
    message_event,
    post_event,
    running_stack,
    signed_headers,
    wait_until,
)

pytestmark = pytest.mark.e2e

# Each test its own links: a link answered in the channel is a `duplicate` for 7 days.
ARXIV = "https://arxiv.org/abs/2101.04061"  # the arXiv adapter asks ARXIV_API_URL (recorded)
ARXIV_2 = "https://arxiv.org/abs/2103.17249"
GITHUB = "https://github.com/celery/celery"  # GITHUB_API_URL (recorded)
GITHUB_2 = "https://github.com/encode/httpx"
GITHUB_3 = "https://github.com/rushter/selectolax"
PAGE_ID = "toc-missing"  # hakibenita.com/sql-anomaly-detection, served at /pages/<id>


@pytest.fixture(scope="module")
def web():
    with serve_recorded() as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fake_slack, web):
    tmp = tmp_path_factory.mktemp("e2e")
    with running_stack(
        tmp, fake_slack, LLM_MODEL="offline/extractive", **web.settings_overrides()
    ) as s:
        yield s


@pytest.fixture(autouse=True)
def _clean(fake_slack):
    fake_slack.reset()


@pytest.fixture(scope="module")
def mlflow_runs(stack):
    """The workers' MLflow store (local sqlite under the stack's STATE_DIR), read directly."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{stack.tmp / 'state' / 'mlflow.db'}")


def assert_parent_run_reached_every_stage(record, mlflow_runs) -> None:
    """A real parent run id, the same in every stage's headers (each task's own record), and
    it is the run `job-<id>` of this attempt in MLflow."""
    assert record.parent_run_id
    seen = [record.seen[stage]["headers"] for stage in STAGES]
    assert {h.get(HEADER_PARENT_RUN_ID) for h in seen} == {record.parent_run_id}
    run = mlflow_runs.get_run(record.parent_run_id)
    assert run.data.tags["mlflow.runName"] == f"job-{record.job_id}"
    assert run.data.tags["job_id"] == record.job_id and run.data.tags["run_kind"] == "job"
    trace_id = record.headers[HEADER_TRACEPARENT].split("-")[1]
    assert run.data.tags["ts_run_key"] == trace_id  # this attempt's parent, not another's


def _jobs_of_message(stack, ts: str) -> list:
    records = []
    for key in stack.store.r.scan_iter("ts:job:*"):
        record = stack.store.get(key.split(":", 2)[2], with_seen=True)
        if record and record.job.message_ts == ts:
            records.append(record)
    return records


def _wait_message_done(stack, ts: str, n: int, timeout: float = 120) -> list:
    def done():
        records = _jobs_of_message(stack, ts)
        finished = len(records) == n and all(r.status != JobStatus.queued for r in records)
        return records if finished and all(r.status in FINAL_STATUSES for r in records) else None

    try:
        return wait_until(done, timeout, f"{n} jobs of message {ts}", 0.2)
    except TimeoutError:
        ids = [r.job_id for r in _jobs_of_message(stack, ts)]
        raise AssertionError(stack.diagnostics(ids)) from None


def test_two_links_two_replies_every_stage_saw_the_parent_run(stack, fake_slack, mlflow_runs):
    event = message_event(
        f"Two for you: <{ARXIV}> and <{GITHUB}|celery>", event_id="EvE2E1", ts="500.1"
    )
    resp = post_event(stack.ingest.url, event)  # ack latency: bench/ingest_ack.py
    assert resp.status_code == 200 and len(resp.json()["jobs"]) == 2
    records = _wait_message_done(stack, "500.1", 2)
    replies = [p for p in fake_slack.posts() if p.get("thread_ts") == "500.1"]
    assert {r.status for r in records} == {JobStatus.posted}, [p["text"] for p in replies]
    assert len(replies) == 2
    assert {r.reply_ts for r in records} == {r.reply_ts for r in records if r.reply_ts}
    for record in records:
        assert set(record.seen) == set(STAGES)
        seen = [record.seen[stage]["headers"] for stage in STAGES]
        # the trace context and job id reached every stage (each task's own record)
        assert {h.get(HEADER_TRACEPARENT) for h in seen} == {record.headers[HEADER_TRACEPARENT]}
        assert {h.get(HEADER_JOB_ID) for h in seen} == {record.job_id}
        assert_parent_run_reached_every_stage(record, mlflow_runs)
    texts = " ".join(json.dumps(r.get("blocks")) + r["text"] for r in replies)
    assert "2101.04061" in texts or "GFP" in texts
    assert fake_slack.reactions[(CHANNEL, "500.1")] == {"white_check_mark"}


def test_slack_retries_and_duplicates_make_one_job_and_one_reply_per_link(stack, fake_slack, web):
    event = message_event(
        f"<{web.page_url(PAGE_ID)}> and <{ARXIV_2}>", event_id="EvE2E2", ts="501.1"
    )
    variants = [{}, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}, {}]
    variants += [{"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_error"}, {}, {}]
    with ThreadPoolExecutor(len(variants)) as pool:
        statuses = list(
            pool.map(lambda h: post_event(stack.ingest.url, event, **h).status_code, variants)
        )
    assert statuses == [200] * len(variants)
    records = _wait_message_done(stack, "501.1", 2)
    assert len(records) == 2
    time.sleep(1)  # a late duplicate would show up now
    replies = [p for p in fake_slack.posts() if p.get("thread_ts") == "501.1"]
    assert len(replies) == 2


@pytest.mark.parametrize(
    ("make_headers", "status"),
    [
        (lambda body: signed_headers(body, secret="forged"), 401),
        (lambda body: signed_headers(body, timestamp=int(time.time()) - 600), 401),
        (lambda body: {"Content-Type": "application/json"}, 401),
    ],
    ids=["forged", "stale", "unsigned"],
)
def test_unverified_requests_are_refused_by_the_server(stack, make_headers, status):
    body = json.dumps(message_event(f"<{ARXIV}>", event_id="EvBad", ts="502.1")).encode()
    resp = httpx.post(stack.ingest.url + "/slack/events", content=body, headers=make_headers(body))
    assert resp.status_code == status
    assert _jobs_of_message(stack, "502.1") == []
    assert not stack.store.r.exists("ts:event:EvBad")


def test_malformed_and_foreign_requests(stack):
    body = b"{not json"
    resp = httpx.post(
        stack.ingest.url + "/slack/events", content=body, headers=signed_headers(body)
    )
    assert resp.status_code == 400
    other = message_event(f"<{ARXIV}>", event_id="EvOther", ts="503.1", channel="C0NOTOURS")
    assert post_event(stack.ingest.url, other).status_code == 200
    time.sleep(0.5)
    assert _jobs_of_message(stack, "503.1") == []


def test_reprocess_with_celery_call_reruns_end_to_end(stack, fake_slack):
    event = message_event(f"<{GITHUB_2}>", event_id="EvE2E4", ts="504.1")
    post_event(stack.ingest.url, event)
    [first] = _wait_message_done(stack, "504.1", 1)
    assert first.status == JobStatus.posted
    out = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks", "call", "technoshare.reprocess",
         "--args", json.dumps([first.job_id])],
        env=stack.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr

    def second_done():
        r = stack.store.require(first.job_id, with_seen=True)
        return r if r.attempt == 2 and r.status in ("posted", "gate_failed", "failed") else None

    second = wait_until(second_done, 120, "the reprocessed job")
    assert second.status == JobStatus.posted, second.last_error
    assert second.reprocess_of == first.parent_run_id
    assert second.headers[HEADER_TRACEPARENT] != first.headers[HEADER_TRACEPARENT]  # a new trace
    for stage in STAGES:
        seen = second.seen[stage]
        assert seen["attempt"] == 2
        assert seen["headers"][HEADER_TRACEPARENT] == second.headers[HEADER_TRACEPARENT], stage
    replies = [p for p in fake_slack.posts() if p.get("thread_ts") == "504.1"]
    assert len(replies) == 2 and second.replies[1] != second.replies[2]


def test_every_stage_and_the_reprocess_see_a_real_parent_run_id(stack, fake_slack, mlflow_runs):
    event = message_event(f"<{GITHUB_3}>", event_id="EvE2E5", ts="505.1")
    post_event(stack.ingest.url, event)
    [first] = _wait_message_done(stack, "505.1", 1)
    assert_parent_run_reached_every_stage(first, mlflow_runs)
    stack.celery.send_task("technoshare.reprocess", args=[first.job_id])
    second = wait_until(
        lambda: (
            (r := stack.store.require(first.job_id, with_seen=True)).attempt == 2
            and r.status in FINAL_STATUSES
            and r
        ),
        120,
        "the reprocessed job",
    )
    assert second.reprocess_of == first.parent_run_id
    assert second.parent_run_id != first.parent_run_id
    assert_parent_run_reached_every_stage(second, mlflow_runs)
    # the new parent run is linked to the one it re-runs
    assert (
        mlflow_runs.get_run(second.parent_run_id).data.tags["reprocess_of"] == first.parent_run_id
    )
