"""Per-process resources of a worker: settings, the job store, the Slack sink, the stage
dependencies.

Created lazily on first use, after the prefork pool has forked, so no Redis connection or
socket is shared between processes; ``worker_process_init`` drops anything inherited anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from celery.signals import worker_process_init

from pipeline.deps import StageDeps
from pipeline.settings import Settings, get_settings, reset_settings_cache
from services.history_store import RedisHistory
from services.job_store import JobStore
from services.slack_client import SlackSink, make_sink


def settings() -> Settings:
    return get_settings()


@lru_cache(maxsize=1)
def store() -> JobStore:
    return JobStore.from_settings(settings())


@lru_cache(maxsize=1)
def sink() -> SlackSink:
    return make_sink(settings())


@lru_cache(maxsize=1)
def history() -> RedisHistory:
    return RedisHistory.from_settings(settings(), permalink=sink().permalink)


DepsFactory = Callable[[], StageDeps]
_deps_factory: DepsFactory | None = None


def set_deps_factory(factory: DepsFactory | None) -> None:
    """Build this process's stage dependencies with ``factory`` (a process embedding the
    workers, or a test with doubles); None: :func:`worker_deps`."""
    global _deps_factory
    _deps_factory = factory
    deps.cache_clear()


@lru_cache(maxsize=1)
def deps() -> StageDeps:
    return (_deps_factory or worker_deps)()


def worker_deps() -> StageDeps:
    """What every stage task of this process hands its stage: the same wiring as ``technoshare
    run`` plus, in Redis: the idempotent Slack poster, the daily LLM budget, the team's history,
    the evidence cache, and the LLM client's shared rate limit and answer cache."""
    from services.budget import RedisBudget
    from services.evidence_cache import RedisEvidenceCache
    from services.llm_limits import worker_llm_factory
    from services.posting import IdempotentPoster
    from services.wiring import build_deps

    s = settings()
    deps = build_deps(
        s,
        poster=IdempotentPoster(store(), sink()),
        budget=RedisBudget(store().r, s.llm_daily_budget_usd),
        history=history(),
        evidence_cache=RedisEvidenceCache.from_url(s.redis_url, s.evidence_cache_ttl_seconds),
    )
    deps.llm_factory = worker_llm_factory  # the shared rate limit and answer cache in Redis
    return deps


def reset() -> None:
    """Forget what was built (not closed: a thread of a threads pool may still use it)."""
    reset_settings_cache()
    store.cache_clear()
    sink.cache_clear()
    history.cache_clear()
    deps.cache_clear()


@worker_process_init.connect
def _fresh_after_fork(**_: Any) -> None:
    reset()
