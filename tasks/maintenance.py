"""Worker lifecycle hooks for observability, and the periodic (beat) tasks.

- ``worker_init`` / ``worker_process_init``: ``observability.worker_init`` (a prefork child must
  reset MLflow's tracer after the fork and build its own client and writer).
- ``worker_process_shutdown`` / ``worker_shutdown``: ``observability.worker_shutdown`` writes what
  is still queued (or keeps it in the Redis outbox).
- ``technoshare.replay_mlflow_outbox`` (every minute, ``celery -A tasks beat``): records made
  while MLflow was down are written once it is back.
"""

from __future__ import annotations

from typing import Any

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

import observability
from tasks.app import app


@worker_init.connect
@worker_process_init.connect
def _observability_init(**kwargs: Any) -> None:
    observability.worker_init(**kwargs)


@worker_process_shutdown.connect
@worker_shutdown.connect
def _observability_shutdown(**kwargs: Any) -> None:
    observability.worker_shutdown(**kwargs)


@app.task(name="technoshare.replay_mlflow_outbox", ignore_result=True)
def replay_mlflow_outbox() -> dict[str, Any]:
    return observability.replay_outbox()
