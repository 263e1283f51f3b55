"""`technoshare run` as a user runs it: a subprocess, the offline model, retrieval pointed at a
loopback server (ARXIV_API_URL, GITHUB_API_URL, FETCH_ALLOW_HOSTS) or at the recorded web; and
what it records in a local MLflow store (read back through ``MlflowClient`` only)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pipeline.sanitize import find_mentions
from services.recorded_web import RecordedServer
from tests.support.service import subprocess_env
from tests.support.web import serve_test_web

ARXIV_URL = "https://arxiv.org/abs/1809.00949"
GITHUB_URL = "https://github.com/karpathy/nanoGPT"


@pytest.fixture(scope="module")
def web() -> Iterator[RecordedServer]:
    with serve_test_web() as server:
        yield server


def technoshare_run(tmp_path, *args: str, env: dict[str, str] | None = None):
    full_env = {
        **subprocess_env(),
        "APP_ENV": "test",
        "STATE_DIR": str(tmp_path),
        "LLM_MODEL": "offline/extractive",
        "MLFLOW_ENABLE_TRACKING": "false",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "run", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # no .env of the developer's checkout
    )


def test_arxiv_github_and_page_links_pass_the_gates_offline(web, tmp_path):
    for url, adapter in (
        (ARXIV_URL, "ArxivAdapter"),
        (GITHUB_URL, "GitHubAdapter"),
        (web.page_url("002"), "WebPageAdapter"),
    ):
        proc = technoshare_run(tmp_path, url, "--json", env=web.settings_overrides())
        assert proc.returncode == 0, (url, proc.stderr[-2000:])
        result = json.loads(proc.stdout)
        assert result["outcome"] == "success"
        assert result["evidence"]["adapter"] == adapter
        assert all(r["passed"] for r in result["gate_report"]["results"])
        assert len(result["gate_report"]["results"]) == 9
        assert result["job"]["channel_id"] == "cli" and len(result["job"]["job_id"]) == 16
        message = result["message"]
        assert message["outcome"] == "success" and len(message["blocks"]) <= 50
        assert "Extractive summary made offline" in message["text"]
        assert find_mentions(message["text"]) == []


def test_readable_text_output_for_a_recorded_url_without_any_server(tmp_path):
    proc = technoshare_run(tmp_path, GITHUB_URL, "--recorded")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.startswith("*karpathy/nanoGPT*")
    for heading in ("*TL;DR*", "*Summary*", "*For our themes*", "*Similar tech*"):
        assert heading in out
    assert "Source: karpathy/nanoGPT (https://github.com/karpathy/nanogpt)" in out
    assert "&amp;" not in out and "&lt;" not in out  # entities undone for the terminal


def test_gate_failure_exits_3_with_the_honest_note(web, tmp_path):
    # No reply fits in 3 Slack blocks (title, TL;DR, summary, themes... need more), and the
    # repair cannot shorten an extractive reply below that. (A summary minimum above what the
    # evidence holds no longer fails: the gate lowers it to the citable sentences there are.)
    env = {**web.settings_overrides(), "SLACK_MAX_BLOCKS": "3"}
    proc = technoshare_run(tmp_path, ARXIV_URL, "--json", env=env)
    assert proc.returncode == 3, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["outcome"] == "gate_failed" and result["gate_report"]["repaired"] is True
    failed = [r["name"] for r in result["gate_report"]["results"] if not r["passed"]]
    assert failed == ["slack_limits"]
    assert "it was too long for one Slack message" in result["message"]["text"]
    assert proc.stderr.strip().splitlines()[-1].startswith("gate_failed: GateFailedError")


def test_errors_exit_1_with_one_line_on_stderr(web, tmp_path):
    proc = technoshare_run(tmp_path, web.url("/test/404"), env=web.settings_overrides())
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: SourceUnavailableError"), lines
    assert "could not be read" in proc.stdout  # the reply that would be posted
    assert "Traceback" not in proc.stdout + proc.stderr

    not_a_link = technoshare_run(tmp_path, "ftp://example.org/file")
    assert not_a_link.returncode == 1 and "not an http(s) link" in not_a_link.stderr


# --- recorded in MLflow like a worker's job ----------------------------------------------------
def mlflow_store(tmp_path) -> tuple[str, dict[str, str]]:
    """A sqlite store of the test's own, and tracking on (``technoshare_run`` turns it off)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, {"MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_TRACKING": "true"}


def test_a_run_is_recorded_as_one_parent_run_five_stage_runs_and_one_trace(tmp_path):
    from mlflow import MlflowClient
    from mlflow.entities import TraceState

    from pipeline.settings import Settings
    from pipeline.stages import STAGE_NAMES, STAGES

    uri, env = mlflow_store(tmp_path)
    proc = technoshare_run(tmp_path, GITHUB_URL, "--recorded", "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not written yet" not in proc.stderr  # nothing left behind in the outbox
    job_id = json.loads(proc.stdout)["job"]["job_id"]

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(Settings().mlflow_experiment)
    assert experiment is not None
    exp_id = experiment.experiment_id
    [parent] = client.search_runs([exp_id], "tags.run_kind = 'job'")
    assert parent.info.run_name == f"job-{job_id}" and parent.info.status == "FINISHED"
    params = parent.data.params
    for name in ("stage_a.model", "stage_b.model", "app_version", "adapter"):
        assert params.get(name), (name, params)
    assert params["stage_a.model"] == params["stage_b.model"] == "offline/extractive"
    assert params["adapter"] == "GitHubAdapter"
    for stage in ("stage_a", "stage_b"):
        assert params[f"{stage}.prompt_version"].startswith("file:")  # no registry: the files
    assert parent.data.tags["outcome"] == "success" and parent.data.tags["job_id"] == job_id

    parent_id = parent.info.run_id
    children = client.search_runs([exp_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(r.info.run_name for r in children) == sorted(STAGE_NAMES)
    assert len(children) == len(STAGES)
    for run in children:
        assert run.info.status == "FINISHED", run.info.run_name
        assert run.data.tags["job_id"] == job_id
        assert run.data.metrics["latency_seconds"] >= 0
    assert len(client.search_runs([exp_id])) == 1 + len(STAGES)  # nothing else

    [trace] = client.search_traces(locations=[exp_id], filter_string=f"tags.job_id = '{job_id}'")
    assert trace.info.request_metadata.get("mlflow.sourceRun") == parent_id
    assert trace.info.state == TraceState.OK
    span_names = {s.name for s in trace.data.spans}
    assert {stage.span_name for stage in STAGES} <= span_names
    assert len(client.search_traces(locations=[exp_id])) == 1


def test_with_tracking_disabled_nothing_is_recorded(tmp_path):
    _, env = mlflow_store(tmp_path)
    proc = technoshare_run(
        tmp_path, GITHUB_URL, "--recorded", env={**env, "MLFLOW_ENABLE_TRACKING": "false"}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("*karpathy/nanoGPT*")  # the job itself ran
    # no store was even created at MLFLOW_TRACKING_URI, and no outbox kept under STATE_DIR
    assert sorted(p.name for p in tmp_path.iterdir()) == []
