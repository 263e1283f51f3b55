"""Worker lifecycle: the process's recorder, and the periodic outbox replay.

- ``worker_init`` / ``worker_process_init``: ``observability.setup.configure`` installs this
  process's MLflow recorder and warms it up. A prefork child builds its own after the fork,
  with a fresh tracer: MLflow's span export is not fork-safe (spans of a child that kept the
  parent's tracer queue forever).
- ``worker_process_shutdown`` / ``worker_shutdown``: what is still queued is written, or kept
  in the Redis outbox.
- ``technoshare.replay_mlflow_outbox`` (beat, every minute): the outbox written when MLflow is
  back; every recording process also drains it by itself when it sees MLflow healthy.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from observability.recorder import get_recorder, install_recorder, kept_recorder
from tasks.app import app

log = logging.getLogger(__name__)


@worker_init.connect
@worker_process_init.connect
def _install_recorder(**_: Any) -> None:
    if kept_recorder():
        return  # the process installed its own before the worker started
    try:
        from observability.setup import configure, warm_up
        from pipeline.settings import get_settings

        warm_up(configure(get_settings()))
    except Exception:
        log.exception("the MLflow recorder could not be set up (jobs still run, unrecorded)")


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    """Every worker log line through the secret redaction filter, Celery's handlers included."""
    from pipeline.redact import install_log_redaction
    from pipeline.settings import get_settings

    installed = install_log_redaction(get_settings())
    for handler in logger.handlers if logger is not None else ():
        if installed not in handler.filters:
            handler.addFilter(installed)


@worker_ready.connect
def _say_what_is_recorded(**_: Any) -> None:
    """Again once the worker's logging is set up: a threads or solo worker made its recorder
    at ``worker_init``, before Celery configured logging, and that line went nowhere."""
    from observability.setup import describe
    from pipeline.settings import get_settings

    logging.getLogger("observability").info("%s", describe(get_settings()))


@worker_process_shutdown.connect
@worker_shutdown.connect
def _close_recorder(**_: Any) -> None:
    get_recorder().close()
    if not kept_recorder():
        install_recorder(None)


@app.task(name="technoshare.replay_mlflow_outbox", ignore_result=True)
def replay_mlflow_outbox() -> dict[str, Any]:
    replay = getattr(get_recorder(), "replay_outbox", None)
    return replay() if replay is not None else {"skipped": "tracking disabled"}
