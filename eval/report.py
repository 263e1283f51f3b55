"""``technoshare report``: one offline HTML page with what MLflow's own Overview lacks.

Five charts, drawn as inline SVG in Python (no JavaScript, no CDN, opens from a file:// URL):

1. pass rate per eval run (experiment ``MLFLOW_EVAL_EXPERIMENT``, metric ``overall_pass_rate``);
2. outcome distribution of jobs (success / gate_failed / error ...);
3. adapter coverage by domain (full / partial / metadata_only / failed per source host);
4. LLM cost per day (USD);
5. gate failures per day (jobs whose outcome was ``gate_failed``).

Jobs are the top-level runs of ``MLFLOW_EXPERIMENT`` tagged ``run_kind=job`` (one parent run per
job; nested stage runs and prompt-sync runs are skipped). ``JobFields`` names the tags and
metrics read from them, as ``observability/`` writes them.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from eval import svg
from pipeline.settings import Settings, get_settings

PASS_RATE_METRIC = "overall_pass_rate"  # noqa: S105 (a metric name)
COVERAGE_LEVELS = ("full", "partial", "metadata_only", "failed")
PARENT_RUN_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class JobFields:
    """Where each job's facts live on its parent run (observability/mlflow_backend.py)."""

    outcome: str = "outcome"  # tag
    url: str = "target_url"  # tag
    domain: str = "domain"  # tag; derived from ``url`` when absent
    coverage: str = "coverage"  # tag
    cost_metric: str = "cost_usd"
    kind: str = "run_kind"  # tag: job | stage | prompt_sync (absent on old runs: a job)


@dataclass
class JobRecord:
    started_at: datetime
    day: str
    outcome: str
    domain: str
    coverage: str
    cost_usd: float


@dataclass
class ReportData:
    generated_at: datetime
    days: int
    eval_runs: list[tuple[str, float]] = field(default_factory=list)  # (start, rate), oldest first
    eval_run_names: list[str] = field(default_factory=list)
    eval_run_ids: list[str] = field(default_factory=list)
    jobs: list[JobRecord] = field(default_factory=list)
    threshold: float = 0.8

    def outcomes(self) -> dict[str, int]:
        return dict(Counter(j.outcome for j in self.jobs).most_common())

    def coverage_by_domain(self) -> list[tuple[str, dict[str, float]]]:
        by_domain: dict[str, Counter[str]] = defaultdict(Counter)
        for j in self.jobs:
            by_domain[j.domain][j.coverage] += 1
        ranked = sorted(by_domain.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        return [(d, {k: float(v) for k, v in c.items()}) for d, c in ranked[:15]]

    def _day_axis(self) -> list[str]:
        end = self.generated_at.date()
        return [(end - timedelta(days=n)).isoformat() for n in range(self.days - 1, -1, -1)]

    def cost_per_day(self) -> list[tuple[str, float]]:
        totals: dict[str, float] = defaultdict(float)
        for j in self.jobs:
            totals[j.day] += j.cost_usd
        return [(d, round(totals.get(d, 0.0), 6)) for d in self._day_axis()]

    def gate_failures_per_day(self) -> list[tuple[str, float]]:
        counts = Counter(j.day for j in self.jobs if j.outcome == "gate_failed")
        return [(d, float(counts.get(d, 0))) for d in self._day_axis()]


# --- collection ------------------------------------------------------------------------------
def _all_runs(client: Any, experiment_id: str, filter_string: str = "") -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _domain(tags: dict[str, str], fields: JobFields) -> str:
    if tags.get(fields.domain):
        return tags[fields.domain]
    host = urlsplit(tags.get(fields.url, "")).hostname or "unknown"
    return host.removeprefix("www.")


def job_record(run: Any, fields: JobFields = JobFields()) -> JobRecord:
    tags, metrics = run.data.tags, run.data.metrics
    started = datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC)
    return JobRecord(
        started_at=started,
        day=started.date().isoformat(),
        outcome=tags.get(fields.outcome) or "unknown",
        domain=_domain(tags, fields),
        coverage=tags.get(fields.coverage) or "failed",
        cost_usd=float(metrics.get(fields.cost_metric, 0.0)),
    )


def collect(
    settings: Settings,
    *,
    days: int = 30,
    now: datetime | None = None,
    fields: JobFields = JobFields(),
) -> ReportData:
    from mlflow.tracking import MlflowClient

    now = now or datetime.now(UTC)
    client = MlflowClient(tracking_uri=settings.effective_tracking_uri())
    data = ReportData(generated_at=now, days=days)
    since_ms = int((now - timedelta(days=days)).timestamp() * 1000)
    window = f"attributes.start_time >= {since_ms}"
    eval_exp = client.get_experiment_by_name(settings.mlflow_eval_experiment)
    if eval_exp is not None:
        for run in _all_runs(client, eval_exp.experiment_id, window):
            if PASS_RATE_METRIC in run.data.metrics:
                started = datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC)
                name = run.info.run_name or run.info.run_id[:8]
                data.eval_runs.append(
                    (f"{started:%m-%d %H:%M}", run.data.metrics[PASS_RATE_METRIC])
                )
                data.eval_run_names.append(name)
                data.eval_run_ids.append(run.info.run_id)
    job_exp = client.get_experiment_by_name(settings.mlflow_experiment)
    if job_exp is not None:
        for run in _all_runs(client, job_exp.experiment_id, window):
            tags = run.data.tags
            if (
                PARENT_RUN_TAG not in tags
                and tags.get(fields.kind, "job") == "job"
                and "followup_of" not in tags  # a follow-up answer is no job of its own here
            ):
                data.jobs.append(job_record(run, fields))
    return data


# --- rendering -------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:720px}
h1{font-size:20px;margin:0 0 4px}p.meta{color:#666;margin:0 0 20px;font-size:13px}
figure{margin:0 0 28px;border:1px solid #ddd;border-radius:6px;padding:12px}
figcaption{font-weight:600;margin-bottom:8px}p.empty{color:#888;font-style:italic}
table{border-collapse:collapse;font-size:12px;margin-top:6px}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
"""


def _figure(key: str, title: str, body: str, table: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b)}</td></tr>" for a, b in table)
    details = f"<details><summary>data</summary><table>{rows}</table></details>" if rows else ""
    return (
        f'<figure class="chart" id="chart-{key}" data-chart="{key}">'
        f"<figcaption>{escape(title)}</figcaption>{body}{details}</figure>"
    )


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def _usd(v: float) -> str:
    return f"${v:,.4f}" if v < 1 else f"${v:,.2f}"


def _count(v: float) -> str:
    return f"{v:g}"


def render_html(data: ReportData) -> str:
    figures = []
    runs = data.eval_runs
    figures.append(
        _figure(
            "pass-rate",
            f"Pass rate per eval run (threshold {data.threshold:.0%})",
            svg.line_chart(
                runs,
                label="pass rate per eval run",
                threshold=data.threshold,
                fmt=lambda v: f"{v:.0%}",
            )
            if runs
            else _empty("No eval runs in this window."),
            [
                (f"{when} {name}", f"{v:.1%}")
                for (when, v), name in zip(runs, data.eval_run_names, strict=False)
            ],
        )
    )
    outcomes = data.outcomes()
    figures.append(
        _figure(
            "outcomes",
            f"Job outcomes ({len(data.jobs)} jobs)",
            svg.bar_chart(list(outcomes.items()), label="job outcomes", fmt=_count, counts=True)
            if outcomes
            else _empty("No jobs in this window."),
            [(k, str(v)) for k, v in outcomes.items()],
        )
    )
    by_domain = data.coverage_by_domain()
    figures.append(
        _figure(
            "coverage",
            "Adapter coverage by domain",
            svg.stacked_bars(by_domain, COVERAGE_LEVELS, label="adapter coverage by domain")
            if by_domain
            else _empty("No jobs in this window."),
            [(d, ", ".join(f"{k} {v:g}" for k, v in c.items())) for d, c in by_domain],
        )
    )
    cost = data.cost_per_day()
    figures.append(
        _figure(
            "cost",
            f"LLM cost per day (total {_usd(sum(v for _, v in cost))})",
            svg.bar_chart(cost, label="LLM cost per day", fmt=_usd, color=svg.PALETTE[2]),
            [(d, _usd(v)) for d, v in cost if v],
        )
    )
    failures = data.gate_failures_per_day()
    figures.append(
        _figure(
            "gate-failures",
            f"Gate failures per day (total {sum(v for _, v in failures):g})",
            svg.bar_chart(
                failures,
                label="gate failures per day",
                fmt=_count,
                color=svg.PALETTE[3],
                counts=True,
            ),
            [(d, f"{v:g}") for d, v in failures if v],
        )
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>TechnoShare quality report</title>"
        f"<style>{_CSS}</style></head><body><h1>TechnoShare quality report</h1>"
        f'<p class="meta">Generated {data.generated_at:%Y-%m-%d %H:%M} UTC from MLflow; last '
        f"{data.days} days. Run details, traces and evaluation results are in MLflow itself.</p>"
        + "".join(figures)
        + "</body></html>"
    )


# --- CLI -------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=None, help="HTML file (default: STATE_DIR/report.html)"
    )
    parser.add_argument("--days", type=int, default=30, help="window in days (default 30)")
    parser.add_argument("--threshold", type=float, default=0.8, help="pass-rate line (default 0.8)")


def main(args: argparse.Namespace) -> int:
    settings = get_settings()
    out: Path = args.out or settings.state_dir / "report.html"
    data = collect(settings, days=args.days)
    data.threshold = args.threshold
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(data), encoding="utf-8")
    print(f"report: {out.resolve()} ({len(data.eval_runs)} eval runs, {len(data.jobs)} jobs)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="technoshare report")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
