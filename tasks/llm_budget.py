"""The daily LLM budget in the Celery path (``observability.budget`` keeps the count in Redis).

Before each LLM stage (stage_a, stage_b, the quality_gates repair) ``stage_settings`` decides
which model the stage uses: once today's spend has reached ``LLM_DAILY_BUDGET_USD``, the job
switches to the offline extractive model and stays on it for its remaining stages (the carry's
``BUDGET_OFFLINE`` flag), and its reply gets ``budget.BUDGET_NOTE`` as a context line. After
each LLM stage ``record_cost`` adds what its calls cost to today's spend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observability import budget
from pipeline.models import SlackMessage, StageUsage
from pipeline.settings import Settings
from tasks import runtime

BUDGET_OFFLINE = "budget_offline"  # carry key: this job runs on the offline model

_offline: list[tuple[Settings, Settings]] = []  # (worker settings, their offline copy)


def offline_settings(settings: Settings) -> Settings:
    """``settings`` with every stage on the offline model and no paid fallback (one copy per
    settings object, so the stage dependencies built for it are reused)."""
    if not _offline or _offline[0][0] is not settings:
        copy = settings.model_copy(
            update={
                "llm_model": budget.OFFLINE_MODEL,
                "llm_model_stage_a": None,
                "llm_model_stage_b": None,
                "llm_fallback_models": [],
            }
        )
        _offline[:] = [(settings, copy)]
    return _offline[0][1]


def budget_spent(settings: Settings) -> bool:
    if settings.llm_daily_budget_usd is None:
        return False
    return budget.budget_exhausted(
        redis=runtime.store().r, budget_usd=settings.llm_daily_budget_usd
    )


def stage_settings(settings: Settings, carry: Mapping[str, Any]) -> tuple[Settings, bool]:
    """(the settings this LLM stage runs with, whether that is the offline model because the
    budget is spent). Checked before every LLM stage; once offline, the job stays offline."""
    if carry.get(BUDGET_OFFLINE) or budget_spent(settings):
        return offline_settings(settings), True
    return settings, False


def record_cost(usage: StageUsage | None) -> None:
    """Add an LLM stage's cost to today's spend (nothing to add for free models)."""
    if usage is not None and usage.cost_usd > 0:
        budget.record_spend(usage.cost_usd, redis=runtime.store().r)


def with_budget_note(message: SlackMessage, max_blocks: int) -> SlackMessage:
    """The reply with ``BUDGET_NOTE`` as a context line, just above the closing context line
    (source, model, job); body blocks give way when the reply is at Slack's block limit."""
    note = {"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{budget.BUDGET_NOTE}_"}]}
    blocks = list(message.blocks)
    at = len(blocks) - 1 if blocks and blocks[-1].get("type") == "context" else len(blocks)
    blocks.insert(at, note)
    while len(blocks) > max_blocks and at > 1:  # keep the title (block 0)
        del blocks[at - 1]
        at -= 1
    text = f"{message.text}\n\n{budget.BUDGET_NOTE}" if message.text else budget.BUDGET_NOTE
    return message.model_copy(update={"blocks": blocks, "text": text})
