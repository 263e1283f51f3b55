"""The daily LLM budget: spend per UTC day in Redis, checked before a job uses a paid model.

    record_spend(usd)        after each stage with LLM calls (``StageUsage.cost_usd``)
    budget_exhausted()       before a job starts its LLM stages: True -> use the offline model
                             (settings.llm_model = "offline/extractive") and say so in the reply
    spent_today()            for ``doctor`` and the reply's note

Without ``LLM_DAILY_BUDGET_USD`` there is no limit. Redis unreachable: spend cannot be counted
and the budget is treated as NOT exhausted (a Redis outage must not silently switch every
reply to the offline model); it is logged once per call site.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pipeline.constants import LLM_SPEND_KEY, LLM_SPEND_TTL_SECONDS

log = logging.getLogger("observability")

OFFLINE_MODEL = "offline/extractive"
BUDGET_NOTE = (
    "The daily LLM budget is spent: this reply was written by the offline extractive model."
)


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def _redis(redis: Any = None) -> Any:
    if redis is not None:
        return redis
    from observability.runtime import get_runtime

    return get_runtime().redis()


def record_spend(usd: float, *, redis: Any = None, day: str | None = None) -> float:
    """Add ``usd`` to today's spend; returns the new total (0.0 when Redis is away)."""
    if not usd or usd <= 0:
        return spent_today(redis=redis, day=day)
    key = LLM_SPEND_KEY.format(day=day or _today())
    try:
        client = _redis(redis)
        pipe = client.pipeline(transaction=False)
        pipe.incrbyfloat(key, float(usd))
        pipe.expire(key, LLM_SPEND_TTL_SECONDS)
        total, _ = pipe.execute()
        return float(total)
    except Exception as exc:
        log.warning("LLM spend of $%.6f not counted: Redis unavailable (%s)", usd, exc)
        return 0.0


def spent_today(*, redis: Any = None, day: str | None = None) -> float:
    try:
        value = _redis(redis).get(LLM_SPEND_KEY.format(day=day or _today()))
    except Exception as exc:
        log.warning("LLM spend unknown: Redis unavailable (%s)", exc)
        return 0.0
    return float(value or 0.0)


def budget_exhausted(*, redis: Any = None, budget_usd: float | None = None) -> bool:
    """True when a daily budget is set and today's spend has reached it."""
    if budget_usd is None:
        from pipeline.settings import get_settings

        budget_usd = get_settings().llm_daily_budget_usd
    if budget_usd is None:
        return False
    return spent_today(redis=redis) >= budget_usd
