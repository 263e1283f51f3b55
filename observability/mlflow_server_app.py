"""The ``technoshare`` MLflow server app: ``mlflow server --app-name technoshare``.

MLflow's own server (its Flask app, its FastAPI wrapper under uvicorn) plus one endpoint,
``POST /api/2.0/technoshare/runs/write`` (``observability.mlflow_batch.ENDPOINT``), that writes
a whole run in one request, through the server's own tracking store and proxied artifact
repository: create a run (experiment, start time, user, tags; ``new_run_id``: the id it gets)
or take an existing one (``run_id``), log metrics, params and tags, write small text artifacts
(only to a run whose artifact URI this server serves, ``mlflow-artifacts:``), terminate it
(status, end time), and answer its id. A create is idempotent: a run that exists with the
``new_run_id``, or (``find_by_tag``, a tag key among ``tags``) a run of the experiment with
that tag value, is written instead of a new one, or left alone when it is already terminated,
so a retried or replayed write never makes a second run. The write itself, in one transaction
on MLflow's SQL store, is ``observability/mlflow_server_write.py``. Input is checked strictly
before anything is written (a 4xx with a message that names the field, never the value); every
answer carries ``MARKER_HEADER``.

Basic auth: with ``TECHNOSHARE_MLFLOW_AUTH=basic`` the app is ``mlflow.server.auth``'s
(``create_app``, as ``--app-name basic-auth`` builds it, its config from
``MLFLOW_AUTH_CONFIG_PATH``), and the endpoint is one of its routes: auth's before-request hook
authenticates every request (401), lets admins through, and for anyone else runs the validator
this module registers in auth's table, which asks auth's own permission helpers for exactly
what the standard calls would need: creating a run in the experiment (``CreateRun``'s
requirement) plus updating runs of it (``LogBatch``/``UpdateRun``/artifact upload), or updating
the given run. Without those helpers (another MLflow version) only admins may write (403).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from observability.mlflow_batch import (
    ENDPOINT,
    MARKER_HEADER,
    MAX_ARTIFACT_BYTES,
    MAX_ARTIFACTS,
    MAX_ARTIFACTS_BYTES,
    MAX_BODY_BYTES,
    MAX_METRICS,
    MAX_PARAMS,
    MAX_TAGS,
    NEW_RUN_ID,
    PROTOCOL,
    artifact_name_ok,
)
from observability.mlflow_server_write import BadInput, NotServed, WriteRequest, entities, write

log = logging.getLogger("mlflow.server.technoshare")

AUTH_ENV = "TECHNOSHARE_MLFLOW_AUTH"  # "basic": wrap mlflow.server.auth; unset/"none": no auth
VIEW_NAME = "technoshare_runs_write"
FIELDS = {
    "protocol", "run_id", "experiment_id", "new_run_id", "start_time", "user_id", "tags",
    "find_by_tag",
    "metrics", "params", "artifacts", "status", "end_time",
}  # fmt: skip
STATUSES = ("FINISHED", "FAILED", "KILLED")
MAX_KEY_CHARS = 250
MAX_VALUE_CHARS = 8000  # MLflow's tag value limit (params: 6000, checked by MLflow)
MAX_MS = 2**53  # a millisecond time or step that JSON carries exactly
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_EXPERIMENT_ID = re.compile(r"^[0-9]{1,18}$")
_FILTER_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_FILTER_VALUE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # safe inside a quoted filter


# --- input ------------------------------------------------------------------------------------
def _int(value: Any, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < MAX_MS:
        raise BadInput(f"'{name}' must be an integer in [{low}, 2^53)")
    return value


def _text(value: Any, name: str, limit: int, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise BadInput(f"'{name}' must be a string of at most {limit} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise BadInput(f"'{name}' has a form not accepted here")
    return value


def _mapping(value: Any, name: str, limit: int, value_chars: int) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadInput(f"'{name}' must be an object of string values")
    if len(value) > limit:
        raise BadInput(f"'{name}' has more than {limit} entries", 413)
    for key, item in value.items():
        if not 0 < len(key) <= MAX_KEY_CHARS:
            raise BadInput(f"a key of '{name}' is empty or longer than {MAX_KEY_CHARS} characters")
        _text(item, f"{name}[{key[:40]!r}]", value_chars)
    return dict(value)


def _metrics(value: Any) -> list[tuple[str, float, int, int]]:
    if not isinstance(value, list):
        raise BadInput("'metrics' must be a list")
    if len(value) > MAX_METRICS:
        raise BadInput(f"'metrics' has more than {MAX_METRICS} entries", 413)
    out = []
    for index, item in enumerate(value):
        where = f"metrics[{index}]"
        if not isinstance(item, dict) or not set(item) <= {"key", "value", "timestamp", "step"}:
            raise BadInput(f"'{where}' must be an object of key, value, timestamp, step")
        number = item.get("value")
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise BadInput(f"'{where}.value' must be a number")
        key = _text(item.get("key"), f"{where}.key", MAX_KEY_CHARS)
        stamp = _int(item.get("timestamp"), f"{where}.timestamp")
        step = _int(item.get("step", 0), f"{where}.step", -(2**53))
        out.append((key, float(number), stamp, step))
    return out


def _artifacts(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadInput("'artifacts' must be an object: file name -> text")
    if len(value) > MAX_ARTIFACTS:
        raise BadInput(f"'artifacts' has more than {MAX_ARTIFACTS} files", 413)
    total = 0
    for name, text in value.items():
        if not artifact_name_ok(name):
            raise BadInput(
                "an artifact name is not a relative path of plain segments "
                "([A-Za-z0-9._-], not starting with a dot; no '..', '/', '\\')"
            )
        if not isinstance(text, str):
            raise BadInput("an artifact's text must be a string")
        size = len(text.encode("utf-8"))
        if size > MAX_ARTIFACT_BYTES:
            raise BadInput(f"an artifact is larger than {MAX_ARTIFACT_BYTES} bytes", 413)
        total += size
    if total > MAX_ARTIFACTS_BYTES:
        raise BadInput(f"the artifacts are larger than {MAX_ARTIFACTS_BYTES} bytes together", 413)
    return dict(value)


def parse(body: bytes) -> WriteRequest:
    """A checked ``WriteRequest`` from the request body, or ``BadInput``."""
    if len(body) > MAX_BODY_BYTES:
        raise BadInput(f"the request body is larger than {MAX_BODY_BYTES} bytes", 413)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadInput("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadInput("the request body must be a JSON object")
    try:  # a lone surrogate ("\ud800") parses, but no store can keep it
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput("the request body holds text that is not valid Unicode") from None
    if unknown := set(data) - FIELDS:
        raise BadInput(f"unknown fields: {sorted(str(k)[:40] for k in unknown)[:5]}")
    if data.get("protocol") != PROTOCOL:
        raise BadInput(f"'protocol' must be {PROTOCOL}")
    req = WriteRequest()
    if ("run_id" in data) == ("experiment_id" in data):
        raise BadInput("give exactly one of 'run_id' (an existing run) and 'experiment_id'")
    if "run_id" in data:
        req.run_id = _text(data["run_id"], "run_id", 64, _RUN_ID)
        if extra := {"new_run_id", "start_time", "user_id", "find_by_tag"} & set(data):
            raise BadInput(f"{sorted(extra)} only go with 'experiment_id' (a new run)")
    else:
        req.experiment_id = _text(data["experiment_id"], "experiment_id", 18, _EXPERIMENT_ID)
        if "new_run_id" in data:
            req.new_run_id = _text(data["new_run_id"], "new_run_id", 32, NEW_RUN_ID)
        req.start_time = _int(data.get("start_time", int(time.time() * 1000)), "start_time")
        req.user_id = _text(data.get("user_id", "unknown"), "user_id", 256)
    req.tags = _mapping(data.get("tags", {}), "tags", MAX_TAGS, MAX_VALUE_CHARS)
    req.params = _mapping(data.get("params", {}), "params", MAX_PARAMS, MAX_VALUE_CHARS)
    req.metrics = _metrics(data.get("metrics", []))
    req.artifacts = _artifacts(data.get("artifacts", {}))
    if "find_by_tag" in data:
        key = _text(data["find_by_tag"], "find_by_tag", 64, _FILTER_KEY)
        if not _FILTER_VALUE.fullmatch(req.tags.get(key, "")):
            raise BadInput("'find_by_tag' must name a tag of 'tags' with a plain value")
        req.find_by_tag = key
    if "status" in data:
        if data["status"] not in STATUSES:
            raise BadInput(f"'status' must be one of {list(STATUSES)}")
        req.status = data["status"]
        req.end_time = _int(data.get("end_time", int(time.time() * 1000)), "end_time")
    elif "end_time" in data:
        raise BadInput("'end_time' goes with 'status' (the run's termination)")
    _check_with_mlflow(req)
    return req


def _check_with_mlflow(req: WriteRequest) -> None:
    """MLflow's own checks of names, lengths and batch limits, before anything is written."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_batch_log_data, _validate_batch_log_limits

    metrics, params, tags = entities(req)
    try:
        _validate_batch_log_limits(metrics, params, tags)
        _validate_batch_log_data(metrics, params, tags)
    except MlflowException as exc:
        raise BadInput(exc.message) from None


# --- Flask ------------------------------------------------------------------------------------
def _answer(status: int, payload: dict[str, Any]) -> Any:
    from flask import Response

    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _error(status: int, code: str, message: str) -> Any:
    return _answer(status, {"error_code": code, "message": message})


def _body() -> bytes:
    from flask import request

    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise BadInput(f"the request body is larger than {MAX_BODY_BYTES} bytes", 413)
    return request.get_data(cache=True)


def runs_write() -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return _answer(200, write(parse(_body())))
    except BadInput as exc:
        code = "INVALID_PARAMETER_VALUE" if exc.status == 400 else "RESOURCE_LIMIT_EXCEEDED"
        return _error(exc.status, code, str(exc))
    except NotServed as exc:
        return _error(501, "FEATURE_DISABLED", str(exc))
    except MlflowException as exc:
        return _error(exc.get_http_status_code(), str(exc.error_code), exc.message)
    except Exception:
        log.exception("runs/write failed")
        return _error(500, "INTERNAL_ERROR", "the run write failed on the server (see its log)")


def install(flask_app: Any) -> None:
    """Add the endpoint (and its marker header) to MLflow's Flask app; once per process."""
    from flask import request
    from mlflow.server.handlers import _add_static_prefix

    if VIEW_NAME in flask_app.view_functions:
        return
    path = _add_static_prefix(ENDPOINT)
    flask_app.add_url_rule(path, VIEW_NAME, runs_write, methods=["POST"])

    @flask_app.after_request
    def mark(response: Any) -> Any:  # auth's own 401/403 on the path get it too
        if request.path == path:
            response.headers[MARKER_HEADER] = str(PROTOCOL)
        return response


# --- basic auth -------------------------------------------------------------------------------
def may_write() -> bool:
    """Auth's validator for the endpoint (run for authenticated non-admins): the permissions
    the standard calls of the same write need. A body that does not parse is let through: the
    endpoint answers it 400 and writes nothing."""
    from flask import g
    from mlflow.server import auth

    try:
        req = parse(_body())
    except BadInput:
        return True
    create_as = getattr(auth, "_authorize_create_in_experiment_as", None)
    run_check = getattr(auth, "_authorize_run_id", None)
    if create_as is None or run_check is None:  # helpers gone: admins only (they skip this)
        return False
    if req.run_id is not None:  # LogBatch / UpdateRun / artifact upload on that run
        return bool(run_check(req.run_id, "update"))
    from mlflow.server.auth.permissions import RESOURCE_TYPE_EXPERIMENT, RESOURCE_TYPE_RUN
    from mlflow.server.auth.requirements import Requirement

    experiment = (RESOURCE_TYPE_EXPERIMENT, str(req.experiment_id))
    update_runs = Requirement(RESOURCE_TYPE_RUN, "*", "update", fallback_if_no_grant=(experiment,))
    username = getattr(g, "mlflow_authenticated_user", None)  # set by auth's before-request
    if not isinstance(username, str) or not username:
        return False
    return bool(create_as(username, str(req.experiment_id), RESOURCE_TYPE_RUN, (update_runs,)))


@contextmanager
def _bootstrap_lock(database_uri: str) -> Iterator[None]:
    """One worker at a time creates/migrates the user store and the admin (``mlflow server``
    does that once before its workers only for ``--app-name basic-auth``)."""
    digest = hashlib.sha256(database_uri.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"technoshare-mlflow-auth-{digest}.lock")
    with open(path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _with_basic_auth(flask_app: Any) -> Any:
    from mlflow.server import auth
    from mlflow.server.handlers import _add_static_prefix

    auth.BEFORE_REQUEST_VALIDATORS[(_add_static_prefix(ENDPOINT), "POST")] = may_write
    with _bootstrap_lock(auth.auth_config.database_uri):
        return auth.create_app(flask_app)


def load_cost_library() -> None:
    """MLflow's server prices every LLM span it stores with litellm when litellm is installed
    (a server in the workers' environment, ``technoshare dev-stack``), and imports it on the
    first such trace: 3-4 s of CPU inside that request, past the client's 3 s timeout, in each
    server worker. Imported here instead, at the worker's start, with litellm's offline
    switches (no price-list download, no ``.env``). Without litellm (compose's image) MLflow
    prices with its own table and this does nothing."""
    import importlib.util

    from pipeline.offline import apply_offline_defaults

    apply_offline_defaults()
    if importlib.util.find_spec("litellm") is not None:
        import litellm  # noqa: F401


def create_app() -> Any:
    """The app factory ``mlflow server --app-name technoshare`` runs in each server worker."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as flask_app

    load_cost_library()

    mode = (os.environ.get(AUTH_ENV) or "none").strip().lower()
    if mode not in ("basic", "none"):
        raise ValueError(f"{AUTH_ENV} must be 'basic' or 'none'")
    install(flask_app)
    if mode == "basic":
        return _with_basic_auth(flask_app)
    if (_MLFLOW_SGI_NAME.get() or "uvicorn") == "uvicorn":  # mlflow server's default
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(flask_app)
    return flask_app
