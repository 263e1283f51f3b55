"""The environment switches that keep litellm and MLflow from reaching the internet.

litellm fetches a model price list at import unless ``LITELLM_LOCAL_MODEL_COST_MAP`` is set, and
``LITELLM_OFFLINE_MODE`` stops its other fetches; MLflow sends telemetry unless
``MLFLOW_DISABLE_TELEMETRY``; ``LITELLM_MODE=PRODUCTION`` keeps litellm from loading ``.env``. Every entry point (the ``technoshare`` CLI, the Celery app, the
test suite) applies them before either library is imported; a value the caller set wins.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    # litellm loads ./.env into the process environment at import unless this is set: which
    # file (if any) holds settings is ours to decide (pipeline.settings.load_env_file)
    "LITELLM_MODE": "PRODUCTION",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def apply_offline_defaults() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
