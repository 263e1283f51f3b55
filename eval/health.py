"""Quality monitoring for the ops channel: the daily health summary and threshold alerts.

Numbers come from MLflow, like ``technoshare report`` (``eval.report.collect``): job parent runs
of ``MLFLOW_EXPERIMENT`` and eval runs of ``MLFLOW_EVAL_EXPERIMENT``. Three alerts, thresholds in
settings:

- ``gate_failures``: more than ``ALERT_MAX_GATE_FAILURES_PER_DAY`` jobs ended ``gate_failed``
  today (UTC);
- ``error_outcomes``: more than ``ALERT_MAX_ERROR_OUTCOMES_PER_DAY`` jobs ended ``error`` today;
- ``eval_pass_rate``: the latest eval run's pass rate is below ``ALERT_MIN_EVAL_PASS_RATE``.

Each breach is posted ONCE per UTC day however often it is checked: the first check claims
``ALERT_SENT_KEY`` (Redis ``SET NX`` with a one-day TTL); later checks find the key and stay
quiet. A failed post releases the key so the next check tries again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eval.report import ReportData
from pipeline.constants import ALERT_SENT_KEY, ALERT_SENT_TTL_SECONDS
from pipeline.models import SlackMessage
from pipeline.settings import Settings


@dataclass
class HealthStats:
    since: datetime
    until: datetime
    jobs: int
    outcomes: dict[str, int]
    cost_usd: float
    gate_failures_today: int
    errors_today: int
    latest_eval_pass_rate: float | None
    latest_eval_run_id: str | None


@dataclass
class Breach:
    name: str  # the alert's key part: one post per name per day
    text: str


def health_stats(data: ReportData, *, window: timedelta = timedelta(days=1)) -> HealthStats:
    now = data.generated_at
    recent = [j for j in data.jobs if j.started_at >= now - window]
    today = [j for j in data.jobs if j.day == now.date().isoformat()]
    outcomes: dict[str, int] = {}
    for j in recent:
        outcomes[j.outcome] = outcomes.get(j.outcome, 0) + 1
    return HealthStats(
        since=now - window,
        until=now,
        jobs=len(recent),
        outcomes=dict(sorted(outcomes.items(), key=lambda kv: -kv[1])),
        cost_usd=round(sum(j.cost_usd for j in recent), 6),
        gate_failures_today=sum(j.outcome == "gate_failed" for j in today),
        errors_today=sum(j.outcome == "error" for j in today),
        latest_eval_pass_rate=data.eval_runs[-1][1] if data.eval_runs else None,
        latest_eval_run_id=data.eval_run_ids[-1] if data.eval_run_ids else None,
    )


def breaches(stats: HealthStats, settings: Settings) -> list[Breach]:
    found = []
    if stats.gate_failures_today > settings.alert_max_gate_failures_per_day:
        found.append(
            Breach(
                "gate_failures",
                f"{stats.gate_failures_today} replies failed the quality gates today "
                f"(alert above {settings.alert_max_gate_failures_per_day}).",
            )
        )
    if stats.errors_today > settings.alert_max_error_outcomes_per_day:
        found.append(
            Breach(
                "error_outcomes",
                f"{stats.errors_today} jobs ended in an error today "
                f"(alert above {settings.alert_max_error_outcomes_per_day}).",
            )
        )
    rate = stats.latest_eval_pass_rate
    if rate is not None and rate < settings.alert_min_eval_pass_rate:
        found.append(
            Breach(
                "eval_pass_rate",
                f"The latest eval run ({stats.latest_eval_run_id}) passed {rate:.0%} of the "
                f"examples (alert below {settings.alert_min_eval_pass_rate:.0%}).",
            )
        )
    return found


def summary_text(stats: HealthStats) -> str:
    outcomes = ", ".join(f"{k} {v}" for k, v in stats.outcomes.items()) or "none"
    rate = stats.latest_eval_pass_rate
    eval_line = f"{rate:.0%} (run {stats.latest_eval_run_id})" if rate is not None else "no run"
    return (
        f"*TechnoShare daily health* ({stats.since:%Y-%m-%d %H:%M} – {stats.until:%H:%M} UTC)\n"
        f"• jobs: {stats.jobs} ({outcomes})\n"
        f"• gate failures today: {stats.gate_failures_today} · errors today: {stats.errors_today}\n"
        f"• LLM cost: ${stats.cost_usd:.4f}\n"
        f"• latest eval pass rate: {eval_line}"
    )


def ops_message(settings: Settings, text: str) -> SlackMessage | None:
    if not settings.slack_ops_channel:
        return None
    return SlackMessage(channel=settings.slack_ops_channel, text=text)


def post_new_alerts(
    found: list[Breach], *, redis: Any, sink: Any, settings: Settings, day: str
) -> list[str]:
    """Post each breach not yet alerted today; returns the names posted now."""
    posted = []
    for breach in found:
        message = ops_message(settings, f":rotating_light: TechnoShare alert: {breach.text}")
        if message is None:
            continue
        key = ALERT_SENT_KEY.format(name=breach.name, day=day)
        if not redis.set(key, "1", nx=True, ex=ALERT_SENT_TTL_SECONDS):
            continue  # already alerted for this breach today
        try:
            sink.post(message)
        except Exception:
            redis.delete(key)  # let the next check try again
            raise
        posted.append(breach.name)
    return posted
