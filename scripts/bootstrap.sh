# Sourced by scripts/test.sh and scripts/demo.sh: create .venv and install the project into it.
# Needs only python3 >= 3.11 on PATH. EXTRAS picks the install (default: dev).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-dev}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=".venv/.installed-$EXTRAS-$(sha256sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "== installing technoshare-commentator[$EXTRAS] (first run takes a few minutes)"
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e ".[$EXTRAS]"
  touch "$stamp"
fi
# Offline switches: nothing may reach beyond loopback.
# (the technoshare CLI, the Celery app and the tests apply pipeline/offline.py themselves;
# these cover anything else run from this shell)
export LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_OFFLINE_MODE=true
export MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=true
