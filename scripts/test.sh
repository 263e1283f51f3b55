#!/usr/bin/env bash
# The test command: lint, types, the test suite (real redis-server, celery workers, mlflow
# server and local HTTP servers on 127.0.0.1) and the offline evaluation gate.
# Creates .venv and installs what it needs on first run. Extra args go to pytest.
set -euo pipefail
# shellcheck source=scripts/bootstrap.sh
source "$(dirname "$0")/bootstrap.sh"

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing redis-server (apt)"
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is required by the tests: install it (e.g. sudo apt-get install redis-server)" >&2
    exit 1
  fi
fi

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy pipeline services tasks observability prompts eval
echo "== pytest"
# TEST_PROCESSES (default 2) processes, a module each at a time (its module-scoped servers stay
# in one process), in collection order (tests/conftest.py puts the long modules first);
# TEST_PROCESSES=0 runs everything in this one process.
python -m pytest -n "${TEST_PROCESSES:-2}" --dist loadscope --no-loadscope-reorder "$@"
echo "== evaluation gate (offline model, recorded sources)"
# like the tests, the gate ignores a developer's .env (which may point at a real model)
TECHNOSHARE_ENV_FILE="" technoshare eval --min-pass-rate 0.8 --summary-md "${EVAL_SUMMARY:-.technoshare/eval_summary.md}"
