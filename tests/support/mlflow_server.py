"""A real ``mlflow server`` for tests (sqlite backend, or ``backend_uri`` such as a
PostgreSQL one; proxied artifacts, free port), started with a bounded wait and stopped by PID.
``stop()`` + ``start()`` restart it on the same port and store, which is how the outage tests
take MLflow away and bring it back. ``requests()`` counts what it served, from its access log.
``app_name``: ``mlflow server --app-name`` (``technoshare``: the project's app with the batch
run-write endpoint; ``basic-auth``: MLflow's). ``admin`` (user, password): basic auth on, as
compose runs it (users in a sqlite file beside the store, no permission by default; with
``technoshare`` through ``TECHNOSHARE_MLFLOW_AUTH=basic``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.service import Process, free_port, wait_until

START_TIMEOUT = 90.0  # starts in 10-15 s on 2 idle cores; leave room for a busy machine
# uvicorn's access line (mlflow's log config): ... "POST /api/2.0/mlflow/runs/create HTTP/1.1" 200
_ACCESS = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) ([^ ?"]+)[^"]*" \d{3}')


class MlflowServer:
    def __init__(
        self,
        root: Path,
        backend_uri: str | None = None,
        *,
        app_name: str | None = None,
        admin: tuple[str, str] | None = None,
    ) -> None:
        self.root = root
        self.backend_uri = backend_uri
        self.app_name = app_name
        self.admin = admin
        if app_name is not None:
            _require_app(app_name)
        self.port = free_port()
        self.db = root / "mlflow.db"
        self.artifacts = root / "artifacts"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.proc: Process | None = None
        self.starts = 0
        self.extra_allowed_hosts: list[str] = []  # e.g. a proxy's host:port in front of it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_", "TECHNOSHARE_MLFLOW_"))
        }
        env.update(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        if self.admin is not None:
            env.update(self._auth_env())
        argv = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_uri or f"sqlite:///{self.db}",
            "--artifacts-destination", str(self.artifacts),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2",
            "--allowed-hosts",
            ",".join([f"127.0.0.1:{self.port}", f"localhost:{self.port}",
                      *self.extra_allowed_hosts]),
            *(["--app-name", self.app_name] if self.app_name else []),
        ]  # fmt: skip
        self.starts += 1
        self.proc = Process(f"mlflow-{self.port}-{self.starts}", argv, env, self.root)
        wait_until(self._healthy, START_TIMEOUT, "mlflow server /health", 0.2)
        return self

    def _auth_env(self) -> dict[str, str]:
        assert self.admin is not None
        config = self.root / "basic_auth.ini"
        if not config.exists():  # kept over a restart (same users, same secret key)
            config.write_text(
                "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
                f"database_uri = sqlite:///{self.root / 'basic_auth.db'}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                # a password check is PBKDF2 (~0.3 s of a core here): once a minute per worker
                "auth_cache_ttl_seconds = 60\n"
            )
            (self.root / "secret_key").write_text(secrets.token_hex(16))
        env = {
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_AUTH_ADMIN_USERNAME": self.admin[0],
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": (self.root / "secret_key").read_text(),
        }
        if self.app_name == "technoshare":
            env["TECHNOSHARE_MLFLOW_AUTH"] = "basic"
        return env

    def _healthy(self) -> bool:
        assert self.proc is not None
        if not self.proc.alive():
            raise RuntimeError(f"mlflow server exited:\n{self.proc.log()[-3000:]}")
        try:
            return httpx.get(self.url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=10)
            self.proc = None

    def requests(self) -> Counter[tuple[str, str]]:
        """(method, path) -> how many this server answered since its last start, health probes
        left out. Artifact uploads are counted under one path, ``.../artifacts/*``."""
        counts: Counter[tuple[str, str]] = Counter()
        for method, path in _ACCESS.findall(self.proc.log() if self.proc else ""):
            if path == "/health":
                continue
            if "/mlflow-artifacts/artifacts/" in path:
                path = (
                    path.split("/mlflow-artifacts/artifacts/")[0] + "/mlflow-artifacts/artifacts/*"
                )
            counts[(method, path)] += 1
        return counts


def _require_app(app_name: str) -> None:
    from importlib.metadata import entry_points

    if app_name not in {e.name for e in entry_points(group="mlflow.app")}:
        raise RuntimeError(
            f"no mlflow.app entry point {app_name!r} in this environment: "
            "reinstall the project (pip install -e .) to register pyproject's entry points"
        )


@pytest.fixture(scope="module", name="mlflow_server")
def mlflow_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield server
    server.stop()


# --- reading what was recorded, through the MLflow client only ---------------------------------
def client_and_experiment(url: str) -> tuple[Any, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("technoshare_commentator")
    assert exp is not None
    return client, exp.experiment_id


def parent_of(client: Any, exp_id: str, job_id: str) -> Any:
    runs = client.search_runs(
        [exp_id], f"tags.job_id = '{job_id}' and tags.run_kind = 'job'", max_results=5
    )
    assert len(runs) == 1, f"job {job_id}: {len(runs)} parent runs"
    return runs[0]


def children_of(client: Any, exp_id: str, parent_id: str) -> dict[str, Any]:
    runs = client.search_runs([exp_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r.data.tags["stage"]: r for r in runs}


def tolerant(check: Any) -> Any:
    """A poll step that treats a slow answer (3 s client timeout, busy machine) as 'not yet'."""
    from mlflow.exceptions import MlflowException

    def step() -> Any:
        try:
            return check()
        except MlflowException:
            return None

    return step


def wait_for_job(client: Any, exp_id: str, job_id: str, stages: int, timeout: float = 90) -> Any:
    """Poll until the parent is terminated with ``stages`` terminated stage runs. Nobody replays
    the outbox here: a record that went there is written by the recording processes' own
    drainers, which is what is being tested."""

    @tolerant
    def done() -> Any:
        runs = client.search_runs(
            [exp_id], f"tags.job_id = '{job_id}' and tags.run_kind = 'job'", max_results=5
        )
        if len(runs) != 1 or runs[0].info.status == "RUNNING":
            return None
        finished = [
            r
            for r in children_of(client, exp_id, runs[0].info.run_id).values()
            if r.info.status != "RUNNING"
        ]
        return runs[0] if len(finished) >= stages else None

    return wait_until(done, timeout, f"runs of job {job_id}", 0.3)


def artifact_json(client: Any, run_id: str, name: str, tmp_path: Any) -> Any:
    path = client.download_artifacts(run_id, name, str(tmp_path))
    with open(path) as fh:
        return json.load(fh)


def the_trace(
    exp_id: str,
    url: str,
    job_id: str,
    spans: int,
    timeout: float = 90,
    names: tuple[str, ...] = (),
) -> Any:
    """The job's one trace, once it has ``spans`` spans and every span in ``names`` (spans are
    exported one by one, in no set order: a count alone can be reached by LLM spans first)."""
    import mlflow

    mlflow.set_tracking_uri(url)

    @tolerant
    def found() -> Any:
        traces = mlflow.search_traces(
            locations=[exp_id], filter_string=f"tags.job_id = '{job_id}'", return_type="list"
        )
        if len(traces) != 1 or len(traces[0].data.spans) < spans:
            return None
        if not set(names) <= {s.name for s in traces[0].data.spans}:
            return None
        return traces

    traces = wait_until(found, timeout, f"trace of job {job_id}", 0.3)
    return traces[0]
