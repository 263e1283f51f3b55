"""compose.yaml and the Dockerfile, checked without a Docker engine: the compose-spec schema
(check-jsonschema) plus the properties the deployment relies on."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.service import REPO

COMPOSE = REPO / "compose.yaml"
WORKERS = ("worker-io", "worker-post", "worker-llm")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_validates_against_the_compose_spec():
    exe = shutil.which("check-jsonschema")
    assert exe, "check-jsonschema (dev extra) is required"
    out = subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_role_is_there_and_starts_after_its_dependencies_are_healthy(compose):
    services = compose["services"]
    assert set(services) >= {"redis", "postgres", "mlflow", "ingest", *WORKERS, "beat", "flower"}
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond == {"condition": "service_healthy"}, (name, dep)
            assert "healthcheck" in services[dep], dep
    assert "/healthcheck" in str(services["flower"]["healthcheck"]["test"])
    assert "/readyz" in str(services["ingest"]["healthcheck"]["test"])


def test_workers_scale(compose):
    for name in WORKERS:
        svc = compose["services"][name]
        assert "container_name" not in svc and "ports" not in svc, name
    llm = compose["services"]["worker-llm"]["command"]
    assert llm[llm.index("-Q") + 1] == "llm" and llm[llm.index("-P") + 1] == "threads"
    assert "LLM_WORKER_CONCURRENCY" in llm[llm.index("-c") + 1]
    io = compose["services"]["worker-io"]["command"]
    assert io[io.index("-Q") + 1] == "io"


def test_posting_has_its_own_worker_that_no_fetch_can_occupy(compose):
    """Each worker consumes one queue: a slow fetch holds io processes only."""
    queues = {}
    for name in WORKERS:
        cmd = compose["services"][name]["command"]
        assert cmd.count("-Q") == 1 and "," not in cmd[cmd.index("-Q") + 1], name
        queues[name] = cmd[cmd.index("-Q") + 1]
    assert queues == {"worker-io": "io", "worker-post": "post", "worker-llm": "llm"}


def test_only_ingest_and_dashboards_are_published_and_only_on_loopback(compose):
    """Flower's /metrics has no auth: nothing is published beyond 127.0.0.1, not by a variable."""
    published = {n for n, s in compose["services"].items() if s.get("ports")}
    assert published == {"ingest", "mlflow", "flower"}
    for name in published:
        for port in compose["services"][name]["ports"]:
            assert port.startswith("127.0.0.1:"), (name, port)


def test_secrets_are_required_not_defaulted(compose):
    text = COMPOSE.read_text()
    for var in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "FLOWER_BASIC_AUTH", "REDIS_PASSWORD",
                "MLFLOW_ADMIN_PASSWORD", "MLFLOW_DB_PASSWORD"):  # fmt: skip
        assert re.search(r"\$\{" + var + r":\?[^}]+\}", text), var
    assert not re.search(r"(TOKEN|SECRET|KEY|AUTH|PASSWORD)\s*:\s*['\"]?[A-Za-z0-9]{8,}", text)


LLM_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LLM_API_BASE")


def _env(compose, name: str) -> dict:
    return compose["services"][name].get("environment") or {}


def test_each_service_gets_only_the_secrets_it_needs(compose):
    ingest = _env(compose, "ingest")
    assert {"SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"} <= set(ingest)
    assert not set(ingest) & {*LLM_KEYS, "GITHUB_TOKEN", "MLFLOW_TRACKING_PASSWORD"}
    for name in WORKERS:
        env = _env(compose, name)
        assert {"SLACK_BOT_TOKEN", "OPENAI_API_KEY", "MLFLOW_TRACKING_PASSWORD"} <= set(env), name
    for name in ("beat", "flower"):
        env = _env(compose, name)
        secret = {k for k in env if re.search(r"TOKEN|SECRET|KEY|PASSWORD", k)}
        assert secret == set(), (name, secret)
        assert env["SLACK_SINK"] == "console" and "REDIS_URL" in env


def test_redis_requires_a_password_and_every_client_url_carries_it(compose):
    redis = compose["services"]["redis"]
    cmd = redis["command"]
    assert cmd[cmd.index("--requirepass") + 1] == "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
    assert "REDISCLI_AUTH" in str(redis["healthcheck"]["test"])  # the check authenticates
    for name, svc in compose["services"].items():
        url = (svc.get("environment") or {}).get("REDIS_URL")
        if name not in ("redis", "postgres", "mlflow"):  # the MLflow server does not use Redis
            assert url and url.startswith("redis://:${REDIS_PASSWORD:?"), name


def test_mlflow_runs_with_basic_auth_and_workers_log_in(compose):
    mlflow = compose["services"]["mlflow"]
    cmd, env = mlflow["command"], mlflow["environment"]
    # this project's app (MLflow's server + the one-request run write) wrapping basic auth
    assert cmd[cmd.index("--app-name") + 1] == "technoshare"
    assert env["TECHNOSHARE_MLFLOW_AUTH"] == "basic"
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"].startswith("${MLFLOW_SECRET_KEY:?")
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/basic_auth.ini"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "mlflow[auth]" in dockerfile and "/etc/mlflow/basic_auth.ini" in dockerfile
    assert "default_permission = NO_PERMISSIONS" in dockerfile
    assert "database_uri = sqlite:////data/" in dockerfile  # users on the volume
    for name in WORKERS:
        worker = _env(compose, name)
        assert worker["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"], name
        assert worker["MLFLOW_TRACKING_USERNAME"] == env["MLFLOW_AUTH_ADMIN_USERNAME"], name


def test_every_service_has_a_memory_limit_cpu_limit_and_bounded_logs(compose):
    for name, svc in compose["services"].items():
        assert svc.get("mem_limit") and svc.get("cpus"), name
        options = svc["logging"]["options"]
        assert svc["logging"]["driver"] == "json-file" and options["max-size"], name
        assert int(options["max-file"]) >= 1, name


def test_every_image_is_pinned(compose):
    for name, svc in compose["services"].items():
        image = svc.get("image")
        assert image, name  # a built service without one would be tagged latest
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest" and "latest" not in image, (name, image)
    froms = re.findall(r"^FROM (\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert all(":latest" not in f for f in froms)
    version = re.search(r"^ARG PYTHON_VERSION=(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    assert version and re.fullmatch(r"\d+\.\d+\.\d+", version.group(1))  # a patch release


def test_redis_is_durable_and_mlflow_uses_the_field_notes_flags(compose):
    assert "--appendonly" in compose["services"]["redis"]["command"]
    assert any(v.endswith(":/data") for v in compose["services"]["redis"]["volumes"])
    mlflow = compose["services"]["mlflow"]
    cmd = mlflow["command"]
    assert mlflow["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert cmd[cmd.index("--workers") + 1] == "${MLFLOW_SERVER_WORKERS:-2}"
    assert cmd[cmd.index("--app-name") + 1] == "technoshare"
    assert "mlflow:*" in cmd[cmd.index("--allowed-hosts") + 1]
    assert any(v.endswith(":/data") for v in mlflow["volumes"])  # artifacts, auth users


def test_dockerfile_builds_one_image_per_role_with_its_own_extras(compose):
    text = (REPO / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n((?:(?!^FROM ).*\n)*)", text, re.M))
    assert set(stages) >= {"ingest", "worker", "flower", "mlflow"}
    assert re.search(r"pip install \.\n", stages["ingest"])  # base install only
    assert 'pip install ".[worker]"' in stages["worker"]
    assert 'pip install ".[server]"' in stages["mlflow"]
    for svc in compose["services"].values():
        if "build" in svc:
            assert svc["build"]["target"] in stages
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".git", ".venv", ".technoshare"} <= set(ignored)


def test_mlflow_stores_its_runs_in_postgres_with_the_driver_in_its_image(compose):
    """The server writes PostgreSQL (every server worker at once: docs/SCALING.md), reached on
    the compose network only, its password required and never on a command line."""
    services = compose["services"]
    postgres, mlflow = services["postgres"], services["mlflow"]
    assert re.fullmatch(r"postgres:\d+\.\d+(-alpine)?", postgres["image"])  # a minor release
    assert "ports" not in postgres
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "postgres-data" in compose["volumes"]
    assert "pg_isready" in str(postgres["healthcheck"]["test"])
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${MLFLOW_DB_PASSWORD:?")
    assert mlflow["depends_on"]["postgres"] == {"condition": "service_healthy"}

    uri = mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert uri.startswith("postgresql+psycopg2://mlflow:${MLFLOW_DB_PASSWORD:?")
    assert uri.endswith("@postgres:5432/" + postgres["environment"]["POSTGRES_DB"])
    cmd = mlflow["command"]
    assert "--backend-store-uri" not in cmd and "MLFLOW_DB_PASSWORD" not in str(cmd)
    artifacts = cmd[cmd.index("--artifacts-destination") + 1]
    assert any(artifacts.startswith(v.split(":", 1)[1]) for v in mlflow["volumes"]), artifacts
    assert "MLFLOW_SERVER_WORKERS" in cmd[cmd.index("--workers") + 1]

    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    server = extras["optional-dependencies"]["server"]
    assert any(d.startswith("psycopg2-binary") for d in server), server
    dockerfile = (REPO / "Dockerfile").read_text()
    target = dockerfile.split("AS mlflow", 1)[1].split("\nFROM ", 1)[0]
    assert 'pip install ".[server]"' in target and 'python -c "import psycopg2"' in target
