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
import math
from typing import Any

from celery import Celery, current_task
from celery.signals import before_task_publish
from kombu import Queue

from pipeline.constants import (
    PROPAGATED_HEADERS,
    QUEUE_IO,
    QUEUE_LLM,
    QUEUE_POST,
    QUEUES,
    START_JOB_TASK,
)
from pipeline.offline import apply_offline_defaults
from pipeline.settings import Settings, get_settings
from pipeline.stages import STAGES
from tasks import scheduled  # import-light: shared tasks and their beat schedule

log = logging.getLogger(__name__)
apply_offline_defaults()  # before any task module imports litellm or mlflow

TASK_MODULES = ("tasks.stages", "tasks.entry", "tasks.lifecycle")

# Task name -> queue. `io`: fetching, may be slow (remote sites); `llm`: model calls, concurrency
# sized on its own; `post`: posting to Slack, short and bounded: the reply, the failure note,
# and the starts (a repeat link's pointer is a post too). The stages' queues come from the table.
ROUTES: dict[str, str] = {
    START_JOB_TASK: QUEUE_POST,
    "technoshare.reprocess": QUEUE_POST,
    **{stage.task_name: stage.queue for stage in STAGES},
    **{
        stage.model_task_name: stage.model_queue
        for stage in STAGES
        if stage.model_task_name and stage.model_queue
    },  # fmt: skip
    "technoshare.job_failed": QUEUE_POST,
    "technoshare.replay_mlflow_outbox": QUEUE_IO,
    **scheduled.ROUTES,
}
OUTBOX_REPLAY_SECONDS = 60.0

# --- later stages first ---------------------------------------------------------------------
# Queues are FIFO: a burst of N jobs ran every stage_a before any stage_b, so no job finished
# until nearly the whole burst did (p50 = p95 = the burst). Within a queue the later stages get
# the higher priority, so a job that has started is carried through before the next one starts
# and the burst finishes job by job. kombu's Redis transport keeps one list per priority step,
# ``<queue>`` for step 0 (served first) and ``<queue>\x06\x16<step>`` for the others, and a
# worker pops them in step order; whoever counts or drains a queue reads them all (queue_keys).
PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's default steps, set explicitly so the keys are derived
PRIORITY_SEPARATOR = "\x06\x16"


def stage_tasks_on(queue: str) -> list[str]:
    """The stage tasks routed to ``queue``, in the table's order (a stage's model task counts
    where its stage stands)."""
    names: list[str] = []
    for stage in STAGES:
        names += [stage.task_name] if stage.queue == queue else []
        names += (
            [stage.model_task_name] if stage.model_task_name and stage.model_queue == queue else []
        )
    return names


def stage_priorities() -> dict[str, int]:
    """Task name -> priority: on each queue its last stage 0 (first served), the one before 3...
    Tasks that are not stages keep the default 0 (short ones: starts, notes, replays)."""
    out: dict[str, int] = {}
    for queue in QUEUES:
        for rank, name in enumerate(reversed(stage_tasks_on(queue))):
            out[name] = PRIORITY_STEPS[min(rank, len(PRIORITY_STEPS) - 1)]
    return out


STAGE_PRIORITIES = stage_priorities()


def queue_keys(queue: str) -> list[str]:
    """The Redis lists holding ``queue``'s messages, in the order a worker serves them."""
    return [queue] + [f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS[1:]]


def task_routes() -> dict[str, dict[str, Any]]:
    """Each task's queue, and the stages' priorities (a retry and the next link of a chain are
    routed again, so they keep them)."""
    routes: dict[str, dict[str, Any]] = {name: {"queue": queue} for name, queue in ROUTES.items()}
    for name, priority in STAGE_PRIORITIES.items():
        if priority:
            routes[name]["priority"] = priority
    return routes


# --- time limits and the visibility timeout -------------------------------------------------
FETCHES_PER_STAGE = 2  # an adapter reads at most two URLs (GitHub: the repository, its README)
SLACK_CALLS_PER_TASK = 4  # the reply or note, the reaction (remove, add), a permalink
TASK_MARGIN_SECONDS = 5  # parsing, Redis and MLflow bookkeeping around the bounded calls
VISIBILITY_MARGIN_SECONDS = 15  # kombu's restore poll, clock skew between nodes, the ack itself
MIN_RETRY_COUNTDOWN = 0.5
# Redis restarts (a failover, a blip of a few seconds) are waited out, not turned into a failed
# job: a publish (the next link of a chain, a retry, an error callback) is retried for ~25 s
# (0.5 + 1.5 + 2.5 + 7 x 3 s) instead of Celery's default 3 tries in 0.6 s.
PUBLISH_RETRY_POLICY = {"max_retries": 10, "interval_start": 0.5, "interval_step": 1.0,
                        "interval_max": 3.0}  # fmt: skip
PUBLISH_RETRY_SECONDS = sum(
    min(PUBLISH_RETRY_POLICY["interval_start"] + i * PUBLISH_RETRY_POLICY["interval_step"],
        PUBLISH_RETRY_POLICY["interval_max"])
    for i in range(int(PUBLISH_RETRY_POLICY["max_retries"]))
)  # fmt: skip
REDIS_SOCKET_TIMEOUT = 10.0  # above kombu's 1 s BRPOP: a dead connection is seen, not hung on
REDIS_CONNECT_TIMEOUT = 5.0


def queue_time_limits(settings: Settings) -> dict[str, int]:
    """Hard time limit (s) of the tasks of each queue, from what bounds their work.

    - io: a fetch stage makes at most ``FETCHES_PER_STAGE`` reads, each cut at
      ``FETCH_TOTAL_TIMEOUT`` by the fetcher's own deadline;
    - llm: a model call is cut at ``LLM_TIMEOUT`` per attempt, ``LLM_MAX_RETRIES`` + 1 attempts
      (a stage that needs more is retried as a task, or fails visibly);
    - post: ``SLACK_CALLS_PER_TASK`` Slack calls of ``SLACK_TIMEOUT`` each;
    each plus ``TASK_MARGIN_SECONDS``, and capped by ``TASK_TIME_LIMIT`` when it is set.
    """
    bounds = {
        QUEUE_IO: FETCHES_PER_STAGE * settings.fetch_total_timeout,
        QUEUE_LLM: settings.llm_timeout * (settings.llm_max_retries + 1),
        QUEUE_POST: SLACK_CALLS_PER_TASK * settings.slack_timeout,
    }
    limits = {queue: math.ceil(bound) + TASK_MARGIN_SECONDS for queue, bound in bounds.items()}
    if settings.task_time_limit:
        limits = {queue: min(limit, settings.task_time_limit) for queue, limit in limits.items()}
    return limits


def longest_time_limit(settings: Settings) -> int:
    return max(queue_time_limits(settings).values())


def visibility_timeout(settings: Settings) -> int:
    """Seconds a reserved message may stay unacknowledged before Redis hands it out again.

    With acks_late a message is unacked from delivery until the task ends, and a retry with a
    countdown is held by the worker until its ETA: the timeout must exceed both together, or a
    live worker's task runs twice. It is also how long a dead node's tasks wait before another
    worker runs them. The trade-off: short limits bring a dead node's work back sooner
    (longest limit 55 s + countdown 15 s + margin 15 s = 85 s by default) but cut a stage that
    needs longer (a slow model: raise ``LLM_TIMEOUT``, and recovery slows with it); an explicit
    ``CELERY_VISIBILITY_TIMEOUT`` wins (retry countdowns then shrink to fit under it).
    """
    if settings.celery_visibility_timeout:
        return settings.celery_visibility_timeout
    countdown = math.ceil(settings.task_retry_max_countdown)
    return longest_time_limit(settings) + countdown + VISIBILITY_MARGIN_SECONDS


def max_retry_countdown(settings: Settings) -> float:
    """The longest countdown a retry is scheduled with: ``TASK_RETRY_MAX_COUNTDOWN``, and never
    so long that the held retry plus its run outlive the visibility timeout (it would be handed
    out again and run twice). A longer Retry-After is retried sooner, within the task's retries."""
    room = visibility_timeout(settings) - longest_time_limit(settings) - VISIBILITY_MARGIN_SECONDS
    return max(MIN_RETRY_COUNTDOWN, min(float(settings.task_retry_max_countdown), float(room)))


def time_limit_annotations(settings: Settings) -> dict[str, dict[str, Any]]:
    limits = queue_time_limits(settings)
    return {
        name: {"time_limit": limits[queue], "soft_time_limit": max(1, limits[queue] - 2)}
        for name, queue in ROUTES.items()
        if name != scheduled.WEEKLY_EVAL  # its own limit, far longer, and acked on receipt
    }


def celery_config(settings: Settings) -> dict[str, Any]:
    transport = {
        "visibility_timeout": visibility_timeout(settings),
        # kombu restores a dead node's unacked messages only every ~100 s by default; check every
        # second so they come back seconds after the visibility timeout.
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
        "priority_steps": list(PRIORITY_STEPS),
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": 25,  # PING an idle connection: a restarted Redis is noticed
        # kombu's (re)connect of a publisher's channel: the same ~25 s as a publish
        **PUBLISH_RETRY_POLICY,
    }
    limit = longest_time_limit(settings)
    annotations: dict[str, dict[str, Any]] = time_limit_annotations(settings)
    # The weekly eval runs far longer than the visibility timeout: acked on receipt, it is
    # never handed out twice (a worker lost mid-eval skips one week's run, visibly).
    annotations[scheduled.WEEKLY_EVAL] = {"acks_late": False}
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.celery_result_url or settings.redis_url,
        "broker_transport_options": transport,
        "broker_connection_retry": True,
        # kombu also bounds a publisher's whole (re)connect by this (default 4 s): past the
        # publish retries, or the retry of a task that met a Redis restart gives up early
        "broker_connection_timeout": PUBLISH_RETRY_SECONDS + 5,
        "broker_connection_retry_on_startup": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        # Nothing reads a task's result (the job store is the record): none is written, and a
        # publisher does not subscribe to a result channel per message.
        "task_ignore_result": True,
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "result_backend_always_retry": True,  # error callbacks go through the backend
        "result_backend_max_retries": PUBLISH_RETRY_POLICY["max_retries"],
        "result_backend_base_sleep_between_retries_ms": 500,
        "result_backend_max_sleep_between_retries_ms": 3000,
        "redis_socket_timeout": REDIS_SOCKET_TIMEOUT,
        "redis_socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
        "redis_retry_on_timeout": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": limit,  # per task: time_limit_annotations
        "task_soft_time_limit": max(1, limit - 2),
        "result_expires": 24 * 3600,
        "task_default_queue": QUEUE_IO,
        "task_queues": tuple(Queue(name) for name in QUEUES),
        "task_routes": task_routes(),
        "task_track_started": True,
        "worker_send_task_events": settings.celery_task_events,  # Flower enables them anyway
        "task_send_sent_event": settings.celery_task_events,
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
        "task_annotations": annotations,
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
