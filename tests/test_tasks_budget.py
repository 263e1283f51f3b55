"""The daily LLM budget on the Celery path: the stage tasks run in this process (``task.apply``,
so the scripted priced model below is the one they call), spend is counted in a real
redis-server, retrieval reads the recorded web.

The scripted model answers like the offline one (valid, cited answers) but is priced
(``tests/support/llm.py``: CALL_COST per call), so spend and the switch are checkable exactly.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from observability import budget
from pipeline import offline_model
from pipeline.constants import HEADER_JOB_ID, LLM_SPEND_KEY
from pipeline.models import Job, SlackMessage
from services.job_store import JobStatus, JobStore
from tasks.entry import STAGES
from tasks.llm_budget import BUDGET_OFFLINE, with_budget_note
from tests.support.llm import CALL_COST, PRIMARY, reply, scripted_fixture  # noqa: F401
from tests.support.service import redis_server_fixture  # noqa: F401

BUDGET = 1.0  # USD
URL = "https://arxiv.org/abs/2101.04061"  # recorded


@pytest.fixture
def env(redis_server, tmp_path, monkeypatch) -> redis.Redis:
    from observability.runtime import reset_runtime
    from tasks import llm_budget, pipeline_calls, runtime

    values = {
        "REDIS_URL": redis_server.url,
        "LLM_MODEL": PRIMARY,
        "LLM_MAX_RETRIES": "1",
        "LLM_DAILY_BUDGET_USD": str(BUDGET),
        "FETCH_RECORDED": "true",
        "MLFLOW_ENABLE_TRACKING": "false",
        "SLACK_SINK": "file",
        "STATE_DIR": str(tmp_path / "state"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)

    def fresh() -> None:
        runtime.reset()
        pipeline_calls.reset()
        llm_budget._offline.clear()
        reset_runtime()

    fresh()
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()
    fresh()


def spent(client: redis.Redis) -> float:
    return budget.spent_today(redis=client)


def run_job(client: redis.Redis, n: int) -> dict[str, Any]:
    """One job through every stage task, each fed the previous one's result, as the chain does."""
    from tasks import stages

    job = Job(
        job_id=f"budget{n}", channel_id="C0SHARE", message_ts=f"1700000300.00010{n}",
        url=URL, canonical_url=URL, message_text=f"<{URL}>",
    )  # fmt: skip
    assert JobStore(client).create(job)
    carry: dict[str, Any] = {"attempt": 1}
    for name in STAGES:
        task = getattr(stages, name)
        carry = task.apply(args=(carry, job.job_id), headers={HEADER_JOB_ID: job.job_id}).get()
    assert JobStore(client).require(job.job_id).status in (JobStatus.posted, JobStatus.gate_failed)
    return carry


def note_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        b
        for b in message["blocks"]
        if b["type"] == "context" and budget.BUDGET_NOTE in b["elements"][0]["text"]
    ]


def test_spend_is_counted_and_a_spent_budget_switches_jobs_to_the_offline_model(env, scripted):
    scripted.script(PRIMARY, *[reply(offline_model.answer) for _ in range(12)])

    # 1. under budget: both LLM stages on the priced model, each call counted
    first = run_job(env, 1)
    paid_calls = len(scripted.received)
    assert paid_calls >= 2
    assert first["facts"]["usage"]["model"] == PRIMARY
    assert first["commentary"]["usage"]["model"] == PRIMARY
    assert spent(env) == pytest.approx(paid_calls * CALL_COST)
    assert first[BUDGET_OFFLINE] is False
    assert budget.BUDGET_NOTE not in first["message"]["text"] and not note_blocks(first["message"])

    # 2. half a call short of the budget: stage_a still pays and spends it, stage_b goes offline
    env.set(LLM_SPEND_KEY.format(day=budget._today()), BUDGET - CALL_COST / 2)
    second = run_job(env, 2)
    stage_a_calls = len(scripted.received) - paid_calls
    assert stage_a_calls >= 1
    assert second["facts"]["usage"]["model"] == PRIMARY
    assert second["commentary"]["usage"]["model"] == offline_model.MODEL
    assert second["commentary"]["extractive"] is True
    assert spent(env) == pytest.approx(BUDGET - CALL_COST / 2 + stage_a_calls * CALL_COST)
    assert second[BUDGET_OFFLINE] is True
    assert budget.BUDGET_NOTE in second["message"]["text"]
    [note] = note_blocks(second["message"])
    assert second["message"]["blocks"].index(note) == len(second["message"]["blocks"]) - 2

    # 3. budget spent before the job: no call to the priced model at all, nothing added
    before = (len(scripted.received), spent(env))
    third = run_job(env, 3)
    assert (len(scripted.received), spent(env)) == pytest.approx(before)
    assert third["facts"]["usage"]["model"] == offline_model.MODEL
    assert third["commentary"]["usage"]["model"] == offline_model.MODEL
    assert note_blocks(third["message"]) and budget.BUDGET_NOTE in third["message"]["text"]


def test_the_note_keeps_the_reply_within_slacks_block_limit() -> None:
    def section(text: str) -> dict[str, Any]:
        return {"type": "section", "text": {"type": "mrkdwn", "text": text}}

    closing = {"type": "context", "elements": [{"type": "mrkdwn", "text": "Job: `j`"}]}
    blocks = [section("*Title*"), *[section(f"body {i}") for i in range(3)], closing]
    message = SlackMessage(channel="C1", text="Title\n\nbody", blocks=blocks)
    noted = with_budget_note(message, max_blocks=5)
    assert len(noted.blocks) == 5
    assert noted.blocks[0] == blocks[0] and noted.blocks[-1] == closing
    assert budget.BUDGET_NOTE in noted.blocks[-2]["elements"][0]["text"]
    assert noted.text.endswith(budget.BUDGET_NOTE)
