"""Fetching never delays posting: with every io process stuck on a site that never answers, a
job whose reply is ready is posted at once, by the post worker (its own queue).

Real processes: redis-server, an io worker (prefork, 2 processes), a post worker, an llm worker
running the real pipeline with the offline model, the recorded web for the fast link, a local
server that accepts connections and never answers for the slow ones, fake Slack. The order is
forced, not timed: the fast job is fetched first and waits on the llm queue (no llm worker yet)
until both slow fetches hold both io processes; only then does the llm worker start.
"""

from __future__ import annotations

import pytest

from pipeline.constants import QUEUE_LLM
from services.job_store import FINAL_STATUSES
from services.recorded_web import serve_recorded
from tasks.app import queue_keys
from tests.support.raw_servers import SilentServer
from tests.support.service import Stack, wait_until

pytestmark = pytest.mark.e2e

FAST = "https://arxiv.org/abs/2101.04061"  # served by the recorded web (ARXIV_API_URL)
SLOW_FETCH_SECONDS = 240  # far beyond the wait for the fast reply: the slow ones stay stuck


def test_a_ready_reply_is_posted_while_every_io_process_is_stuck_fetching(tmp_path, fake_slack):
    fake_slack.reset()
    with serve_recorded() as web, SilentServer() as silent:
        overrides = web.settings_overrides()
        overrides["FETCH_ALLOW_HOSTS"] += f",127.0.0.1:{silent.port}"
        stack = Stack(
            tmp_path, fake_slack, LLM_MODEL="offline/extractive", MLFLOW_ENABLE_TRACKING="false",
            FETCH_TOTAL_TIMEOUT=str(SLOW_FETCH_SECONDS),
            FETCH_READ_TIMEOUT=str(SLOW_FETCH_SECONDS), **overrides,
        )  # fmt: skip
        try:
            stack.start_workers(roles=("io", "post"))  # no llm worker yet
            fast = stack.submit(FAST, ts="40.1")
            r = stack.store.r  # stage_a waits in one of the llm queue's priority lists
            wait_until(lambda: sum(r.llen(k) for k in queue_keys(QUEUE_LLM)) == 1, 60,
                       "the fast job fetched")  # fmt: skip

            slow = [stack.submit(f"http://127.0.0.1:{silent.port}/slow-{i}", ts=f"40.{i + 2}")
                    for i in range(2)]  # fmt: skip
            wait_until(lambda: silent.open_connections() >= 2, 60, "both io processes stuck")

            stack.start_worker("llm")
            record = stack.wait_final([fast], timeout=90)[fast]

            replies = [p for p in fake_slack.posts() if p.get("thread_ts") == "40.1"]
            assert len(replies) == 1, stack.diagnostics([fast, *slow])
            assert record.reply_ts == replies[0]["ts"]
            # ...and the slow ones were still fetching when it was posted
            assert silent.open_connections() == 2
            for job_id in slow:
                slow_record = stack.store.require(job_id, with_seen=True)
                assert slow_record.status not in FINAL_STATUSES, slow_record
                assert set(slow_record.seen) == {"fetch_evidence"}, slow_record.seen
        finally:
            stack.stop()
