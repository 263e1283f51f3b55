"""Observability: MLflow runs and traces of every job (see ``observability.hooks``).

Importing this package is cheap (no mlflow): the ingest process may import it.

For the Celery app:
- ``worker_init()``: connect to ``worker_init`` AND ``worker_process_init`` (prefork children
  must reset MLflow's tracer, FIELD-NOTES trap 2, and build their own client and writer).
- ``worker_shutdown()``: connect to ``worker_process_shutdown`` and ``worker_shutdown``: writes
  what is still queued (or keeps it in the outbox).
- ``replay_outbox()``: the body of the periodic beat task ``technoshare.replay_mlflow_outbox``.
"""

from __future__ import annotations

from typing import Any


def worker_init(**_signal_kwargs: Any) -> None:
    """Prepare this process for recording: MLflow client variables, a fresh tracer provider,
    its own runtime, and a synchronous health probe that also resolves the experiment (so the
    first job's spans are recorded). Safe to call more than once; never raises."""
    import logging

    from observability.runtime import configure_environment, get_runtime, reset_runtime
    from pipeline.settings import get_settings

    log = logging.getLogger("observability")
    try:
        settings = get_settings()
        configure_environment(settings)
        if not settings.mlflow_enable_tracking:
            return
        import mlflow

        mlflow.tracing.reset()
        reset_runtime()
        rt = get_runtime()
        if not rt.health.check_now():
            log.warning("MLflow not reachable at worker start: %s", rt.health.reason)
        _warm_up(rt)
    except Exception:
        log.exception("observability.worker_init failed (jobs still run, maybe unrecorded)")


def _warm_up(rt: Any) -> None:
    """Pay first-use costs at start-up, not in the first job: mlflow imports mlflow.pyfunc
    (~300 ms) when the first span ends, the health probe imports httpx; the Redis connection
    and the writer thread."""
    import contextlib
    import gc
    import importlib

    for module in ("mlflow.pyfunc", "observability.mlflow_backend", "httpx"):
        with contextlib.suppress(Exception):
            importlib.import_module(module)
    with contextlib.suppress(Exception):
        rt.redis().ping()
    rt.writer().start()
    # Everything imported so far (mlflow, pydantic models...) lives as long as the process: keep
    # it out of the cyclic GC, whose full passes over it took 100+ ms inside a job's hook call.
    gc.freeze()


def worker_shutdown(**_signal_kwargs: Any) -> None:
    """Write (or keep in the outbox) what this process still has queued."""
    from observability.runtime import reset_runtime

    reset_runtime()


def replay_outbox(max_records: int = 1000) -> dict[str, Any]:
    from observability.outbox import replay_outbox as replay

    return replay(max_records=max_records)


def overhead_seconds() -> float:
    """Caller-thread time spent in the hooks by this process, all jobs together."""
    from observability.runtime import get_runtime

    return get_runtime().overhead_seconds
