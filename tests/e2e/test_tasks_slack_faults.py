"""Slack faults on the real chain (redis-server, io + llm workers, fake Slack, stage stand-ins):
a post accepted whose connection drops, a post answered past the client timeout, Slack
answering 5xx throughout, and the same link twice within a second. For each: how many
replies each job got (once, twice, never) and the job's final record.
"""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.models import Job
from services.job_store import JobStatus
from tests.support.fake_slack import Failure
from tests.support.service import CHANNEL, Stack

pytestmark = pytest.mark.e2e

OPS = "COPS"
# Short client timeout and retry countdowns: the scenarios last seconds, not minutes.
ENV = {
    "TS_TEST_STANDINS": "1",
    "SLACK_TIMEOUT": "1",
    "TASK_MAX_RETRIES": "3",
    "TASK_RETRY_MAX_COUNTDOWN": "1",
    "SLACK_OPS_CHANNEL": OPS,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fake_slack):
    s = Stack(tmp_path_factory.mktemp("slack-faults"), fake_slack, **ENV)
    try:
        yield s.start_workers()
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _clean_slack(fake_slack):
    fake_slack.reset()


def posts_per_job(fake, job_ids: list[str]) -> dict[str, int]:
    """Accepted posts carrying each job's reply metadata: 1 = once, 2 = twice, 0 = lost."""
    counts = Counter(
        (p.get("metadata") or {}).get("event_payload", {}).get("job_id") for p in fake.posts()
    )
    return {j: counts[j] for j in job_ids}


def submit_slash(stack: Stack, url: str, key: str) -> str:
    """A slash command's job: no message, the reply goes to the channel (no thread)."""
    job = Job(
        job_id=Job.make_id(CHANNEL, key, url), channel_id=CHANNEL, message_ts="", thread_ts=None,
        url=url, canonical_url=url, message_text=url,
    )  # fmt: skip
    assert stack.store.create(job)
    stack.celery.send_task("technoshare.start_job", args=[job.job_id])
    return job.job_id


def assert_each_posted_once(stack: Stack, fake, jobs: list[str]) -> None:
    records = stack.wait_final(jobs, timeout=90)
    assert {r.status for r in records.values()} == {JobStatus.posted}, stack.diagnostics(jobs)
    counts = posts_per_job(fake, jobs)
    assert sorted(counts.values()) == [1] * len(jobs), counts  # 0 twice, 0 lost
    by_job = {p["metadata"]["event_payload"]["job_id"]: p["ts"] for p in fake.posts()}
    assert {j: r.replies[1] for j, r in records.items()} == by_job  # the ts found is recorded


def test_posts_accepted_then_dropped_are_posted_once(stack, fake_slack):
    fake_slack.fail_next("chat.postMessage", Failure(accept=True, drop=True), times=4)
    jobs = [stack.submit(f"https://example.com/drop-{i}", ts=f"30.{i}") for i in range(4)]
    assert_each_posted_once(stack, fake_slack, jobs)
    assert all(p["thread_ts"] for p in fake_slack.posts())
    assert len(fake_slack.calls_of("conversations.replies")) >= 4  # each retry looked first


def test_slash_command_replies_answered_past_the_timeout_are_posted_once(stack, fake_slack):
    fake_slack.fail_next("chat.postMessage", Failure(accept=True, hang=3), times=2)
    jobs = [submit_slash(stack, f"https://example.com/hang-{i}", f"slash-{i}") for i in range(2)]
    assert_each_posted_once(stack, fake_slack, jobs)
    assert not any(p.get("thread_ts") for p in fake_slack.posts())  # channel-level replies
    assert len(fake_slack.calls_of("conversations.history")) >= 2


def test_slack_answering_5xx_throughout_still_ends_the_job_failed(stack, fake_slack):
    for method in ("chat.postMessage", "conversations.replies", "reactions.add"):
        fake_slack.fail_next(method, Failure(status=503), times=100)
    job_id = stack.submit("https://example.com/down", ts="32.1")
    record = stack.wait_final([job_id], timeout=120)[job_id]
    assert record.status == JobStatus.failed, stack.diagnostics([job_id])
    assert record.last_error.startswith("SlackServerError") and record.reply_ts is None
    assert record.seen["slack_post"]["retries"] == 3  # TASK_MAX_RETRIES, then the callback
    assert posts_per_job(fake_slack, [job_id]) == {job_id: 0}  # never accepted: nothing posted
    attempted = fake_slack.calls_of("chat.postMessage:failed")
    assert [p for p in attempted if p["channel"] == OPS and job_id in p["text"]]  # ops alert
    assert {r["name"] for r in fake_slack.calls_of("reactions.add:failed")} >= {"warning"}
    logs = "".join(w.log() for w in stack.workers)
    [line] = [x for x in logs.splitlines() if f"job {job_id} failed (" in x]  # one line
    assert "failure note was not posted" in line


def test_the_same_link_twice_within_a_second_gets_one_commentary(stack, fake_slack):
    url = "https://example.com/twice"
    first = stack.submit(url, ts="33.1")
    second = stack.submit(url, ts="33.2")
    records = stack.wait_final([first, second])
    statuses = sorted(r.status for r in records.values())
    assert statuses == [JobStatus.duplicate, JobStatus.posted], stack.diagnostics([first, second])
    [answered] = [j for j, r in records.items() if r.status == JobStatus.posted]
    [dup] = [r for r in records.values() if r.status == JobStatus.duplicate]
    assert dup.duplicate_of == answered and "stage_a" not in dup.seen
    assert int(stack.store.r.get(f"test:stage_a_runs:{url}")) == 1  # one commentary
    thread = records[answered].job.reply_thread_ts.replace(".", "")
    [note] = [p for p in fake_slack.posts() if p["thread_ts"] == dup.job.reply_thread_ts]
    assert f"/archives/{CHANNEL}/p" in note["text"]
    assert thread in note["text"] or records[answered].reply_ts.replace(".", "") in note["text"]


def test_a_link_that_failed_can_be_tried_again(stack, fake_slack):
    url = "https://example.com/fail-then-again"
    first = stack.submit(url, ts="34.1")
    assert stack.wait_final([first])[first].status == JobStatus.failed
    again = stack.submit(url, ts="34.2")
    record = stack.wait_final([again])[again]
    assert record.status == JobStatus.failed and record.duplicate_of is None
    assert "fetch_evidence" in record.seen  # it ran, not answered as a duplicate
