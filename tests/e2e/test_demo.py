"""`technoshare demo` as a user runs it: offline, recorded links through the real Celery chain
(in-process worker, embedded redis), replies to the file sink, runs in the local MLflow store,
exit 0, nothing left running."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import pytest

from tests.support.service import REPO, subprocess_env

pytestmark = pytest.mark.e2e


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_runs_recorded_links_through_the_chain_offline(tmp_path):
    state = tmp_path / "state"
    env = subprocess_env("SLACK_", "REDIS_")
    env.update(STATE_DIR=str(state), APP_ENV="dev", PYTHONUNBUFFERED="1")
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--sink", "file"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("posted ") == 3
    assert "mlflow ui --backend-store-uri sqlite:///" in out.stdout
    calls = [json.loads(line) for line in (state / "slack_sink.jsonl").read_text().splitlines()]
    replies = [c for c in calls if c["method"] == "chat.postMessage"]
    assert len(replies) == 3 and {r["outcome"] for r in replies} == {"success"}
    assert len({r["metadata"]["job_id"] for r in replies}) == 3
    assert (state / "mlflow.db").stat().st_size > 0
    port = int(re.search(r"redis://127.0.0.1:(\d+)", out.stdout).group(1))
    assert not _listening(port)  # the embedded broker is gone
