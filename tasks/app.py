"""The Celery app (``celery -A tasks worker``) and header propagation.

This module stays light (celery, kombu, settings, constants): the ingest process imports it to
``send_task`` by name and must never pull in the stage code, mlflow or litellm. The task modules
are listed in ``include`` so only a worker imports them.

Header propagation lives here, next to the app, because it must be connected in every process
that publishes: a ``before_task_publish`` handler copies the propagated keys (parent MLflow run
id, trace context, job id) from the task currently executing into every message it publishes
(the next link of a chain, a retry, a task spawned inside it), unless the publisher set them.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, current_task
from celery.signals import before_task_publish
from kombu import Queue

from pipeline.constants import PROPAGATED_HEADERS, QUEUE_IO, QUEUE_LLM, START_JOB_TASK
from pipeline.offline import apply_offline_defaults
from pipeline.settings import Settings, get_settings
from pipeline.stages import STAGES
from tasks import scheduled  # import-light: shared tasks and their beat schedule

log = logging.getLogger(__name__)
apply_offline_defaults()  # before any task module imports litellm or mlflow

TASK_MODULES = ("tasks.stages", "tasks.entry", "tasks.lifecycle")

# Task name -> queue. `io`: network-bound, cheap; `llm`: model calls, concurrency sized on its own.
# The stages' queues come from the stage table.
ROUTES: dict[str, str] = {
    START_JOB_TASK: QUEUE_IO,
    "technoshare.reprocess": QUEUE_IO,
    **{stage.task_name: stage.queue for stage in STAGES},
    "technoshare.job_failed": QUEUE_IO,
    "technoshare.replay_mlflow_outbox": QUEUE_IO,
    **scheduled.ROUTES,
}
OUTBOX_REPLAY_SECONDS = 60.0


def visibility_timeout(settings: Settings) -> int:
    """Seconds a reserved message may stay unacknowledged before Redis hands it out again.

    With acks_late a message is unacked from delivery until the task ends, and a retry with a
    countdown is held by the worker until its ETA: the timeout must exceed both together, or
    the task runs twice.
    """
    if settings.celery_visibility_timeout:
        return settings.celery_visibility_timeout
    return settings.task_time_limit + settings.task_retry_max_countdown + 60


def celery_config(settings: Settings) -> dict[str, Any]:
    transport = {
        "visibility_timeout": visibility_timeout(settings),
        # kombu restores a dead node's unacked messages only every ~100 s by default; check every
        # second so they come back seconds after the visibility timeout.
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.celery_result_url or settings.redis_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": max(1, settings.task_time_limit - 15),
        "result_expires": 24 * 3600,
        "task_default_queue": QUEUE_IO,
        "task_queues": (Queue(QUEUE_IO), Queue(QUEUE_LLM)),
        "task_routes": {name: {"queue": queue} for name, queue in ROUTES.items()},
        "task_track_started": True,
        "worker_send_task_events": True,  # Flower
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "include": list(TASK_MODULES),
        "beat_schedule": {
            "replay-mlflow-outbox": {
                "task": "technoshare.replay_mlflow_outbox",
                "schedule": OUTBOX_REPLAY_SECONDS,
                "options": {"expires": OUTBOX_REPLAY_SECONDS},  # a backlog of replays is useless
            },
            **scheduled.BEAT_SCHEDULE,
        },
        # The weekly eval runs far longer than the visibility timeout: acked on receipt, it is
        # never handed out twice (a worker lost mid-eval skips one week's run, visibly).
        "task_annotations": {scheduled.WEEKLY_EVAL: {"acks_late": False}},
    }


def create_app(settings: Settings | None = None) -> Celery:
    celery_app = Celery("technoshare")
    celery_app.conf.update(celery_config(settings or get_settings()))
    return celery_app


app = create_app()


@before_task_publish.connect
def propagate_headers(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Copy propagated headers from the executing task into the message being published."""
    if headers is None or not current_task:  # a Proxy: test truthiness, never `is not None`
        return
    request = current_task.request
    seen = getattr(request, "headers", None) or {}
    for key in PROPAGATED_HEADERS:
        if headers.get(key):
            continue
        value = request.get(key) or seen.get(key)
        if value:
            headers[key] = value
