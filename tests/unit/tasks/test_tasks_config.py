"""The Celery configuration the reliability story depends on (behaviour is tested with real
workers in test_tasks*.py; these catch a setting silently dropped)."""

from __future__ import annotations

import pytest

from pipeline.constants import QUEUE_IO, QUEUE_LLM
from pipeline.settings import Settings
from pipeline.stages import STAGE_NAMES, STAGES
from services.processes import free_port
from tasks.app import ROUTES, celery_config, visibility_timeout


def test_reliable_delivery_settings():
    settings = Settings(task_time_limit=300, task_retry_max_countdown=120)
    conf = celery_config(settings)
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    transport = conf["broker_transport_options"]
    # a retry countdown held by a worker plus the task's own run must fit in the timeout
    assert (
        transport["visibility_timeout"]
        > settings.task_time_limit + settings.task_retry_max_countdown
    )
    assert transport["unacked_restore_interval"] <= 5 and transport["unacked_restore_throttle"] <= 5
    assert visibility_timeout(Settings(celery_visibility_timeout=9)) == 9


def test_stage_routes_are_derived_from_the_stage_table_and_beat_replays_the_outbox():
    from tasks.app import app
    from tasks.stages import TASKS

    # every row of the table is a task of its own name, routed to its own queue
    assert [s.task_name for s in STAGES] == [f"technoshare.{name}" for name in STAGE_NAMES]
    assert {s.task_name: ROUTES[s.task_name] for s in STAGES} == {
        s.task_name: s.queue for s in STAGES
    }
    conf = celery_config(Settings())
    for stage in STAGES:
        assert conf["task_routes"][stage.task_name] == {"queue": stage.queue}
        assert TASKS[stage.name].name == stage.task_name
        assert stage.task_name in app.tasks
    # and the table puts the network-bound stages on io, the model calls on llm
    io = {s.name for s in STAGES if s.queue == QUEUE_IO}
    llm = {s.name for s in STAGES if s.queue == QUEUE_LLM}
    assert (io, llm) == ({"fetch_evidence", "slack_post"}, {"stage_a", "stage_b", "quality_gates"})
    assert {s.name for s in STAGES if s.uses_llm} == llm

    replay = "technoshare.replay_mlflow_outbox"
    assert replay in {e["task"] for e in conf["beat_schedule"].values()}
    assert ROUTES[replay] == QUEUE_IO
    from tasks import lifecycle

    assert lifecycle.replay_mlflow_outbox.name == replay and replay in app.tasks


def test_the_weekly_eval_longer_than_the_visibility_timeout_is_acked_on_receipt():
    from tasks import scheduled
    from tasks.app import app

    app.loader.import_default_modules()
    eval_task = app.tasks[scheduled.WEEKLY_EVAL]
    assert eval_task.time_limit > visibility_timeout(Settings())
    assert eval_task.acks_late is False
    assert app.tasks["technoshare.stage_a"].acks_late is True
    assert set(scheduled.BEAT_SCHEDULE) <= set(app.conf.beat_schedule)


@pytest.mark.parametrize("tracking", ["false", "true"])
def test_the_io_workers_fetch_stage_reads_a_link_without_the_llm_or_mlflow_stack(tracking):
    """fetch_evidence runs on the io queue with the io worker's own dependencies
    (``tasks.runtime.worker_deps``): it builds the fetcher only (litellm takes seconds to
    import, and an io worker must not pay that on its first job), whether tracking is on or
    not (the recorder, not the stage, is what brings mlflow in)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pipeline.models import Job, JobCarry\n"
        "from pipeline.stages import fetch_evidence\n"
        "from tasks.runtime import worker_deps\n"
        "u = 'https://arxiv.org/abs/2101.04061'\n"
        "deps = worker_deps()\n"
        "ev = fetch_evidence(JobCarry(job=Job(job_id='j', url=u, canonical_url=u)), deps)\n"
        "print(ev.adapter, ev.coverage.value, len(ev.snippets) > 0,\n"
        "      type(deps.poster).__name__, type(deps.budget).__name__,\n"
        "      sorted(m for m in ('litellm', 'mlflow') if m in sys.modules))\n"
    )
    env = {
        **os.environ,
        "FETCH_RECORDED": "true",
        "MLFLOW_ENABLE_TRACKING": tracking,
        "SLACK_SINK": "file",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # never connected to by a fetch
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[0].split(" ", 5) == [
        "ArxivAdapter", "partial", "True", "IdempotentPoster", "RedisBudget", "[]",
    ]  # fmt: skip
