"""Several worker processes starting together against a fresh local sqlite MLflow store: each
creates (and migrates) the store when it installs and warms up its recorder (what
``tasks.lifecycle`` does at worker start). Without the file lock they
race on table creation ("table ... already exists") and the losers switch tracking off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from services.processes import free_port, wait_until
from tests.support.service import REPO

WORKERS = 2

# mlflow is imported before the barrier so that the store initialisations themselves overlap
WORKER = """
import json, os, pathlib, sys, time
from observability.mlflow_store import configure_environment
from pipeline.settings import get_settings
configure_environment(get_settings())
import mlflow  # noqa: F401
go = pathlib.Path(sys.argv[1])
(go.parent / f"ready-{os.getpid()}").touch()
deadline = time.monotonic() + 120
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.002)
from observability.setup import configure, warm_up
recorder = configure(get_settings())
warm_up(recorder)
rt = recorder.runtime
print(json.dumps({"up": rt.health.available(), "reason": rt.health.reason,
                  "experiment": rt.store.experiment_id() if rt.store.experiment_ready else None}))
"""


def test_workers_starting_together_all_keep_tracking(tmp_path: Path) -> None:
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{db}",
        MLFLOW_ENABLE_TRACKING="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        STATE_DIR=str(tmp_path / "state"),
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens: not needed here
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(go)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    try:
        wait_until(
            lambda: (
                len(list(tmp_path.glob("ready-*"))) == WORKERS
                or any(p.poll() is not None for p in procs)
            ),
            120,
            "the workers' imports",
        )
        go.touch()
        outputs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    results = []
    for (out, err), proc in zip(outputs, procs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert "already exists" not in err, err[-3000:]
        assert "MLflow tracking disabled" not in err, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["up"] for r in results), results
    assert len({r["experiment"] for r in results}) == 1, results  # one experiment, not several
    assert db.with_name(db.name + ".lock").exists()
