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
WORKERS = ("worker-io", "worker-llm")


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
    assert set(services) >= {"redis", "mlflow", "ingest", *WORKERS, "beat", "flower"}
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


def test_only_ingest_and_dashboards_are_published_on_loopback_by_default(compose):
    published = {n for n, s in compose["services"].items() if s.get("ports")}
    assert published == {"ingest", "mlflow", "flower"}
    for name in published:
        for port in compose["services"][name]["ports"]:
            assert port.startswith("${") and ":-127.0.0.1}" in port, (name, port)


def test_secrets_are_required_not_defaulted(compose):
    text = COMPOSE.read_text()
    for var in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "FLOWER_BASIC_AUTH"):
        assert re.search(r"\$\{" + var + r":\?[^}]+\}", text), var
    assert not re.search(r"(TOKEN|SECRET|KEY|AUTH)\s*:\s*['\"]?[A-Za-z0-9]{8,}", text)


def test_redis_is_durable_and_mlflow_uses_the_field_notes_flags(compose):
    assert "--appendonly" in compose["services"]["redis"]["command"]
    assert any(v.endswith(":/data") for v in compose["services"]["redis"]["volumes"])
    mlflow = compose["services"]["mlflow"]
    cmd = mlflow["command"]
    assert mlflow["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert cmd[cmd.index("--workers") + 1] == "2"
    assert "mlflow:*" in cmd[cmd.index("--allowed-hosts") + 1]
    assert cmd[cmd.index("--backend-store-uri") + 1].startswith("sqlite:////data/")
    assert any(v.endswith(":/data") for v in mlflow["volumes"])


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
