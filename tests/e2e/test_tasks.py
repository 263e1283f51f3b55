"""The Celery chain on real processes: redis-server, an io worker (prefork) and an llm worker
(threads), fake Slack. The pipeline stages are deterministic stand-ins (tests/support/standins.py):
these tests are about delivery, retries, headers, idempotent posting and reprocessing.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.constants import HEADER_JOB_ID, HEADER_PARENT_RUN_ID
from pipeline.models import Commentary, GateReport, JobCarry, Review, SlackMessage
from pipeline.stages import STAGE_BY_NAME
from pipeline.stages import STAGE_NAMES as STAGES
from services.job_store import JobStatus
from tests.support.fake_slack import Failure
from tests.support.service import CHANNEL, Stack, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fake_slack):
    s = Stack(tmp_path_factory.mktemp("tasks"), fake_slack, TS_TEST_STANDINS="1")
    try:
        yield s.start_workers()
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _clean_slack(fake_slack):
    fake_slack.reset()


def replies_for(fake, job_id_ts: str) -> list[dict]:
    return [p for p in fake.posts() if p.get("thread_ts") == job_id_ts]


def test_chain_posts_once_and_every_stage_saw_the_parent_run(stack, fake_slack):
    job_id = stack.submit("https://example.com/ok", ts="10.1")
    record = stack.wait_final([job_id])[job_id]
    assert record.status == JobStatus.posted and record.attempt == 1
    assert record.parent_run_id
    assert set(record.seen) == set(STAGES)
    for stage in STAGES:
        seen = record.seen[stage]
        assert seen["headers"][HEADER_PARENT_RUN_ID] == record.parent_run_id, stage
        assert seen["headers"][HEADER_JOB_ID] == job_id, stage
        assert seen["attempt"] == 1
    [reply] = replies_for(fake_slack, "10.1")
    assert reply["channel"] == CHANNEL and "example.com/ok" in reply["text"]
    assert record.reply_ts and record.replies == {1: record.reply_ts}
    assert fake_slack.reactions[(CHANNEL, "10.1")] == {"white_check_mark"}
    # gates that need no model ran on the post queue, not in an llm slot
    assert record.seen["quality_gates"]["task"] == "technoshare.quality_gates"


def test_gates_that_call_the_model_are_handed_to_the_llm_queue_with_the_chain(stack, fake_slack):
    """The hand-over keeps the job whole: the llm worker runs the gates with the same headers,
    the rest of the chain follows, one reply."""
    job_id = stack.submit("https://example.com/needs-repair", ts="10.2")
    record = stack.wait_final([job_id])[job_id]
    assert record.status == JobStatus.posted and record.attempt == 1
    gates = record.seen["quality_gates"]
    assert gates["task"] == "technoshare.quality_gates.model"
    assert gates["headers"][HEADER_PARENT_RUN_ID] == record.parent_run_id
    assert record.seen["slack_post"]["headers"][HEADER_JOB_ID] == job_id
    assert len(replies_for(fake_slack, "10.2")) == 1


def test_retryable_error_is_retried_with_headers(stack, fake_slack):
    job_id = stack.submit("https://example.com/flaky", ts="11.1")
    record = stack.wait_final([job_id])[job_id]
    assert record.status == JobStatus.posted
    fetch = record.seen["fetch_evidence"]
    assert fetch["retries"] == 1  # the retry ran, and still carried the headers
    assert fetch["headers"][HEADER_PARENT_RUN_ID] == record.parent_run_id
    assert len(replies_for(fake_slack, "11.1")) == 1


def test_terminal_error_fails_the_job_with_one_short_note(stack, fake_slack):
    job_id = stack.submit("https://example.com/fail", ts="12.1")
    record = stack.wait_final([job_id])[job_id]
    assert record.status == JobStatus.failed
    assert "SourceUnavailableError" in record.last_error
    assert "stage_a" not in record.seen  # terminal: no retry, the chain stopped
    assert record.seen["fetch_evidence"]["retries"] == 0
    [note] = replies_for(fake_slack, "12.1")
    assert "could not be read" in note["text"]
    assert fake_slack.reactions[(CHANNEL, "12.1")] == {"warning"}


def test_slack_429_is_retried_after_retry_after_and_posts_once(stack, fake_slack):
    fake_slack.fail_next(
        "chat.postMessage", Failure(status=429, error="ratelimited", headers={"Retry-After": "1"})
    )
    fake_slack.fail_next("chat.postMessage", Failure(status=503))
    job_id = stack.submit("https://example.com/limited", ts="13.1")
    record = stack.wait_final([job_id])[job_id]
    assert record.status == JobStatus.posted
    assert record.seen["slack_post"]["retries"] == 2
    assert len(fake_slack.calls_of("chat.postMessage:failed")) == 2
    assert len(replies_for(fake_slack, "13.1")) == 1


def test_invalid_auth_fails_at_once_with_a_clear_error(stack, fake_slack):
    fake_slack.fail_next("chat.postMessage", Failure(error="invalid_auth"), times=2)
    job_id = stack.submit("https://example.com/auth", ts="14.1")
    record = stack.wait_final([job_id])[job_id]
    assert record.status == JobStatus.failed
    assert "SlackAuthError" in record.last_error and "invalid_auth" in record.last_error
    assert record.seen["slack_post"]["retries"] == 0
    # the post, then the failure note (which cannot be posted either): no retries
    assert len(fake_slack.calls_of("chat.postMessage:failed")) == 2
    assert fake_slack.posts() == []


def test_redelivered_post_does_not_post_twice(stack, fake_slack):
    job_id = stack.submit("https://example.com/once", ts="15.1")
    stack.wait_final([job_id])
    message = SlackMessage(channel=CHANNEL, thread_ts="15.1", text="again")
    draft = Commentary(tldr=["one"], summary="A summary.", projects=[])
    review = Review(commentary=draft, report=GateReport(), message=message)
    carry = JobCarry(job=stack.store.require(job_id).job, review=review).model_dump(mode="json")
    post = STAGE_BY_NAME["slack_post"].task_name
    sent = [stack.celery.send_task(post, args=[carry]).id for _ in range(3)]
    stack.wait_idle()  # no task result is kept: the broker shows when all three have run
    seen = stack.store.require(job_id, with_seen=True).seen
    assert seen["slack_post"]["task_id"] in sent  # they did run
    assert len(replies_for(fake_slack, "15.1")) == 1
    assert stack.store.require(job_id).status == JobStatus.posted


def test_same_link_in_the_channel_within_the_window_links_the_earlier_thread(stack, fake_slack):
    first = stack.submit("https://example.com/repeat", ts="16.1")
    stack.wait_final([first])
    second = stack.submit("https://example.com/repeat", ts="16.2")
    record = stack.wait_final([second])[second]
    assert record.status == JobStatus.duplicate and record.duplicate_of == first
    [note] = replies_for(fake_slack, "16.2")
    earlier_ts = stack.store.require(first).reply_ts.replace(".", "")
    assert f"/archives/{CHANNEL}/p{earlier_ts}" in note["text"]
    assert "stage_a" not in record.seen  # not analysed again


def test_reprocess_from_the_celery_cli_reruns_in_the_same_thread(stack, fake_slack):
    job_id = stack.submit("https://example.com/again", ts="17.1")
    before = stack.wait_final([job_id])[job_id]
    out = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks", "call", "technoshare.reprocess",
         "--args", f'["{job_id}"]'],
        env=stack.env, capture_output=True, text=True, timeout=60, cwd=stack.tmp.parent,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr

    def second_attempt_done():
        r = stack.store.require(job_id, with_seen=True)
        return r if r.attempt == 2 and r.status == JobStatus.posted else None

    after = wait_until(second_attempt_done, 60, "the reprocess")
    assert after.reprocess_of == before.parent_run_id
    assert after.parent_run_id and after.parent_run_id != before.parent_run_id
    assert all(after.seen[s]["attempt"] == 2 for s in STAGES)
    assert all(
        after.seen[s]["headers"][HEADER_PARENT_RUN_ID] == after.parent_run_id for s in STAGES
    )
    replies = replies_for(fake_slack, "17.1")
    assert len(replies) == 2 and after.replies[1] != after.replies[2]


def test_technoshare_reprocess_cli_waits_for_the_new_attempt(stack, fake_slack):
    job_id = stack.submit("https://example.com/cli", ts="18.1")
    stack.wait_final([job_id])
    cli = [sys.executable, "-m", "services.cli", "reprocess"]
    out = subprocess.run(
        [*cli, job_id, "--wait", "60"], env=stack.env, capture_output=True, text=True, timeout=90
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "attempt 2" in out.stdout and "posted" in out.stdout
    assert stack.store.require(job_id).attempt == 2
    assert len(replies_for(fake_slack, "18.1")) == 2
    missing = subprocess.run(
        [*cli, "no-such-job"], env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1 and "no job 'no-such-job'" in missing.stderr
