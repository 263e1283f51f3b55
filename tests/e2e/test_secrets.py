"""Secrets never reach logs, MLflow (runs, tags, params, spans, artifacts) or outputs, even when a
provider's error echoes the API key back (some do on 401).

``technoshare run`` on a recorded link, with every secret setting set and the LLM pointed at a
local OpenAI-compatible server that answers 401 quoting the key it was sent; then every byte it
wrote (stdout, stderr, the sqlite MLflow store, artifact files, the outbox) is scanned.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.service import REPO, subprocess_env

pytestmark = pytest.mark.e2e

SECRETS = {
    "OPENAI_API_KEY": "sk-proj-TESTsecretKEY0123456789abcdefABCDEF",
    "SLACK_BOT_TOKEN": "xoxb-1111111111-2222222222-TESTsecretBOTtoken",
    "SLACK_SIGNING_SECRET": "TESTsigningSECRET0123456789abcdef",
    "SLACK_APP_TOKEN": "xapp-1-A111-2222-TESTsecretAPPtoken0123",
    "GITHUB_TOKEN": "ghp_TESTsecretGITHUBtoken0123456789abcd",
}
ARXIV_URL = "https://arxiv.org/abs/1809.00949"


class EchoingProvider:
    """An OpenAI-compatible endpoint that rejects every call with the key it was given."""

    def __init__(self) -> None:
        seen: list[str] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                seen.append(key)
                body = json.dumps(
                    {
                        "error": {
                            "message": f"Incorrect API key provided: {key}. Check your key.",
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                        }
                    }
                ).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[EchoingProvider]:
    server = EchoingProvider()
    yield server
    server.stop()


def test_no_secret_in_logs_mlflow_or_outputs_when_the_provider_echoes_the_key(provider, tmp_path):
    state = tmp_path / "state"
    env = {
        **subprocess_env(),
        **SECRETS,
        "STATE_DIR": str(state),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "LLM_MODEL": "openai/stub-model",
        "LLM_API_BASE": provider.url,
        "LLM_MAX_RETRIES": "0",
        "LOG_LEVEL": "DEBUG",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "run", ARXIV_URL, "--recorded", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert provider.seen and provider.seen[0] == SECRETS["OPENAI_API_KEY"]  # it was echoed
    assert proc.returncode == 1, proc.stderr[-2000:]  # the LLM stage failed: an error outcome
    written = {"stdout": proc.stdout, "stderr": proc.stderr}
    for path in state.rglob("*"):
        if path.is_file():
            written[str(path.relative_to(tmp_path))] = path.read_bytes().decode("latin-1")
    assert any(name.endswith("mlflow.db") for name in written), sorted(written)
    leaks = [
        (where, name)
        for where, text in written.items()
        for name, secret in SECRETS.items()
        if secret in text
    ]
    assert leaks == []
    # ... and the failure itself was recorded, with the provider's words minus the key
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("technoshare_commentator")
    [parent] = client.search_runs([experiment.experiment_id], "tags.run_kind = 'job'")
    assert parent.info.status == "FAILED" and parent.data.tags["outcome"] == "error"
    assert "Incorrect API key provided" in parent.data.tags["error"]
    assert "[REDACTED]" in parent.data.tags["error"]


def test_the_scan_would_see_a_leak(tmp_path: Path) -> None:
    """The scan reads the store's raw bytes: a secret written there is found."""
    import sqlite3

    db = tmp_path / "x.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table t (v text)")
        conn.execute("insert into t values (?)", (SECRETS["GITHUB_TOKEN"],))
    assert SECRETS["GITHUB_TOKEN"] in db.read_bytes().decode("latin-1")
