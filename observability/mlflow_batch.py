"""Writing one run in ONE request: the batch endpoint of the ``technoshare`` MLflow server app
(``observability/mlflow_server_app.py``), with MLflow's standard REST calls as the fallback.

MLflow's REST API cannot create a finished run with metrics and artifacts: a stage run costs
``runs/create`` + ``runs/log-batch`` + an artifact PUT + ``runs/update``. ``POST`` to
``ENDPOINT`` does all of that server side. This module holds what both sides agree on (the
path, the marker header, the limits, the artifact-name rule) and the client: ``write_run``
sends one request through MLflow's own HTTP plumbing (``mlflow.utils.rest_utils.http_request``
with the client store's host credentials, so auth, timeout and retries are those
``observability.mlflow_store.configure_environment`` set).

Detection costs no request: the first write to a server goes to the endpoint; an answer that
is not the endpoint's (every answer of it, auth's 401/403 included, carries ``MARKER_HEADER``)
to a 404/405/501, or the endpoint's own ``FEATURE_DISABLED`` (the server does not serve the
run's artifacts), means nothing was written, and raises ``Unavailable``: the caller writes
with the standard calls, and so does every later write of this process to that tracking URI.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from observability.mlflow_store import MlflowStore

log = logging.getLogger("observability")

ENDPOINT = "/api/2.0/technoshare/runs/write"
MARKER_HEADER = "X-Technoshare-Runs-Write"  # on every answer of the endpoint: "it exists"
PROTOCOL = 1

# Bounds of one request (the server rejects more with a 4xx; the client sends a record that
# would not fit the standard way instead). MLflow's own log-batch limits are 1000 metrics,
# 100 params and 100 tags.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_METRICS = 1000
MAX_PARAMS = 100
MAX_TAGS = 100
MAX_ARTIFACTS = 16
MAX_ARTIFACT_BYTES = 1024 * 1024  # one text, UTF-8 (a stage's JSON is ~1-100 KB)
MAX_ARTIFACTS_BYTES = 4 * 1024 * 1024  # all texts of one request
# A run id the client may choose (``new_run_id``): MLflow's own form, uuid4().hex. Record ids and
# trace ids have it, so a stage run takes its record id and a parent its trace id.
NEW_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_NAME_CHARS = 200
MAX_NAME_DEPTH = 4
# one path segment: no leading dot (no ".", "..", hidden files), no separator, no escape
_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")

_standard_only: set[str] = set()  # tracking URIs (this process) whose server lacks the endpoint
_standard_lock = threading.Lock()


class Unavailable(Exception):
    """The server has no usable batch endpoint; nothing was written: use the standard calls."""


def artifact_name_ok(name: object) -> bool:
    """A relative POSIX path of at most ``MAX_NAME_DEPTH`` plain segments: no traversal, no
    absolute path, no backslash, no empty or dot-led segment."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        return False
    parts = name.split("/")
    return len(parts) <= MAX_NAME_DEPTH and all(_NAME_PART.fullmatch(p) for p in parts)


def artifacts_fit(texts: dict[str, str]) -> bool:
    """Whether these artifacts may go in one request (else the standard uploads take them)."""
    if len(texts) > MAX_ARTIFACTS:
        return False
    sizes = [len(text.encode("utf-8")) for text in texts.values()]
    return (
        all(artifact_name_ok(name) for name in texts)
        and all(size <= MAX_ARTIFACT_BYTES for size in sizes)
        and sum(sizes) <= MAX_ARTIFACTS_BYTES
    )


def usable(store: MlflowStore) -> bool:
    """An http(s) tracking server not yet found without the endpoint (by this process)."""
    return store.is_http and store.uri not in _standard_only


def use_standard_calls(store: MlflowStore) -> None:
    with _standard_lock:
        if store.uri in _standard_only:
            return
        _standard_only.add(store.uri)
    log.info("MLflow server has no technoshare batch endpoint: standard REST calls from now on")


def _host_creds(store: MlflowStore) -> Any:
    """The host credentials the store's MLflow client itself uses (its RestStore's)."""
    rest_store = getattr(store.client()._tracking_client, "store", None)
    get_creds = getattr(rest_store, "get_host_creds", None)
    if callable(get_creds):
        return get_creds()
    from mlflow.utils.credentials import get_default_host_creds

    return get_default_host_creds(store.uri)


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def scrub(text: str, creds: Any) -> str:
    """``text`` without the credentials: the password, the token, and user:password@ in URLs."""
    for secret in (getattr(creds, "password", None), getattr(creds, "token", None)):
        if isinstance(secret, str) and secret:
            text = text.replace(secret, "***")
    return _USERINFO.sub("***@", text)


def _error(message: str, status: int, code: object) -> Exception:
    from mlflow.exceptions import MlflowException, get_error_code
    from mlflow.protos.databricks_pb2 import ErrorCode

    try:
        value = ErrorCode.Value(code) if isinstance(code, str) else get_error_code(status)
    except ValueError:
        value = get_error_code(status)
    return MlflowException(message, error_code=value)


def write_run(store: MlflowStore, body: dict[str, Any]) -> dict[str, Any]:
    """POST one run write; its answer (``run_id``, ``created``, ``written``). Raises
    ``Unavailable`` (nothing written; the store switched to the standard calls), or an
    ``MlflowException`` with the answer's error code and no credentials in its text."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import http_request

    creds = _host_creds(store)
    try:
        response = http_request(creds, ENDPOINT, "POST", json={"protocol": PROTOCOL, **body})
    except MlflowException as exc:  # transport: its text names the URL
        raise _error(f"runs/write: {scrub(exc.message, creds)}", 503, exc.error_code) from None
    status, ours = response.status_code, MARKER_HEADER in response.headers
    try:
        answer = response.json()
    except ValueError:
        answer = None
    answer = answer if isinstance(answer, dict) else {}
    if not ours and status in (200, 404, 405, 501):
        use_standard_calls(store)  # not the endpoint that answered: it wrote nothing
        raise Unavailable(f"HTTP {status}")
    if ours and status == 200 and isinstance(answer.get("run_id"), str):
        return answer
    code = answer.get("error_code")
    if ours and code == "FEATURE_DISABLED":  # the endpoint checks this before any write
        use_standard_calls(store)
        raise Unavailable(str(answer.get("message") or code))
    detail = str(answer.get("message") or response.text or response.reason or "")[:500]
    raise _error(f"runs/write answered HTTP {status}: {scrub(detail, creds)}", status, code)
