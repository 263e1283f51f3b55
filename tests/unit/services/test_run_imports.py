"""``technoshare run --recorded`` on the offline model with tracking off never imports litellm
(seconds of start-up), nor mlflow."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.service import subprocess_env

_RUN = (
    "import json, sys\n"
    "from services.cli import main\n"
    "code = main(['run', '--recorded', 'https://github.com/encode/httpx'])\n"
    "heavy = sorted(m for m in ('litellm', 'openai', 'mlflow') if m in sys.modules)\n"
    "print(json.dumps({'code': code, 'heavy': heavy}))\n"
)


def test_an_offline_run_imports_neither_litellm_nor_mlflow(tmp_path):
    env = subprocess_env()
    env.update(
        MLFLOW_ENABLE_TRACKING="false", LLM_MODEL="offline/extractive", STATE_DIR=str(tmp_path)
    )
    done = subprocess.run(
        [sys.executable, "-c", _RUN], env=env, capture_output=True, text=True, timeout=120
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"code": 0, "heavy": []}, done.stderr[-2000:]
