"""Choosing and installing this process's recorder, and saying what was chosen.

    recorder = configure(settings, local=False)   # MLflow recorder, or the null one

Each process that records calls ``configure`` once at start (a Celery worker in
``worker_process_init``, ``technoshare run``, demo, eval), and logs one line: whether tracking
and tracing are on, the tracking URI (credentials masked) and the experiment. Later changes
(MLflow unreachable, back again) are logged by the health monitor as they happen.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
from urllib.parse import urlsplit, urlunsplit

from observability.backend import MlflowRecorder
from observability.recorder import NULL_RECORDER, Recorder, install_recorder
from pipeline.settings import Settings

log = logging.getLogger("observability")


def masked_uri(uri: str) -> str:
    """The URI with any password in its userinfo replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def describe(settings: Settings, *, local: bool = False) -> str:
    """The one line a process logs at start about what it records, and where."""
    if not settings.mlflow_enable_tracking:
        return "MLflow tracking disabled (MLFLOW_ENABLE_TRACKING=false): nothing is recorded"
    tracing = "on" if settings.mlflow_enable_tracing else "off (MLFLOW_ENABLE_TRACING=false)"
    return (
        f"MLflow tracking enabled: {masked_uri(settings.effective_tracking_uri())}, "
        f"experiment {settings.mlflow_experiment!r}, tracing {tracing}, "
        f"outbox {'local file' if local else 'Redis'}"
    )


def configure(
    settings: Settings, *, local: bool = False, install: bool = True, keep: bool = False
) -> Recorder:
    """The recorder for these settings (installed as the process's unless ``install=False``;
    ``keep=True``: workers started inside this process keep it). Any previously installed
    recorder is closed."""
    recorder: Recorder
    if not settings.mlflow_enable_tracking:
        recorder = NULL_RECORDER
    else:
        recorder = MlflowRecorder(settings, local=local)
    log.info("%s", describe(settings, local=local))
    if install:
        previous = install_recorder(recorder, keep=keep)
        if previous is not None and previous is not recorder:
            with contextlib.suppress(Exception):
                previous.close(timeout=2.0)
    return recorder


def warm_up(recorder: Recorder) -> None:
    """Pay first-use costs at process start, not in the first job: a synchronous health probe
    (which also resolves the experiment, so the first job's spans are recorded), mlflow's lazy
    imports (``mlflow.pyfunc`` ~300 ms at the first span end), httpx, the writer and drainer
    threads. Never raises."""
    if not isinstance(recorder, MlflowRecorder):
        return
    try:
        import mlflow

        mlflow.tracing.reset()  # a prefork child must not use its parent's tracer provider
        rt = recorder.runtime
        if not rt.health.check_now():
            log.warning("MLflow not reachable at start: %s", rt.health.reason)
        for module in ("mlflow.pyfunc", "httpx"):
            with contextlib.suppress(Exception):
                importlib.import_module(module)
        rt.start()
    except Exception:
        log.exception("MLflow warm-up failed (jobs still run, maybe unrecorded)")
    # What is imported now lives as long as the process: keep it out of the cyclic GC, whose
    # full passes over it took 100+ ms inside a job's hook call.
    gc.freeze()
