"""Quality monitoring tasks. Periodic (``celery -A tasks beat``): a weekly eval run, a daily
health summary, and a frequent alert check that posts each breach once (see ``eval/health.py``).
On demand: ``technoshare.record_feedback`` (``tasks/feedback.py``, imported here so the app that
imports this module registers it), 👍/👎 reactions as MLflow feedback; the conversation tasks
(``tasks/conversation.py``: follow-up answers, help, the opt-in weekly digest), likewise.

``BEAT_SCHEDULE`` is merged into the app's ``beat_schedule``. This module stays import-light
(celery and settings only; ``tasks.app`` imports it): the tasks are ``shared_task``s bound to the
app once it is finalized, and their bodies import mlflow and the eval code lazily.

The weekly eval runs ``technoshare eval`` in a subprocess: evaluation imports pandas and starts
thread pools, which a long-lived prefork worker should not keep, and a crash there cannot take
the worker down. Its time limit is its own (``EVAL_TIME_LIMIT``), not ``TASK_TIME_LIMIT``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.schedules import crontab

from pipeline.constants import DIGEST_TASK, QUEUE_IO
from tasks import conversation, feedback  # registers their tasks with the app that imports this

log = logging.getLogger(__name__)

EVAL_TIME_LIMIT = 1800  # seconds; the offline eval takes ~1-3 min, a real model much longer
ALERT_CHECK_MINUTES = 15
HEALTH_WINDOW_DAYS = 8  # jobs of the last day, and the latest (weekly) eval run

WEEKLY_EVAL = "technoshare.weekly_eval"
DAILY_HEALTH = "technoshare.daily_health"
CHECK_ALERTS = "technoshare.check_alerts"

ROUTES = {
    WEEKLY_EVAL: QUEUE_IO,
    DAILY_HEALTH: QUEUE_IO,
    CHECK_ALERTS: QUEUE_IO,
    **feedback.ROUTES,
    **conversation.ROUTES,
}

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "weekly-eval": {
        "task": WEEKLY_EVAL,
        "schedule": crontab(minute=0, hour=5, day_of_week="mon"),  # Monday 05:00 UTC
        "options": {"expires": 6 * 3600},
    },
    "daily-health": {
        "task": DAILY_HEALTH,
        "schedule": crontab(minute=0, hour=8),  # 08:00 UTC, the previous 24 hours
        "options": {"expires": 3600},
    },
    "weekly-digest": {  # does nothing unless DIGEST_ENABLED=true
        "task": DIGEST_TASK,
        "schedule": crontab(minute=0, hour=7, day_of_week="mon"),  # Monday 07:00 UTC
        "options": {"expires": 12 * 3600},
    },
    "check-alerts": {
        "task": CHECK_ALERTS,
        "schedule": crontab(minute=f"*/{ALERT_CHECK_MINUTES}"),
        "options": {"expires": ALERT_CHECK_MINUTES * 60},  # a backlog of checks is useless
    },
}


def _runtime() -> Any:
    from tasks import runtime

    return runtime


def _check_and_alert(settings: Any) -> tuple[Any, list[str]]:
    from eval.health import breaches, health_stats, post_new_alerts
    from eval.report import collect

    rt = _runtime()
    data = collect(settings, days=HEALTH_WINDOW_DAYS)
    stats = health_stats(data)
    posted = post_new_alerts(
        breaches(stats, settings),
        redis=rt.store().r,
        sink=rt.sink(),
        settings=settings,
        day=data.generated_at.date().isoformat(),
    )
    return stats, posted


@shared_task(name=CHECK_ALERTS, ignore_result=True)
def check_alerts() -> list[str]:
    """Post every threshold breach not yet alerted today; returns the alert names posted."""
    _, posted = _check_and_alert(_runtime().settings())
    return posted


@shared_task(name=DAILY_HEALTH)
def daily_health() -> dict[str, Any]:
    """The ops channel's daily summary (last 24 h), then the alert check."""
    from eval.health import ops_message, summary_text

    settings = _runtime().settings()
    stats, posted = _check_and_alert(settings)
    message = ops_message(settings, summary_text(stats))
    if message is not None:
        _runtime().sink().post(message)
    else:
        log.info("daily health (no SLACK_OPS_CHANNEL set):\n%s", summary_text(stats))
    return {"jobs": stats.jobs, "outcomes": stats.outcomes, "alerts_posted": posted}


def run_eval_subprocess(extra_args: list[str], timeout: float) -> tuple[int, dict[str, Any], str]:
    """``technoshare eval`` in a child process -> (exit code, eval_results.json, stderr tail)."""
    with tempfile.TemporaryDirectory(prefix="technoshare-eval-") as tmp:
        results = Path(tmp) / "eval_results.json"
        cmd = [sys.executable, "-m", "services.cli", "eval", "--results-json", str(results)]
        proc = subprocess.run(
            cmd + extra_args, capture_output=True, text=True, timeout=timeout, check=False
        )
        doc = json.loads(results.read_text(encoding="utf-8")) if results.is_file() else {}
    return proc.returncode, doc, proc.stderr[-2000:]


@shared_task(
    name=WEEKLY_EVAL, time_limit=EVAL_TIME_LIMIT + 60, soft_time_limit=EVAL_TIME_LIMIT + 30
)
def weekly_eval(ids: list[str] | None = None) -> dict[str, Any]:
    """Run the eval suite, post its verdict to the ops channel, then check the alerts (a low
    pass rate is the ``eval_pass_rate`` alert, posted once)."""
    from eval.health import ops_message

    settings = _runtime().settings()
    args = ["--run-name", f"weekly-{datetime.now(UTC):%Y%m%d}"]
    if ids:
        args += ["--ids", ",".join(ids)]
    code, doc, stderr = run_eval_subprocess(args, timeout=EVAL_TIME_LIMIT)
    summary = doc.get("summary") or {}
    if not summary:  # the eval could not run: say so, with the reason
        text = (
            f":warning: TechnoShare weekly eval did not run (exit {code}): {stderr.strip()[-400:]}"
        )
    else:
        verdict = "passed" if code == 0 else "FAILED"
        text = (
            f"*TechnoShare weekly eval {verdict}*: pass rate {summary['overall_pass_rate']:.0%} "
            f"({summary['passed_examples']}/{summary['total_examples']}, threshold "
            f"{doc.get('min_pass_rate', 0):.0%}) · model {doc['models']['configured']} · "
            f"MLflow run {doc.get('run_id')}"
        )
    message = ops_message(settings, text)
    if message is not None:
        _runtime().sink().post(message)
    _, posted = _check_and_alert(settings)
    return {"exit_code": code, "run_id": doc.get("run_id"), "summary": summary, "alerts": posted}
