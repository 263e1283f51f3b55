"""Is MLflow reachable? Answered from a cache, never by blocking the caller.

A job must not wait for a stopped or hanging tracking server: ``available()`` returns the last
known state at once and, when that state is older than its time to live, starts ONE background
probe (``GET /health`` with short timeouts for a server; a store call for a local sqlite URI).
A failed write reports itself through ``mark_down`` so the next job already knows.

Transitions are logged once: ``MLflow tracking disabled: <reason>`` when an outage starts, and
``MLflow tracking re-enabled`` when it ends; ``on_change(up)`` lets the owner switch tracing off
and on (``mlflow.tracing.disable()`` / ``enable()``) and replay the outbox.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("observability")

UP_TTL_SECONDS = 10.0  # re-check a healthy server this often (a failed write flips it sooner)
DOWN_TTL_SECONDS = 2.0  # re-check a down server this often: recovery is noticed within ~2 s


def http_probe(base_url: str, timeout: float) -> str | None:
    """``GET <base>/health``; None when healthy, else the reason."""
    import httpx

    try:
        resp = httpx.get(base_url.rstrip("/") + "/health", timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        return f"{base_url} unreachable ({type(exc).__name__}: {exc})"
    if resp.status_code != 200:
        return f"{base_url}/health answered HTTP {resp.status_code}"
    return None


class MlflowHealth:
    def __init__(
        self,
        probe: Callable[[], str | None],
        on_change: Callable[[bool], None] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._up = True  # optimistic: a first failed write or probe flips it within one job
        self._reason = ""
        self._checked_at: float | None = None
        self._probing = False
        self.outages = 0

    @property
    def reason(self) -> str:
        return self._reason

    def available(self) -> bool:
        """The cached state; starts a background probe when it is stale. Never blocks."""
        with self._lock:
            ttl = UP_TTL_SECONDS if self._up else DOWN_TTL_SECONDS
            stale = self._checked_at is None or self._clock() - self._checked_at > ttl
            if stale and not self._probing:
                self._probing = True
                threading.Thread(target=self._probe_in_background, daemon=True).start()
            return self._up

    def check_now(self) -> bool:
        """Probe synchronously (replay, doctor, start-up): off the critical path only."""
        self._record(self._safe_probe())
        return self._up

    def mark_down(self, reason: str) -> None:
        self._record(reason or "write failed")

    def mark_up(self) -> None:
        self._record(None)

    def _probe_in_background(self) -> None:
        try:
            self._record(self._safe_probe())
        finally:
            with self._lock:
                self._probing = False

    def _safe_probe(self) -> str | None:
        try:
            return self._probe()
        except Exception as exc:  # a probe must never raise into a job
            return f"{type(exc).__name__}: {exc}"

    def _record(self, reason: str | None) -> None:
        with self._lock:
            was_up = self._up
            self._up = reason is None
            self._checked_at = self._clock()
            if reason:
                self._reason = reason
            changed = was_up != self._up
            if changed and not self._up:
                self.outages += 1
        if not changed:
            return
        if self._up:
            log.warning("MLflow tracking re-enabled")
        else:
            log.warning("MLflow tracking disabled: %s", reason)
        if self._on_change is not None:
            try:
                self._on_change(self._up)
            except Exception:
                log.exception("MLflow health change handler failed")
