#!/usr/bin/env bash
# Start the MLflow tracking server with the settings measured to work on this stack:
#   - MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: otherwise 7 job-runner processes (~3.9 GB)
#   - sqlite backend + proxied artifacts under MLFLOW_STATE_DIR (default: $STATE_DIR/mlflow-server)
#   - --workers 2, --allowed-hosts (a compose service name like mlflow:5000 gets 403 without it)
#   - uvloop next to the server (pip extra `server`): keeps kept-alive requests from stalling
# Host and port from MLFLOW_HOST (default 127.0.0.1) and MLFLOW_PORT (default 5000).
# Check: curl http://127.0.0.1:5000/health   ->  OK
set -euo pipefail

host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"
state="${MLFLOW_STATE_DIR:-${STATE_DIR:-.technoshare}/mlflow-server}"
workers="${MLFLOW_WORKERS:-2}"
allowed="${MLFLOW_ALLOWED_HOSTS:-127.0.0.1:${port},localhost:${port},mlflow:${port},${host}:${port}}"

mkdir -p "${state}/artifacts"
state="$(cd "${state}" && pwd)"  # sqlite:/// needs an absolute path

export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
export MLFLOW_DISABLE_TELEMETRY=true

if ! command -v mlflow >/dev/null 2>&1; then
  echo "start_mlflow.sh: the mlflow command is missing; install the server extra: pip install '.[server]'" >&2
  exit 1
fi

echo "MLflow server on http://${host}:${port} (store ${state}/mlflow.db, artifacts ${state}/artifacts)" >&2
exec mlflow server \
  --backend-store-uri "sqlite:///${state}/mlflow.db" \
  --artifacts-destination "${state}/artifacts" \
  --host "${host}" \
  --port "${port}" \
  --workers "${workers}" \
  --allowed-hosts "${allowed}"
