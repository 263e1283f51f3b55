"""Session-wide test setup: offline switches before anything imports litellm or mlflow.

Area-specific fixtures live in ``tests/support/<area>.py`` and are imported by the test files
that use them (this file stays small and shared).
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_OFFLINE_MODE"] = "true"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
os.environ.setdefault("APP_ENV", "test")
# Never let a developer's real credentials leak into a test run.
for _secret in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "GITHUB_TOKEN"):
    os.environ.pop(_secret, None)

import pytest  # noqa: E402

from pipeline.settings import reset_settings_cache  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Each test reads settings from its own environment (monkeypatch.setenv then use)."""
    reset_settings_cache()
    yield
    reset_settings_cache()
