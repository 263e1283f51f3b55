#!/usr/bin/env python
"""Register changed prompt templates in MLflow's Prompt Registry and move the alias.

Same as ``technoshare prompts sync [--dir DIR] [--alias NAME]``; the tracking server comes from
MLFLOW_TRACKING_URI (default: the local sqlite store in STATE_DIR).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["prompts", "sync", *sys.argv[1:]]))
