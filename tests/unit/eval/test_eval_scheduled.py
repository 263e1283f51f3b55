"""Beat tasks: weekly eval, daily health summary, alerts posted once per breach.

Real parts: redis-server (alert dedupe keys), fake Slack on 127.0.0.1 (the ops channel), a sqlite
MLflow store with job and eval runs, and for the weekly eval the real `technoshare eval`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from celery.schedules import crontab

from pipeline.constants import ALERT_SENT_KEY
from tests.support.service import (
    BOT_TOKEN,
)

OPS = "C0OPS"
NOW = datetime.now(UTC)


def test_beat_schedule_runs_the_eval_weekly_and_health_daily():
    from tasks.scheduled import BEAT_SCHEDULE, DAILY_HEALTH, WEEKLY_EVAL

    weekly = BEAT_SCHEDULE["weekly-eval"]
    assert weekly["task"] == WEEKLY_EVAL
    assert isinstance(weekly["schedule"], crontab)
    assert weekly["schedule"].day_of_week == {1}  # once a week, on Monday
    daily = BEAT_SCHEDULE["daily-health"]
    assert daily["task"] == DAILY_HEALTH and daily["schedule"].day_of_week == set(range(7))


def test_the_app_beat_config_includes_the_schedule():
    from pipeline.settings import get_settings
    from tasks.app import celery_config
    from tasks.scheduled import BEAT_SCHEDULE

    config = celery_config(get_settings())
    for name, entry in BEAT_SCHEDULE.items():
        assert config["beat_schedule"].get(name) == entry, f"beat_schedule lacks {name}"
    from tasks.app import app
    from tasks.scheduled import CHECK_ALERTS, DAILY_HEALTH, WEEKLY_EVAL

    for task in (WEEKLY_EVAL, DAILY_HEALTH, CHECK_ALERTS):  # a worker of this app can run them
        assert task in app.tasks


@pytest.fixture
def ops_env(tmp_path, monkeypatch, redis_server, redis_client, fake_slack):
    from tasks import runtime

    for key, value in {
        "REDIS_URL": redis_server.url,
        "SLACK_SINK": "slack",
        "SLACK_API_URL": fake_slack.api_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_OPS_CHANNEL": OPS,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "STATE_DIR": str(tmp_path / "state"),
    }.items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    fake_slack.reset()
    yield tmp_path
    runtime.reset()


def _seed(tmp_path, *, gate_failed: int, errors: int, eval_rate: float) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    eval_exp = client.create_experiment("technoshare_eval")
    run = client.create_run(eval_exp, start_time=int((NOW - timedelta(days=2)).timestamp() * 1000))
    client.log_metric(run.info.run_id, "overall_pass_rate", eval_rate)
    jobs = client.create_experiment("technoshare_commentator")
    outcomes = ["gate_failed"] * gate_failed + ["error"] * errors + ["success"] * 3
    for outcome in outcomes:
        job = client.create_run(
            jobs,
            start_time=int(NOW.timestamp() * 1000) - 60_000,
            tags={"run_kind": "job", "outcome": outcome, "target_url": "https://github.com/a/b"},
        )
        client.log_metric(job.info.run_id, "cost_usd", 0.01)


def _ops_posts(fake_slack) -> list[str]:
    return [p["text"] for p in fake_slack.posts() if p.get("channel") == OPS]


def test_daily_health_posts_a_summary_and_each_breach_once(ops_env, fake_slack, redis_client):
    from tasks.scheduled import check_alerts, daily_health

    _seed(ops_env, gate_failed=4, errors=1, eval_rate=0.6)  # > 3 gate failures, eval < 0.8
    result = daily_health.apply().get()
    assert result["jobs"] == 8 and result["outcomes"]["gate_failed"] == 4
    assert sorted(result["alerts_posted"]) == ["eval_pass_rate", "gate_failures"]
    posts = _ops_posts(fake_slack)
    assert len(posts) == 3
    assert any("daily health" in p and "gate failures today: 4" in p for p in posts)
    assert any("4 replies failed the quality gates today" in p for p in posts)
    assert any("passed 60% of the examples" in p for p in posts)

    for _ in range(3):  # later checks the same day: still breached, but already alerted
        assert check_alerts.apply().get() == []
    assert len(_ops_posts(fake_slack)) == 3

    day = NOW.date().isoformat()
    redis_client.delete(ALERT_SENT_KEY.format(name="gate_failures", day=day))
    assert check_alerts.apply().get() == ["gate_failures"]  # the key is what suppressed it


def test_no_alert_within_thresholds(ops_env, fake_slack):
    from tasks.scheduled import check_alerts

    _seed(ops_env, gate_failed=3, errors=5, eval_rate=0.85)  # at the limits, not above
    assert check_alerts.apply().get() == []
    assert _ops_posts(fake_slack) == []


def test_a_failed_post_is_retried_by_the_next_check(ops_env, fake_slack, redis_client):
    from tasks.scheduled import check_alerts
    from tests.support.fake_slack import Failure

    _seed(ops_env, gate_failed=5, errors=0, eval_rate=0.9)
    fake_slack.fail_next("chat.postMessage", Failure(status=500))
    with pytest.raises(Exception):  # noqa: B017 - the Slack error type is the sink's business
        check_alerts.apply(throw=True).get()
    assert (
        redis_client.get(ALERT_SENT_KEY.format(name="gate_failures", day=NOW.date().isoformat()))
        is None
    )
    assert check_alerts.apply().get() == ["gate_failures"]


def test_weekly_eval_task_runs_the_suite_and_reports_to_ops(ops_env, fake_slack):
    from eval.dataset import load_dataset
    from tasks.scheduled import weekly_eval

    ids = [e.id for e in load_dataset().examples[:2]]
    result = weekly_eval.apply(kwargs={"ids": ids}).get()
    assert result["run_id"], result
    assert result["summary"]["total_examples"] == 2
    posts = _ops_posts(fake_slack)
    assert any("weekly eval" in p and result["run_id"] in p for p in posts), posts

    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=f"sqlite:///{ops_env / 'mlflow.db'}").get_run(result["run_id"])
    assert run.data.metrics["total_examples"] == 2
    assert run.info.run_name.startswith("weekly-")
