"""`technoshare eval` end to end, as CI runs it: a subprocess, the recorded web, the offline
model, a fresh sqlite MLflow store. Then the broken prompt set, compared against the good run,
and the LLM judges against a local OpenAI-compatible stub server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eval.dataset import load_dataset
from eval.results import metric_key

REPO = Path(__file__).resolve().parents[3]
BROKEN_PROMPTS = REPO / "tests" / "fixtures" / "broken_prompts"
EXAMPLES = load_dataset().ready()


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "MLFLOW_", "OPENAI"))}
    env.update(
        APP_ENV="test",
        STATE_DIR=str(tmp / "state"),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_OFFLINE_MODE="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


def _eval(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "eval", *args],
        cwd=tmp,  # nothing (mlruns, .env) is read from or written to the repository
        env=_env(tmp, **env),
        capture_output=True,
        text=True,
        timeout=280,
    )


def _client(tmp: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")


def _results(tmp: Path, run_id: str) -> dict:
    path = _client(tmp).download_artifacts(run_id, "eval_results.json", str(tmp / f"dl-{run_id}"))
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _run_id(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if "MLflow run " in line)
    return line.split("MLflow run ")[1].split()[0]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    proc = _eval(tmp, "--summary-md", str(tmp / "summary.md"), "--run-name", "good")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]  # 1: below
    return tmp, proc, _run_id(proc.stdout)


def test_offline_eval_passes_the_threshold(good):
    tmp, proc, run_id = good
    doc = _results(tmp, run_id)
    assert doc["summary"]["total_examples"] == len(EXAMPLES) >= 24
    assert [e["id"] for e in doc["examples"]] == [e.id for e in EXAMPLES]
    failing = {e["id"]: e for e in doc["examples"] if not e["passed"]}
    assert doc["summary"]["overall_pass_rate"] >= 0.8, (
        f"offline pass rate {doc['summary']['overall_pass_rate']:.1%}; failing: "
        + "; ".join(
            f"{i}: gates {e['failed_gates']}, themes {e['themes_found']} vs "
            f"{e['expected_themes']}, missing {e['missing_terms']}"
            for i, e in failing.items()
        )
    )
    assert proc.returncode == 0 and "PASSED" in proc.stdout
    assert f"{len(EXAMPLES)}/{len(EXAMPLES)} " in proc.stderr  # the progress bar reached the end


def test_mlflow_run_has_metrics_params_artifacts_and_evaluation_traces(good):
    import mlflow

    tmp, _, run_id = good
    client = _client(tmp)
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "technoshare_eval"
    metrics = run.data.metrics
    for key in (
        "total_examples",
        "passed_examples",
        "overall_pass_rate",
        "theme_match_rate",
        "mean_must_mention_coverage",
    ):
        assert key in metrics
    for example in EXAMPLES:
        for name in (
            "pass_rate",
            "schema_validity",
            "tldr_sentence_count",
            "summary_sentence_count",
            "theme_match",
            "must_mention_coverage",
        ):
            assert metric_key(example.id, name) in metrics
    assert metrics["example_pass/mean"] == pytest.approx(metrics["overall_pass_rate"], abs=1e-3)
    params = run.data.params
    assert params["model"] == "offline/extractive"
    assert params["prompt_stage_b_system"].startswith("file:")
    assert "skipped" in params["llm_judges"]
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"eval_results.json", "eval_summary.md"} <= names

    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    traces = mlflow.search_traces(
        locations=[run.info.experiment_id], run_id=run_id, return_type="list"
    )
    assert len(traces) == len(EXAMPLES)
    assessed = {a.name for t in traces for a in t.info.assessments}
    assert {"example_pass", "theme_match", "must_mention_coverage", "gates_passed"} <= assessed


def test_judges_are_reported_skipped_offline(good):
    tmp, proc, run_id = good
    doc = _results(tmp, run_id)
    assert doc["judges"]["enabled"] is False and "skipped" in doc["judges"]["reason"]
    assert all(e["judges"] == "skipped" for e in doc["examples"])
    assert "LLM judges: skipped" in proc.stdout


def test_summary_markdown_is_a_table_of_every_example(good):
    tmp, proc, run_id = good
    md = (tmp / "summary.md").read_text(encoding="utf-8")
    verdict = "PASSED" if proc.returncode == 0 else "FAILED"
    assert md.startswith(f"### TechnoShare eval: {verdict}")
    assert f"run `{run_id}`" in md
    assert "| example | kind | outcome | pass |" in md
    for example in EXAMPLES:
        assert f"| {example.id} |" in md


def test_broken_prompts_drop_the_pass_rate_and_fail_with_a_comparison(good):
    tmp, _, good_id = good
    proc = _eval(tmp, "--prompts-dir", str(BROKEN_PROMPTS), "--compare", good_id)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "FAILED" in proc.stdout
    broken = _results(tmp, _run_id(proc.stdout))
    before = _results(tmp, good_id)
    assert broken["summary"]["overall_pass_rate"] < 0.8
    assert broken["summary"]["overall_pass_rate"] < before["summary"]["overall_pass_rate"]
    assert (
        broken["prompt_versions"]["stage_b_system"] != before["prompt_versions"]["stage_b_system"]
    )
    assert broken["compared_to"] == good_id
    regressed = {c["id"] for c in broken["comparison"] if c["change"] == "regressed"}
    assert regressed and f"Changes against run `{good_id}`" in proc.stdout
    for example_id in regressed:
        assert f"| {example_id} | regressed |" in proc.stdout


def test_unknown_compare_run_and_bad_dataset_cannot_run(tmp_path):
    proc = _eval(tmp_path, "--compare", "0" * 32, "--limit", "1")
    assert proc.returncode == 2 and "--compare" in proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"examples": [{"id": "x"}]}), encoding="utf-8")
    proc = _eval(tmp_path, "--dataset", str(bad))
    assert proc.returncode == 2 and "example 'x' (#0)" in proc.stderr


# --- LLM judges against a local OpenAI-compatible server ---------------------------------------
class _JudgeStub(BaseHTTPRequestHandler):
    prompts: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        type(self).prompts.append(prompt)
        invented = "SIMILAR TECH listed by the bot" in prompt
        verdict = {
            "verdict": "no" if invented else "yes",
            "rationale": f"stub judged {len(prompt)} chars",
        }
        answer = {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": json.dumps(verdict)},
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def judge_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JudgeStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _JudgeStub.prompts = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_llm_judges_run_when_a_real_model_is_configured(tmp_path, judge_server):
    ids = [EXAMPLES[0].id, EXAMPLES[-1].id]
    proc = _eval(
        tmp_path,
        "--ids",
        ",".join(ids),
        "--min-pass-rate",
        "0",
        LLM_MODEL="openai/judge-stub",
        LLM_MODEL_STAGE_A="offline/extractive",
        LLM_MODEL_STAGE_B="offline/extractive",
        LLM_API_BASE=judge_server,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = _results(tmp_path, _run_id(proc.stdout))
    assert doc["judges"] == {"enabled": True, "model": "openai/judge-stub", "reason": ""}
    assert len(_JudgeStub.prompts) == 3 * len(ids)
    for example in doc["examples"]:
        judges = example["judges"]
        assert judges["tldr_faithfulness"]["value"] is True
        assert judges["theme_relevance"]["value"] is True
        assert judges["similar_tech_not_invented"]["value"] is False
        assert judges["tldr_faithfulness"]["rationale"].startswith("stub judged")
    metrics = _client(tmp_path).get_run(doc["run_id"]).data.metrics
    assert metrics["tldr_faithfulness/mean"] == 1.0
    assert metrics["similar_tech_not_invented/mean"] == 0.0
    assert "LLM judges: skipped" not in proc.stdout
