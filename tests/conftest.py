"""Session-wide test setup: a hermetic environment, before anything imports litellm or mlflow.

- No ``.env`` is read (``TECHNOSHARE_ENV_FILE`` empty), and every setting of the caller's
  environment that could point the suite elsewhere is removed: each ``Settings`` field's
  variable, and ``MLFLOW_*``, ``SLACK_*``, ``LLM_*``, ``REDIS_*``, ``CELERY_*`` and the usual
  provider keys. Tests set what they need with ``monkeypatch.setenv`` or ``Settings(...)``.
- ``STATE_DIR`` is a fresh temporary directory, so the default MLflow store, the file sink and
  the local outbox of every test (and of every worker a test starts, which inherits this
  environment) live there, never in the checkout or a developer's MLflow server.
- Real model requests are blocked (``TECHNOSHARE_ALLOW_MODEL_REQUESTS=false``, checked by
  ``pipeline.llm``): only the offline model, in-process test doubles and loopback servers.
- The offline switches of ``pipeline.offline`` are applied.

Fixtures live in ``tests/support/<area>.py`` and are registered once here as plugins.

The suite runs on two processes (``scripts/test.sh``: pytest-xdist, ``--dist loadscope``, so a
module and its module-scoped servers stay on one process). Modules that start an MLflow server,
a worker stack or a fault scenario are collected first: each process takes the next module
when it is free, so the long ones start early and the many short ones fill in at the end.
"""

from __future__ import annotations

import os
import tempfile

_SCRUBBED_PREFIXES = ("MLFLOW_", "SLACK_", "LLM_", "REDIS_", "CELERY_", "GITHUB_", "ARXIV_")
_SCRUBBED_NAMES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "MISTRAL_API_KEY",
    "OLLAMA_API_BASE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "FLOWER_BASIC_AUTH",
    "APP_ENV",
    "STATE_DIR",
)


def _hermetic_environment() -> None:
    from pipeline.settings import ENV_FILE_VARIABLE, Settings

    fields = {name.upper() for name in Settings.model_fields}
    for key in list(os.environ):
        upper = key.upper()
        if upper in fields or upper.startswith(_SCRUBBED_PREFIXES) or upper in _SCRUBBED_NAMES:
            del os.environ[key]
    os.environ[ENV_FILE_VARIABLE] = ""
    os.environ["TECHNOSHARE_ALLOW_MODEL_REQUESTS"] = "false"
    os.environ["APP_ENV"] = "test"
    os.environ["STATE_DIR"] = tempfile.mkdtemp(prefix="technoshare-tests-")
    from pipeline.offline import OFFLINE_ENV

    os.environ.update(OFFLINE_ENV)


_hermetic_environment()

import pytest  # noqa: E402

from pipeline.settings import reset_settings_cache  # noqa: E402

pytest_plugins = (  # service first: the others import it (it must be assert-rewritten first)
    "tests.support.service",
    "tests.support.web",
    "tests.support.llm",
    "tests.support.mlflow_server",
)


def _module_weight(item: pytest.Item) -> int:
    if item.get_closest_marker("mlflow_server"):
        return 0
    if item.get_closest_marker("e2e") or item.get_closest_marker("faults"):
        return 1
    return 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_module_weight)  # stable: each module's tests keep their order


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Each test reads settings from its own environment (monkeypatch.setenv then use)."""
    reset_settings_cache()
    yield
    reset_settings_cache()


@pytest.fixture(autouse=True)
def _no_mlflow_variable_leaks():
    """mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI (and the MLflow client exports its
    variables): what a test leaves there would point the next tests' processes at its server."""
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        if key not in before:
            del os.environ[key]
    os.environ.update(before)


@pytest.fixture(autouse=True)
def _no_recorder_leaks():
    """A test that installs a recorder must not leave it to the next test."""
    from observability.recorder import get_recorder, install_recorder

    before = get_recorder()
    yield
    if get_recorder() is not before:
        install_recorder(None)
