"""`technoshare report`: built from a real MLflow store, opened in headless Chromium.

Chromium comes from the system (`apt-get install chromium`, done by .ci/run); this test installs
nothing and fails, not skips, when it is missing: the charts rendering is the feature.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from eval import report, svg
from pipeline.settings import get_settings

NOW = datetime.now(UTC).replace(microsecond=0)
CHARTS = ("pass-rate", "outcomes", "coverage", "cost", "gate-failures")


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A sqlite MLflow store with 3 eval runs and 7 jobs (each with a nested stage run)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    settings = get_settings()
    client = MlflowClient(tracking_uri=uri)
    eval_exp = client.create_experiment(settings.mlflow_eval_experiment)
    for i, rate in enumerate((0.7, 0.85, 0.9)):
        run = client.create_run(
            eval_exp, start_time=_ms(NOW - timedelta(days=3 - i)), run_name=f"eval-{i}"
        )
        client.log_metric(run.info.run_id, "overall_pass_rate", rate)
        client.set_terminated(run.info.run_id)
    jobs_exp = client.create_experiment(settings.mlflow_experiment)
    jobs = [  # (days ago, outcome, url, coverage, cost)
        (0, "success", "https://arxiv.org/abs/2101.04061", "partial", 0.002),
        (0, "gate_failed", "https://www.nytimes.com/x", "full", 0.004),
        (1, "success", "https://github.com/encode/httpx", "full", 0.003),
        (1, "gate_failed", "https://github.com/simonw/llm", "partial", 0.001),
        (1, "error", "https://example.org/gone", "failed", 0.0),
        (2, "success", "https://arxiv.org/abs/1208.6335", "partial", 0.002),
        (2, "success", "https://www.nytimes.com/y", "full", 0.005),
    ]
    for days_ago, outcome, url, coverage, cost in jobs:
        run = client.create_run(
            jobs_exp,
            start_time=_ms(NOW - timedelta(days=days_ago)),
            tags={"outcome": outcome, "target_url": url, "coverage": coverage, "run_kind": "job"},
        )
        client.log_metric(run.info.run_id, "cost_usd", cost)
        stage = client.create_run(  # nested stage runs must not count as jobs
            jobs_exp,
            start_time=_ms(NOW - timedelta(days=days_ago)),
            tags={"mlflow.parentRunId": run.info.run_id, "outcome": "success", "target_url": url},
        )
        client.log_metric(stage.info.run_id, "cost_usd", 99.0)
    sync = client.create_run(jobs_exp, start_time=_ms(NOW), tags={"run_kind": "prompt_sync"})
    client.log_metric(sync.info.run_id, "cost_usd", 50.0)  # not a job either
    return tmp_path


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is not installed: apt-get install -y chromium (.ci/run does)"
    return path


def _headless(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def _write_report(tmp_path: Path) -> Path:
    out = tmp_path / "report.html"
    args = argparse.Namespace(out=out, days=7, threshold=0.8)
    assert report.main(args) == 0
    return out


def test_report_aggregates_jobs_and_eval_runs(store):
    data = report.collect(get_settings(), days=7, now=NOW)
    assert [v for _, v in data.eval_runs] == [0.7, 0.85, 0.9]
    assert data.outcomes() == {"success": 4, "gate_failed": 2, "error": 1}
    assert dict(data.coverage_by_domain())["nytimes.com"] == {"full": 2.0}
    cost = dict(data.cost_per_day())
    assert cost[NOW.date().isoformat()] == pytest.approx(0.006)
    assert sum(cost.values()) == pytest.approx(0.017)  # stage runs (99 USD each) not counted
    failures = dict(data.gate_failures_per_day())
    assert failures[NOW.date().isoformat()] == 1
    assert sum(failures.values()) == 2


def test_report_is_self_contained(store):
    html = _write_report(store).read_text(encoding="utf-8")
    assert "<script" not in html
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html), "no external resources"
    assert html.count("<svg") == len(CHARTS)


def test_charts_render_in_headless_chromium(store):
    page = _write_report(store)
    dom = _headless(store, "--dump-dom", page.as_uri()).stdout
    for key in CHARTS:
        figure = re.search(rf'<figure[^>]*id="chart-{key}".*?</figure>', dom, re.S)
        assert figure, f"chart {key} missing from the rendered DOM"
        assert "<svg" in figure.group(0), f"chart {key} has no svg"
        assert 'class="datum"' in figure.group(0), f"chart {key} drew nothing"
    outcomes = re.search(r'id="chart-outcomes".*?</figure>', dom, re.S).group(0)
    assert "gate_failed: 2" in outcomes and "success: 4" in outcomes

    shot = store / "report.png"
    _headless(
        store, f"--screenshot={shot}", "--window-size=800,2200", "--hide-scrollbars", page.as_uri()
    )
    image = Image.open(shot).convert("RGB")
    colors = color_counts(image)
    for name, hex_color in (
        ("bars/line", svg.PALETTE[0]),
        ("cost bars", svg.PALETTE[2]),
        ("gate bars", svg.PALETTE[3]),
    ):
        assert near(colors, hex_color) > 150, f"no {name} pixels ({hex_color}) in the screenshot"


def test_empty_store_still_renders_a_page(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    html = report.render_html(report.collect(get_settings(), days=3))
    assert "No eval runs in this window." in html and "No jobs in this window." in html


def color_counts(image: Image.Image) -> dict[tuple[int, int, int], int]:
    return {rgb: n for n, rgb in image.getcolors(maxcolors=1 << 20) or []}


def near(colors: dict[tuple[int, int, int], int], hex_color: str, tol: int = 12) -> int:
    target = tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return sum(
        n
        for rgb, n in colors.items()
        if all(abs(a - b) <= tol for a, b in zip(rgb, target, strict=True))
    )
