"""Crashes during stage_a: every job still ends posted, exactly once.

- a prefork pool child killed with SIGKILL: acks_late + reject_on_worker_lost requeue its task;
- a whole worker node killed with SIGKILL (threads pool): its unacked tasks come back once the
  visibility timeout (short here) has passed, thanks to kombu's unacked_restore_interval.

stage_a is slowed by the stand-in hook TS_TEST_SLOW_STAGE_A so there is time to kill.
"""

from __future__ import annotations

import os
import signal

import pytest

from services.job_store import JobStatus
from tests.support.service import CHANNEL, Stack, Worker, wait_until

pytestmark = pytest.mark.e2e


def _in_stage_a(stack: Stack, urls: list[str], n: int) -> bool:
    """n jobs are inside the stand-in stage_a body (it counts its runs, then sleeps)."""
    return sum(bool(stack.store.r.get(f"test:stage_a_runs:{u}")) for u in urls) >= n


def _assert_each_posted_once(stack: Stack, fake, job_ids: list[str], urls: list[str]) -> None:
    records = stack.wait_final(job_ids, timeout=90)
    assert {r.status for r in records.values()} == {JobStatus.posted}, stack.diagnostics(job_ids)
    threads = [r.job.reply_thread_ts for r in records.values()]
    posted = [p["thread_ts"] for p in fake.posts() if p["channel"] == CHANNEL]
    assert sorted(posted) == sorted(threads)  # one reply per job, none twice
    runs = [int(stack.store.r.get(f"test:stage_a_runs:{u}") or 0) for u in urls]
    assert sum(runs) > len(urls), "no stage_a was re-executed: the kill missed"


def test_killing_pool_children_during_stage_a(tmp_path, fake_slack):
    fake_slack.reset()
    stack = Stack(tmp_path, fake_slack, TS_TEST_STANDINS="1", TS_TEST_SLOW_STAGE_A="3")
    try:
        stack.start_workers(llm_pool="prefork", llm_concurrency=2)
        llm = stack.workers[1]
        urls = [f"https://example.com/child-{i}" for i in range(4)]
        jobs = [stack.submit(u, ts=f"20.{i}") for i, u in enumerate(urls)]
        wait_until(lambda: _in_stage_a(stack, urls, 2), 30, "two jobs in stage_a")
        children = llm.children()
        assert children
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        _assert_each_posted_once(stack, fake_slack, jobs, urls)
        assert llm.alive()
    finally:
        stack.stop()


def test_killing_a_whole_worker_node_during_stage_a(tmp_path, fake_slack):
    fake_slack.reset()
    env = {"TS_TEST_STANDINS": "1", "TS_TEST_SLOW_STAGE_A": "2", "CELERY_VISIBILITY_TIMEOUT": "6"}
    stack = Stack(tmp_path, fake_slack, **env)
    try:
        stack.start_workers(llm_pool="threads", llm_concurrency=2)
        node = stack.workers[1]
        urls = [f"https://example.com/node-{i}" for i in range(3)]
        jobs = [stack.submit(u, ts=f"21.{i}") for i, u in enumerate(urls)]
        wait_until(lambda: _in_stage_a(stack, urls, 2), 30, "two jobs in stage_a")
        os.killpg(node.pid, signal.SIGKILL)
        node.proc.wait(10)
        replacement = Worker("llm2", "llm", "threads", 2, stack.env, tmp_path).wait_ready()
        stack.workers.append(replacement)
        _assert_each_posted_once(stack, fake_slack, jobs, urls)
    finally:
        stack.stop()
