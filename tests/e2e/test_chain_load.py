"""What the chain costs Redis and in which order a burst drains, on real processes: redis-server,
io / post workers (prefork) and one llm worker (threads, one thread), fake Slack, the stage
stand-ins (tests/support/standins.py). bench/chain_throughput.py measures the same under load.
"""

from __future__ import annotations

import re

import pytest
import redis

from pipeline.constants import QUEUE_LLM
from pipeline.stages import STAGES
from services.job_store import JobStatus
from tasks.app import queue_keys
from tests.support.service import Stack, wait_until

pytestmark = pytest.mark.e2e

BURST = 4
LLM_STAGES = [stage.name for stage in STAGES if stage.queue == QUEUE_LLM]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fake_slack):
    s = Stack(tmp_path_factory.mktemp("load"), fake_slack, TS_TEST_STANDINS="1")
    try:
        yield s.start_workers(roles=("io", "post"))  # the llm worker: in the test
    finally:
        s.stop()


def commands(r: redis.Redis) -> dict[str, int]:
    """Calls per command since redis-server started."""
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}


def waiting(r: redis.Redis, queue: str) -> int:
    return sum(int(r.llen(key)) for key in queue_keys(queue))


def test_a_burst_is_carried_through_job_by_job_and_leaves_no_results(stack, fake_slack):
    r = stack.store.r
    before = commands(r)
    ids = [stack.submit(f"https://example.com/burst-{i}", ts=f"30.{i}") for i in range(BURST)]
    # Every job's stage_a waits before any llm worker runs: the order below is the brokers'.
    wait_until(lambda: waiting(r, QUEUE_LLM) == BURST, 60, "the burst's stage_a messages")
    llm = stack.start_worker("llm", llm_concurrency=1)
    records = stack.wait_final(ids)
    assert {rec.status for rec in records.values()} == {JobStatus.posted}

    # The single llm thread took the first job's later stages before the next job's stage_a:
    # with FIFO queues every stage_a ran before any stage_b (a burst finished all at once).
    ran = re.findall(r"Task technoshare\.(\w+)\[[^\]]+\] succeeded", llm.log())
    assert ran[: len(LLM_STAGES)] == LLM_STAGES, ran
    assert ran.index("stage_b") < ran.index("stage_a", 1), ran

    # Nobody reads a task's result: none is stored, nor is a result channel (SUBSCRIBE
    # celery-task-meta-<id>) subscribed to. (The llm worker starting in between PSUBSCRIBEs
    # to its remote-control channel: that is not a result.)
    assert not list(r.scan_iter("celery-task-meta-*"))
    subscribed = commands(r).get("subscribe", 0) - before.get("subscribe", 0)
    assert subscribed == 0
    assert not r.pubsub_channels("celery-task-meta-*")
