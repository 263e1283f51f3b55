"""Recording an eval run in MLflow: experiment ``MLFLOW_EVAL_EXPERIMENT``, one run per eval.

Inside the run: params (models, prompt versions, dataset), ``mlflow.genai.evaluate`` over the
pipeline outputs with the code scorers (+ the LLM judges when a real model is configured) — the
run's evaluation view, one trace per example with its assessments — then the checklist metrics
(``log_batch``), ``eval_results.json`` and ``eval_summary.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eval.execute import ExampleRun
from eval.results import RESULTS_ARTIFACT, SUMMARY_ARTIFACT
from pipeline.settings import Settings


class CompareError(RuntimeError):
    """``--compare RUN_ID`` names no run with an ``eval_results.json``."""


def _client(settings: Settings) -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    if not settings.mlflow_tracking_uri:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    uri = settings.effective_tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def eval_experiment_id(settings: Settings) -> str:
    """The eval experiment, created on first use (local store: artifacts under STATE_DIR)."""
    client = _client(settings)
    name = settings.mlflow_eval_experiment
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if not settings.effective_tracking_uri().startswith(("http://", "https://")):
        location = (settings.state_dir / "mlflow-artifacts").resolve().as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def load_previous_results(settings: Settings, run_id: str) -> dict[str, Any]:
    client = _client(settings)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, RESULTS_ARTIFACT, tmp)
            return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except Exception as exc:  # MlflowException, missing file, bad JSON: one clear message
        raise CompareError(f"--compare {run_id}: no {RESULTS_ARTIFACT} found ({exc})") from exc


def _evaluation_rows(runs: list[ExampleRun]) -> list[dict[str, Any]]:
    return [
        {
            "inputs": {
                "example_id": r.example.id,
                "url": r.example.url,
                "message_text": r.example.message_text,
            },
            "outputs": r.outputs,
            "expectations": r.expectations,
        }
        for r in runs
    ]


def _judge_values(result_df: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """example id -> {judge: {"value", "rationale" | "error"}} from the evaluation's table."""
    values: dict[str, dict[str, Any]] = {}
    for _, row in result_df.iterrows():
        request = row.get("request") or {}
        example_id = request.get("example_id") if isinstance(request, dict) else None
        if not example_id:
            continue
        entry = {}
        for name in names:
            value = row.get(f"{name}/value")
            item: dict[str, Any] = {"value": None if value is None else bool(value)}
            if row.get(f"{name}/error_message"):
                item["error"] = str(row.get(f"{name}/error_message"))
            elif row.get(f"{name}/rationale"):
                item["rationale"] = str(row.get(f"{name}/rationale"))
            entry[name] = item
        values[example_id] = entry
    return values


def record_eval_run(
    settings: Settings,
    *,
    runs: list[ExampleRun],
    params: dict[str, str],
    scorers: list[Any],
    judge_names: list[str],
    finish: Callable[
        [str, dict[str, dict[str, Any]]], tuple[dict[str, Any], dict[str, float], str]
    ],
    run_name: str,
) -> str:
    """Open the run, evaluate, then ``finish(run_id, judge_values) -> (doc, metrics, summary_md)``
    builds what is logged. Returns the run id."""
    # evaluate's worker threads and its trace exporters share one SQLAlchemy pool (5 + 10
    # overflow): at 10 workers a local sqlite store ran out of connections and dropped 8 of 32
    # example traces ("QueuePool limit ... reached"). Fewer workers: the offline eval is
    # CPU-bound anyway on two cores.
    os.environ.setdefault("MLFLOW_GENAI_EVAL_MAX_WORKERS", "4")
    import mlflow
    from mlflow.entities import Metric

    client = _client(settings)
    experiment_id = eval_experiment_id(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as active:
        run_id = active.info.run_id
        mlflow.set_tags({"technoshare.kind": "eval"})
        mlflow.log_params({k: v[:6000] for k, v in params.items()})
        # mlflow prints a banner on stdout; stdout is the eval's own summary, so divert it.
        with contextlib.redirect_stdout(sys.stderr):
            evaluation = mlflow.genai.evaluate(data=_evaluation_rows(runs), scorers=scorers)
        # evaluate exports its per-example traces asynchronously: wait for all of them, or a
        # process that exits right after the run keeps only the ones exported so far.
        mlflow.flush_trace_async_logging()
        judges = _judge_values(evaluation.result_df, judge_names) if judge_names else {}
        doc, metrics, summary_md = finish(run_id, judges)
        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, 0) for k, v in sorted(metrics.items())]
        for start in range(0, len(batch), 1000):  # log_batch takes at most 1000 metrics
            client.log_batch(run_id, metrics=batch[start : start + 1000])
        mlflow.log_dict(doc, RESULTS_ARTIFACT)
        mlflow.log_text(summary_md, SUMMARY_ARTIFACT)
        mlflow.set_tag("technoshare.eval.verdict", doc.get("verdict", ""))
    return str(run_id)
