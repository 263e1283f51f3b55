"""`technoshare dev-stack` without Docker: everything comes up, Flower asks for basic auth from
settings, Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.service import REPO, subprocess_env, wait_until

pytestmark = pytest.mark.e2e


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    kids = {int(p) for p in out.stdout.split()}
    return kids.union(*(_descendants(k) for k in kids)) if kids else set()


def test_dev_stack_starts_serves_and_stops_everything(tmp_path):
    env = {
        **subprocess_env(),
        "STATE_DIR": str(tmp_path / "state"),
        "FLOWER_BASIC_AUTH": "admin:s3cret-pass",
        "SLACK_SINK": "console",
        "MLFLOW_ENABLE_TRACKING": "false",
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp_path / "out.txt").open("w+")
    argv = [sys.executable, "-m", "services.cli", "dev-stack", "--no-mlflow-server",
            "--redis-port", "0", "--ingest-port", "0", "--flower-port", "0"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        text = wait_until(lambda: _read_if(log, "Ctrl-C stops everything"), 120, "dev-stack", 0.2)
        ingest = re.search(r"ingest\s+(http://127.0.0.1:\d+)", text).group(1)
        flower = re.search(r"flower\s+(http://127.0.0.1:\d+)", text).group(1)
        assert "s3cret" not in text  # the password is not printed when it comes from settings
        assert httpx.get(ingest + "/readyz").status_code == 200
        assert httpx.get(flower + "/healthcheck").status_code == 200
        assert httpx.get(flower + "/api/workers").status_code == 401
        workers = httpx.get(flower + "/api/workers", auth=("admin", "s3cret-pass"), timeout=10)
        assert workers.status_code == 200
        children = _descendants(proc.pid)
        assert len(children) >= 6  # redis, 2 workers (+ pool), beat, ingest, flower
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        time.sleep(0.5)
        alive = [p for p in children if _alive(p)]
        assert alive == [], f"left running: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def _read_if(fh, marker: str) -> str | None:
    fh.seek(0)
    text = fh.read()
    return text if marker in text else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"  # a zombie is gone
