#!/usr/bin/env python3
"""The evaluation suite, same as ``technoshare eval`` (for CI and machines without the entry point).

python scripts/run_eval.py --min-pass-rate 0.8 --summary-md eval-summary.md
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.cli import main  # noqa: E402  (after the path fix above)

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
