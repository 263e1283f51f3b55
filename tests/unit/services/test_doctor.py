"""``technoshare doctor`` as a user runs it (a subprocess), against real parts: redis-server, a
real celery worker, a local Slack stand-in, a local MLflow store; then with each part broken."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_slack import FakeSlack
from tests.support.service import (
    BOT_TOKEN,
    REPO,
    RedisServer,
    Worker,
    free_port,
    service_env,
)


def doctor(env: dict[str, str]) -> tuple[int, dict[str, str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "doctor", "--ping-timeout", "3"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = {}
    for line in proc.stdout.splitlines():
        status, name, *_ = line.split()
        lines[name] = line
        assert status in ("PASS", "FAIL", "SKIP"), line
    return proc.returncode, lines


@pytest.fixture(scope="module")
def healthy_env(
    redis_server: RedisServer, fake_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("doctor-state")
    env = service_env(
        redis_server.url,
        fake_slack.api_url,
        state,
        MLFLOW_TRACKING_URI=f"sqlite:///{state / 'mlflow.db'}",
        LLM_DAILY_BUDGET_USD="2.5",
    )
    worker = Worker("doctor-io", "io", "solo", 1, env, state).wait_ready()
    yield env
    worker.stop()


def test_all_parts_up_every_line_passes(healthy_env: dict[str, str]) -> None:
    code, lines = doctor(healthy_env)
    assert code == 0, lines
    assert set(lines) == {
        "settings",
        "mlflow",
        "redis",
        "outbox",
        "workers",
        "queues",
        "slack",
        "llm",
    }
    for name, line in lines.items():
        assert line.startswith("PASS"), line
    assert "doctor-io@" in lines["workers"]
    assert "io=0 llm=0" in lines["queues"]
    assert "auth.test ok (bot UBOT)" in lines["slack"]
    assert "experiment technoshare_commentator: 0 runs" in lines["mlflow"]
    assert "budget $0.0000 of $2.50 today" in lines["llm"]
    assert BOT_TOKEN not in "\n".join(lines.values())  # secrets are masked
    assert "slack_bot_token" in lines["settings"]


def test_broken_parts_fail_their_lines_and_the_exit_status(
    healthy_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(healthy_env)
    env.update(
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        SLACK_BOT_TOKEN="xoxb-wrong",
        LLM_MODEL="openai/gpt-4o-mini",
        STATE_DIR=str(tmp_path),
    )
    env.pop("OPENAI_API_KEY", None)
    code, lines = doctor(env)
    assert code == 1
    for name in ("mlflow", "redis", "outbox", "workers", "queues", "slack", "llm"):
        assert lines[name].startswith("FAIL"), lines[name]
    assert "unreachable" in lines["mlflow"]
    assert "invalid_auth" in lines["slack"]
    assert "OPENAI_API_KEY" in lines["llm"]
    assert "xoxb-wrong" not in "\n".join(lines.values())
    assert lines["settings"].startswith("PASS")


def test_the_workers_line_fails_at_once_when_the_broker_is_down() -> None:
    """One bounded connection attempt, not kombu's retries inside ``inspect ping`` (25 s)."""
    import time

    from pipeline.settings import Settings
    from services.doctor import FAIL, check_workers

    settings = Settings(_env_file=None, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    check = check_workers(settings, 2.0)
    took = time.monotonic() - started
    assert check.status == FAIL and "Connection refused" in check.detail, check
    assert took < 10, f"the workers check took {took:.1f} s"
