"""The Celery configuration the reliability story depends on (behaviour is tested with real
workers in test_tasks*.py; these catch a setting silently dropped)."""

from __future__ import annotations

from pipeline.settings import Settings
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


def test_stages_route_to_their_queues_and_beat_replays_the_outbox():
    assert {ROUTES[f"technoshare.{s}"] for s in ("fetch_evidence", "slack_post")} == {"io"}
    assert {ROUTES[f"technoshare.{s}"] for s in ("stage_a", "stage_b")} == {"llm"}
    conf = celery_config(Settings())
    assert "technoshare.replay_mlflow_outbox" in {e["task"] for e in conf["beat_schedule"].values()}
    import tasks.maintenance  # noqa: F401
    from tasks.app import app

    assert "technoshare.replay_mlflow_outbox" in app.tasks


def test_the_weekly_eval_longer_than_the_visibility_timeout_is_acked_on_receipt():
    from tasks import scheduled
    from tasks.app import app

    app.loader.import_default_modules()
    eval_task = app.tasks[scheduled.WEEKLY_EVAL]
    assert eval_task.time_limit > visibility_timeout(Settings())
    assert eval_task.acks_late is False
    assert app.tasks["technoshare.stage_a"].acks_late is True
    assert set(scheduled.BEAT_SCHEDULE) <= set(app.conf.beat_schedule)


def test_the_io_workers_fetch_stage_reads_a_link_without_the_llm_or_mlflow_stack():
    """fetch_evidence runs on the io queue: it builds the fetcher only (litellm takes seconds
    to import, and an io worker must not pay that on its first job)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tasks import pipeline_calls\n"
        "from pipeline.models import Job\n"
        "from pipeline.settings import get_settings\n"
        "u = 'https://arxiv.org/abs/2101.04061'\n"
        "ev = pipeline_calls.fetch_evidence(Job(job_id='j', url=u, canonical_url=u), get_settings())\n"
        "print(ev.adapter, sorted(m for m in ('litellm', 'mlflow') if m in sys.modules))\n"
    )
    env = {**os.environ, "FETCH_RECORDED": "true", "MLFLOW_ENABLE_TRACKING": "false"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "ArxivAdapter []"
