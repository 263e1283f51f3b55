"""`python -m tests.support.worker_main -A tasks worker ...`: the real celery command, after
installing the test stand-ins when ``TS_TEST_STANDINS=1`` (patched before the pool forks, so
every pool child has them)."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    if os.environ.get("TS_TEST_STANDINS") == "1":
        from tests.support import standins

        standins.install()
    from celery.__main__ import main

    sys.argv[0] = "celery"
    sys.exit(main())
