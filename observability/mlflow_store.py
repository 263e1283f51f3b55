"""The MLflow store a process records to: client variables, the client, the experiment.

``configure_environment`` sets the MLflow client's variables BEFORE mlflow is imported anywhere
in the process. ``MlflowStore`` opens the client lazily (under a file lock for a local sqlite
store, whose first opening creates its tables) and resolves the experiment once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from observability.health import http_probe
from pipeline.offline import apply_offline_defaults
from pipeline.settings import Settings


def configure_environment(settings: Settings) -> None:
    """Client-side MLflow variables. Fail fast: 0-1 retry, a 2-3 s timeout (the defaults block
    ~246 s per call when the server is down); spans from joined contexts need the simple span
    processor (the batch one exports after the joined context is gone, and silently drops them)."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(
        min(max(settings.mlflow_http_max_retries, 0), 1)
    )
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(  # an int for mlflow: 2 or 3
        int(min(max(settings.mlflow_http_timeout, 2.0), 3.0))
    )
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "0"
    os.environ["MLFLOW_USE_BATCH_SPAN_PROCESSOR"] = "false"
    # span export threads (default 10) compete with the job's thread for the GIL and the server
    os.environ.setdefault("MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS", "2")
    apply_offline_defaults()
    os.environ.pop("MLFLOW_RUN_ID", None)  # would override the parent of every nested run


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores, in-memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None


_store_locks = threading.local()  # per thread: the store locks it holds (flock is per open file)


@contextmanager
def store_init_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive file lock (``<db>.lock`` next to a local sqlite store) while this
    process opens the store: opening a fresh store creates and migrates its tables, and several
    workers starting together would race on it ("table ... already exists") and the losers
    would switch tracking off. Other tracking URIs (a server) need no lock."""
    path = sqlite_path(uri)
    try:
        import fcntl
    except ImportError:  # not POSIX: services.processes.prepare_tracking_store is the belt
        path = None
    held: set[Path] = _store_locks.__dict__.setdefault("held", set())
    if path is None or path in held:  # re-entered by this thread: it holds the lock already
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        held.add(path)
        try:
            yield
        finally:
            held.discard(path)
            fcntl.flock(lock_file, fcntl.LOCK_UN)


class MlflowStore:
    def __init__(self, settings: Settings) -> None:
        configure_environment(settings)
        self.settings = settings
        self.uri = settings.effective_tracking_uri()
        self.tracing = settings.mlflow_enable_tracking and settings.mlflow_enable_tracing
        self._lock = threading.Lock()
        self._client: Any = None
        self._experiment_id: str | None = None
        self.redact: Callable[[str], str] | None = None  # applied to every exported span

    @property
    def is_http(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            with store_init_lock(self.uri):  # the client opens (creates, migrates) the store
                self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def experiment_id(self) -> str:
        """Resolved (created if missing) once per process; raises when MLflow is down."""
        if self._experiment_id is None:
            with self._lock:
                if self._experiment_id is None:
                    with store_init_lock(self.uri):  # one creator of the experiment at a time
                        self._experiment_id = self._resolve_experiment()
                    self.point_tracing_at(self._experiment_id)
        return self._experiment_id

    @property
    def experiment_ready(self) -> bool:
        return self._experiment_id is not None

    def _resolve_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        client, name = self.client(), self.settings.mlflow_experiment
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        artifact_location = None
        if not self.is_http:  # local store: keep artifacts in state_dir, not in ./mlruns
            artifact_location = (self.settings.state_dir / "mlflow-artifacts").resolve().as_uri()
        try:
            return str(client.create_experiment(name, artifact_location=artifact_location))
        except MlflowException:  # another process created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def point_tracing_at(self, experiment_id: str | None = None) -> None:
        """Experiment in code, not MLFLOW_EXPERIMENT_NAME (a server lookup per trace)."""
        experiment_id = experiment_id or self._experiment_id
        if not self.tracing or experiment_id is None:
            return
        import mlflow
        from mlflow.entities.trace_location import MlflowExperimentLocation

        mlflow.set_tracking_uri(self.uri)
        mlflow.tracing.set_destination(MlflowExperimentLocation(experiment_id))
        if self.redact is not None:  # (re)pointing tracing resets MLflow's tracing config
            install_span_redaction(self.redact)

    def probe(self) -> str | None:
        """None when the store answers, else why not (also proves a local store works)."""
        if self.is_http:
            reason = http_probe(self.uri, timeout=min(1.0, self.settings.mlflow_http_timeout))
            if reason:
                return reason
        self.experiment_id()
        return None


def install_span_redaction(redact: Callable[[str], str]) -> None:
    """Every span this process exports passes through ``redact`` first: its string attributes
    (inputs, outputs, messages of LLM spans) and its events (an exception event holds the
    error text, and a provider's 401 can echo the API key into it, as LLM spans autologged
    from litellm do)."""
    import mlflow
    from opentelemetry.sdk.trace import Event
    from opentelemetry.sdk.util import BoundedList

    def scrub(value: Any) -> Any:
        return redact(value) if isinstance(value, str) else value

    def processor(span: Any) -> None:
        otel = getattr(span, "_span", None)
        if otel is None:
            return
        for key, value in dict(otel.attributes or {}).items():
            if isinstance(value, str) and (clean := redact(value)) != value:
                otel.set_attribute(key, clean)
        events = getattr(otel, "_events", None)
        if events:  # an OTel BoundedList: rebuilt, it has no item assignment
            cleaned = [
                Event(e.name, {k: scrub(v) for k, v in (e.attributes or {}).items()}, e.timestamp)
                for e in events
            ]
            otel._events = BoundedList.from_seq(len(cleaned) or None, cleaned)

    mlflow.tracing.configure(span_processors=[processor])
