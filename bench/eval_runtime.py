"""Eval suite runtime (not a test): the whole offline ``technoshare eval`` against its budget.

Runs the CLI as CI does (a subprocess, a fresh sqlite MLflow store in a temp dir), ``--repeat``
times, and reports the wall time of each run against the 180 s budget, with the split between
the pipeline (sum of per-example durations from ``eval_results.json``) and everything else
(imports, MLflow: ``genai.evaluate``, metrics, artifacts) as a ratio measured in the same run.

    python bench/eval_runtime.py [--repeat 1] [--ids a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 180.0


def run_once(ids: str | None) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "MLFLOW_"))}
        env.update(STATE_DIR=f"{tmp}/state", PYTHONPATH=str(REPO), MLFLOW_DISABLE_TELEMETRY="true")
        cmd = [sys.executable, "-m", "services.cli", "eval", "--results-json", f"{tmp}/r.json",
               "--min-pass-rate", "0"]  # fmt: skip
        if ids:
            cmd += ["--ids", ids]
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"eval failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        return wall, json.loads(Path(f"{tmp}/r.json").read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--ids", help="only these example ids")
    args = parser.parse_args()
    print(f"{'run':>3} {'examples':>8} {'wall s':>7} {'pipeline s':>10} {'other s':>8} "
          f"{'other/pipeline':>14} {'budget used':>11}")  # fmt: skip
    for i in range(args.repeat):
        wall, doc = run_once(args.ids)
        pipeline = sum(e["duration_seconds"] for e in doc["examples"])
        other = wall - pipeline
        print(
            f"{i + 1:>3} {len(doc['examples']):>8} {wall:>7.1f} {pipeline:>10.1f} {other:>8.1f} "
            f"{other / max(pipeline, 1e-9):>14.2f} {wall / BUDGET_SECONDS:>10.0%}"
        )


if __name__ == "__main__":
    main()
