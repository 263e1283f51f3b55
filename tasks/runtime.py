"""Per-process resources of a worker: settings, the job store, the Slack sink.

Created lazily on first use, after the prefork pool has forked, so no Redis connection or
socket is shared between processes; ``worker_process_init`` drops anything inherited anyway.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery.signals import worker_process_init

from pipeline.settings import Settings, get_settings, reset_settings_cache
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


def reset() -> None:
    reset_settings_cache()
    store.cache_clear()
    sink.cache_clear()


@worker_process_init.connect
def _fresh_after_fork(**_: Any) -> None:
    reset()
