"""The daily LLM budget: spend per UTC day in Redis, checked before each LLM stage.

    RedisBudget(redis, budget_usd)   the ``pipeline.deps.Budget`` of the Celery workers:
                                     ``spent()`` before an LLM stage (True: the job goes on with
                                     the offline model and says so), ``record(usage)`` after it
    record_spend(usd, redis=...)     add to today's spend
    spent_today(redis=...)           for ``doctor``

Without ``LLM_DAILY_BUDGET_USD`` there is no limit. Redis unreachable: spend cannot be counted
and the budget is treated as NOT exhausted (a Redis outage must not silently switch every
reply to the offline model); it is logged once per call site.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pipeline.constants import LLM_SPEND_KEY, LLM_SPEND_TTL_SECONDS
from pipeline.models import StageUsage

log = logging.getLogger(__name__)


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def record_spend(usd: float, *, redis: Any, day: str | None = None) -> float:
    """Add ``usd`` to today's spend; returns the new total (0.0 when Redis is away)."""
    if not usd or usd <= 0:
        return spent_today(redis=redis, day=day)
    key = LLM_SPEND_KEY.format(day=day or _today())
    try:
        client = redis
        pipe = client.pipeline(transaction=False)
        pipe.incrbyfloat(key, float(usd))
        pipe.expire(key, LLM_SPEND_TTL_SECONDS)
        total, _ = pipe.execute()
        return float(total)
    except Exception as exc:
        log.warning("LLM spend of $%.6f not counted: Redis unavailable (%s)", usd, exc)
        return 0.0


def spent_today(*, redis: Any, day: str | None = None) -> float:
    try:
        value = redis.get(LLM_SPEND_KEY.format(day=day or _today()))
    except Exception as exc:
        log.warning("LLM spend unknown: Redis unavailable (%s)", exc)
        return 0.0
    return float(value or 0.0)


def budget_exhausted(*, redis: Any, budget_usd: float | None) -> bool:
    """True when a daily budget is set and today's spend has reached it."""
    if budget_usd is None:
        return False
    return spent_today(redis=redis) >= budget_usd


class RedisBudget:
    def __init__(self, redis: Any, budget_usd: float | None) -> None:
        self.redis = redis
        self.budget_usd = budget_usd

    def spent(self) -> bool:
        return budget_exhausted(redis=self.redis, budget_usd=self.budget_usd)

    def record(self, usage: StageUsage) -> None:
        if usage.cost_usd > 0:
            record_spend(usage.cost_usd, redis=self.redis)
