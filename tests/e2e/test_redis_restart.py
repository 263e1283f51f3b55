"""Redis restarting mid-load is waited out: every job ends posted exactly once, none failed.

A real redis-server with AOF on is shut down for several seconds while ten jobs are in flight
(one inside slack_post between its reply and its final status, others in stage_a or queued), then started again on the same port with the same data
directory. The workers (io, llm, post), the job store inside the stages and every publish
between them meet the outage: stage tasks retry Redis connection errors, publishes retry for
~25 s. Stages are the deterministic stand-ins (tests/support/standins.py), stage_a slowed so
jobs are in flight when Redis goes.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest

from services.job_store import FINAL_STATUSES, JobStatus
from tests.support.fake_slack import Failure
from tests.support.service import CHANNEL, Stack, wait_until

pytestmark = pytest.mark.e2e

JOBS = 10
DOWN_SECONDS = 8.0


def _in_stage_a(stack: Stack, urls: list[str]) -> int:
    return sum(bool(stack.store.r.get(f"test:stage_a_runs:{u}")) for u in urls)


def _finished(stack: Stack, job_ids: list[str]) -> bool:
    return all(stack.store.require(j).status in FINAL_STATUSES for j in job_ids)


def test_jobs_in_flight_survive_a_redis_restart_posted_once_each(tmp_path, fake_slack):
    fake_slack.reset()
    stack = Stack(tmp_path, fake_slack, durable_redis=True, TS_TEST_STANDINS="1",
                  TS_TEST_SLOW_STAGE_A="1")  # fmt: skip
    try:
        stack.start_workers()
        urls = [f"https://example.com/blip-{i}" for i in range(JOBS)]
        # each job's final reaction is answered 2 s late: the first one to get there is inside
        # slack_post's finish (reply posted, status not yet written) when Redis goes
        fake_slack.fail_next("reactions.add", Failure(accept=True, hang=2.0), times=JOBS)
        jobs = [stack.submit(u, ts=f"50.{i}") for i, u in enumerate(urls)]
        wait_until(lambda: fake_slack.calls_of("reactions.add"), 60, "a job inside its finish")
        assert _in_stage_a(stack, urls) >= 2  # and others are in flight behind it

        stack.redis.restart(down_seconds=DOWN_SECONDS)

        with contextlib.suppress(TimeoutError):  # what did not finish is counted as lost
            wait_until(lambda: _finished(stack, jobs), 240, "every job to finish", 0.5)
        records = {j: stack.store.require(j) for j in jobs}
        posts = Counter(p["thread_ts"] for p in fake_slack.posts() if p["channel"] == CHANNEL)
        counts = {
            "submitted": len(jobs),
            "posted_once": sum(posts[r.job.reply_thread_ts] == 1 for r in records.values()),
            "posted_twice_or_more": sum(posts[r.job.reply_thread_ts] > 1 for r in records.values()),
            "failed": sum(r.status == JobStatus.failed for r in records.values()),
            "lost": sum(r.status not in FINAL_STATUSES for r in records.values()),
        }
        print(f"redis restart ({DOWN_SECONDS:.0f} s down): {counts}")
        expected = {"submitted": JOBS, "posted_once": JOBS, "posted_twice_or_more": 0,
                    "failed": 0, "lost": 0}  # fmt: skip
        assert counts == expected, stack.diagnostics(jobs)
        assert {r.status for r in records.values()} == {JobStatus.posted}
        assert _in_stage_a(stack, urls) == JOBS
    finally:
        stack.stop()
