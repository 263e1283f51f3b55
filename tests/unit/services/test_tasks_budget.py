"""The daily LLM budget as every driver applies it: ``pipeline.stages.advance`` (through
``services.runner.run_stage``, what each Celery stage task runs) with the workers' wiring, a
``services.budget.RedisBudget`` on a real redis-server, the idempotent poster on a file sink,
retrieval from the recorded web.

The scripted model answers like the offline one (valid, cited answers) but is priced
(``tests/support/llm.py``: CALL_COST per call), so spend and the switch are checkable exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from observability.recorder import NullRecorder, StageObservation
from pipeline import offline_model
from pipeline.constants import HEADER_JOB_ID, LLM_SPEND_KEY
from pipeline.deps import BUDGET_NOTE, OFFLINE_MODEL, StageDeps
from pipeline.models import Job, JobCarry, SlackMessage
from pipeline.settings import Settings
from pipeline.stages import STAGE_BY_NAME, STAGES, Stage, advance, with_budget_note
from services import budget
from services.budget import RedisBudget
from services.job_store import JobStore
from services.posting import IdempotentPoster
from services.runner import run_stage
from services.slack_client import FileSink
from services.wiring import build_deps
from tests.support.llm import CALL_COST, PRIMARY, reply

BUDGET = 1.0  # USD
URL = "https://arxiv.org/abs/2101.04061"  # recorded


class TagRecorder(NullRecorder):
    """Records nothing anywhere, but keeps the tags each stage set: ``{(job, stage): tags}``."""

    def __init__(self) -> None:
        self.tags: dict[tuple[str, str], dict[str, str]] = {}

    @contextmanager
    def stage(self, stage: Stage, job: Job, headers: Mapping[str, str]) -> Iterator[Any]:
        obs = StageObservation(stage=stage)
        yield obs
        self.tags[(job.job_id, stage.name)] = dict(obs.tags)


@pytest.fixture
def client(redis_server) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def sink_file(tmp_path: Path) -> Path:
    return tmp_path / "slack_sink.jsonl"


@pytest.fixture
def deps(client: redis.Redis, sink_file: Path) -> Iterator[StageDeps]:
    """What ``tasks.runtime.worker_deps`` builds: idempotent poster, budget in Redis."""
    settings = Settings(
        llm_model=PRIMARY,
        llm_max_retries=1,
        llm_daily_budget_usd=BUDGET,
        mlflow_enable_tracking=False,
    )
    built = build_deps(
        settings,
        recorded=True,
        poster=IdempotentPoster(JobStore(client), FileSink(sink_file)),
        budget=RedisBudget(client, settings.llm_daily_budget_usd),
    )
    yield built
    built.close()


def spent(client: redis.Redis) -> float:
    return budget.spent_today(redis=client)


def make_job(n: int) -> Job:
    return Job(
        job_id=f"budget{n}", channel_id="C0SHARE", message_ts=f"1700000300.00010{n}",
        url=URL, canonical_url=URL, message_text=f"<{URL}>",
    )  # fmt: skip


def run_job(deps: StageDeps, recorder: TagRecorder, n: int) -> JobCarry:
    """One job through every stage, each fed the previous one's carry, as the chain does."""
    job = make_job(n)
    carry = JobCarry(job=job)
    for stage in STAGES:
        carry = run_stage(stage, carry, deps, {HEADER_JOB_ID: job.job_id}, recorder)
    assert carry.reply is not None and carry.reply.ts
    return carry


def posted(sink_file: Path, job_id: str) -> dict[str, Any]:
    """The message the file sink received for ``job_id`` (exactly one post)."""
    calls = [json.loads(line) for line in sink_file.read_text().splitlines()]
    [call] = [
        c
        for c in calls
        if c["method"] == "chat.postMessage" and (c["metadata"] or {}).get("job_id") == job_id
    ]
    return {key: call[key] for key in SlackMessage.model_fields}


def note_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        b
        for b in message["blocks"]
        if b["type"] == "context" and BUDGET_NOTE in b["elements"][0]["text"]
    ]


def budget_tags(recorder: TagRecorder, job: str) -> dict[str, str | None]:
    return {s.name: recorder.tags[(job, s.name)].get("llm_budget") for s in STAGES if s.uses_llm}


def test_spend_is_counted_and_a_spent_budget_switches_jobs_to_the_offline_model(
    client, deps, sink_file, scripted
):
    scripted.script(PRIMARY, *[reply(offline_model.answer) for _ in range(12)])
    recorder = TagRecorder()

    # 1. under budget: both LLM stages on the priced model, each call counted
    first = run_job(deps, recorder, 1)
    paid_calls = len(scripted.received)
    assert paid_calls >= 2
    assert first.need("facts").usage.model == PRIMARY
    assert first.need("commentary").usage.model == PRIMARY
    assert spent(client) == pytest.approx(paid_calls * CALL_COST)
    assert first.budget_offline is False
    message = posted(sink_file, "budget1")
    assert message == first.need("reply").message.model_dump(mode="json")
    assert BUDGET_NOTE not in message["text"] and not note_blocks(message)
    assert budget_tags(recorder, "budget1") == {
        "stage_a": None,
        "stage_b": None,
        "quality_gates": None,
    }

    # 2. half a call short of the budget: stage_a still pays and spends it, stage_b goes offline
    client.set(LLM_SPEND_KEY.format(day=budget._today()), BUDGET - CALL_COST / 2)
    second = run_job(deps, recorder, 2)
    stage_a_calls = len(scripted.received) - paid_calls
    assert stage_a_calls >= 1
    assert second.need("facts").usage.model == PRIMARY
    assert second.need("commentary").usage.model == offline_model.MODEL == OFFLINE_MODEL
    assert second.need("commentary").extractive is True
    assert spent(client) == pytest.approx(BUDGET - CALL_COST / 2 + stage_a_calls * CALL_COST)
    assert second.budget_offline is True
    message = posted(sink_file, "budget2")
    assert BUDGET_NOTE in message["text"]
    [note] = note_blocks(message)
    assert message["blocks"].index(note) == len(message["blocks"]) - 2
    assert budget_tags(recorder, "budget2") == {
        "stage_a": None,
        "stage_b": "spent",
        "quality_gates": "spent earlier",
    }

    # 3. budget spent before the job: no call to the priced model at all, nothing added
    before = (len(scripted.received), spent(client))
    third = run_job(deps, recorder, 3)
    assert (len(scripted.received), spent(client)) == pytest.approx(before)
    assert third.need("facts").usage.model == offline_model.MODEL
    assert third.need("commentary").usage.model == offline_model.MODEL
    assert third.budget_offline is True
    message = posted(sink_file, "budget3")
    assert note_blocks(message) and BUDGET_NOTE in message["text"]
    assert budget_tags(recorder, "budget3") == {
        "stage_a": "spent",
        "stage_b": "spent earlier",
        "quality_gates": "spent earlier",
    }


def test_advance_switches_the_next_llm_stage_once_the_budget_is_spent(client, deps, scripted):
    """``advance`` alone: the switch is made before the stage's first call, never after it."""
    scripted.script(PRIMARY, *[reply(offline_model.answer) for _ in range(4)])
    carry = advance(STAGE_BY_NAME["fetch_evidence"], JobCarry(job=make_job(4)), deps)
    assert carry.evidence is not None and carry.budget_offline is False

    carry = advance(STAGE_BY_NAME["stage_a"], carry, deps)
    calls = len(scripted.received)
    assert calls >= 1 and carry.need("facts").usage.model == PRIMARY
    assert spent(client) == pytest.approx(calls * CALL_COST) and carry.budget_offline is False

    client.set(LLM_SPEND_KEY.format(day=budget._today()), BUDGET)  # spent, exactly
    carry = advance(STAGE_BY_NAME["stage_b"], carry, deps)
    assert len(scripted.received) == calls  # not one more call to the priced model
    assert carry.budget_offline is True
    assert carry.need("commentary").usage.model == OFFLINE_MODEL
    assert spent(client) == pytest.approx(BUDGET)  # the offline model costs nothing

    client.delete(LLM_SPEND_KEY.format(day=budget._today()))  # budget back: the job stays offline
    carry = advance(STAGE_BY_NAME["quality_gates"], carry, deps)
    assert len(scripted.received) == calls and carry.budget_offline is True
    assert BUDGET_NOTE in carry.need("review").message.text
    assert note_blocks(carry.need("review").message.model_dump(mode="json"))


def test_the_note_keeps_the_reply_within_slacks_block_limit() -> None:
    def section(text: str) -> dict[str, Any]:
        return {"type": "section", "text": {"type": "mrkdwn", "text": text}}

    closing = {"type": "context", "elements": [{"type": "mrkdwn", "text": "Job: `j`"}]}
    blocks = [section("*Title*"), *[section(f"body {i}") for i in range(3)], closing]
    message = SlackMessage(channel="C1", text="Title\n\nbody", blocks=blocks)
    noted = with_budget_note(message, max_blocks=5)
    assert len(noted.blocks) == 5
    assert noted.blocks[0] == blocks[0] and noted.blocks[-1] == closing
    assert BUDGET_NOTE in noted.blocks[-2]["elements"][0]["text"]
    assert noted.text.endswith(BUDGET_NOTE)
    assert noted.blocks[1:3] == blocks[1:3]  # the body gave way from its end
