#!/usr/bin/env bash
# The main job on embedded defaults: recorded links through the real Celery chain, offline.
# Creates .venv and installs what it needs on first run. Extra args go to `technoshare demo`.
set -euo pipefail
EXTRAS="${EXTRAS:-all}"
# shellcheck source=scripts/bootstrap.sh
source "$(dirname "$0")/bootstrap.sh"
exec technoshare demo "$@"
