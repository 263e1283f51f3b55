"""The one way tasks read the propagated headers (parent MLflow run id, trace context, job id)."""

from __future__ import annotations

from typing import Any

from pipeline.constants import PROPAGATED_HEADERS


def current_headers(task: Any) -> dict[str, str]:
    """The propagated headers of the message ``task`` is executing, as a plain dict.

    On a worker a custom header is an attribute of the request (``request.get(key)``); in eager
    mode it is only in ``request.headers``. Keys that are absent or empty are left out.
    """
    request = task.request
    raw = getattr(request, "headers", None) or {}
    out: dict[str, str] = {}
    for key in PROPAGATED_HEADERS:
        value = request.get(key) or raw.get(key)
        if value:
            out[key] = str(value)
    return out
