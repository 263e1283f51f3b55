"""What ``pipeline.llm.LLMClient`` may share with other workers: a rate limiter per model and a
cache of validated answers. Protocols and in-memory versions here (one process, tests); the
Redis versions, shared by every worker on every machine, are in ``services/llm_limits.py``.

Rate limits (``LLM_RATE_LIMITS="openai/gpt-4o-mini=500rpm,200000tpm;anthropic=50rpm"``): a key
is a model name or a provider (then its models share the limit). Each key has a sliding window
of ``WINDOW_SECONDS``: a call is let through when fewer than ``rpm`` calls and at most ``tpm``
tokens (its own estimate included) were let through within the last window. Tokens are
estimated before the call (prompt characters / 4 plus ``EXPECTED_OUTPUT_TOKENS``) and corrected
to the provider's count after it (:meth:`RateLimiter.settle`). A full window makes the call
wait, at most ``LLM_RATE_LIMIT_MAX_WAIT_SECONDS``; beyond that it raises the retryable
:class:`LLMRateLimitedError` at once (waiting cannot help), carrying when there will be room.

Cache keys (:func:`cache_key`) hash the models, the messages with their data-block nonces
blanked (a fresh nonce per prompt would make every key new), temperature, tools and the output
model: the rendered prompt text holds the template, so another prompt version is another key.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Protocol

from pipeline.errors import ConfigError, LLMRateLimitedError

WINDOW_SECONDS = 60.0
EXPECTED_OUTPUT_TOKENS = 800  # a commentary is ~500-1000 tokens; corrected after the call
_LIMIT = re.compile(r"^\s*(\d+)\s*(rpm|tpm)\s*$", re.I)
_NONCE = re.compile(r"<<<(?:END )?[A-Z][A-Z_]* ([0-9a-f]{16})>>>")


@dataclass(frozen=True)
class Limit:
    rpm: int = 0  # 0: no limit on requests
    tpm: int = 0  # 0: no limit on tokens


def parse_rate_limits(text: str) -> dict[str, Limit]:
    """``"m1=500rpm,200000tpm;m2=50rpm"`` -> {m1: Limit(500, 200000), m2: Limit(50, 0)}."""
    out: dict[str, Limit] = {}
    for entry in filter(str.strip, text.split(";")):
        key, sep, spec = entry.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"LLM_RATE_LIMITS entry {entry.strip()!r} is not model=<n>rpm,<n>tpm")
        values = {"rpm": 0, "tpm": 0}
        for part in spec.split(","):
            m = _LIMIT.match(part)
            if not m:
                raise ConfigError(f"LLM_RATE_LIMITS: {part.strip()!r} is not <n>rpm or <n>tpm")
            values[m.group(2).lower()] = int(m.group(1))
        out[key.strip()] = Limit(**values)
    return out


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """Tokens a call will use, before it is made (about 4 characters per token)."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return chars // 4 + 1 + EXPECTED_OUTPUT_TOKENS


@dataclass(frozen=True)
class Grant:
    """A call let through: which window it counts in, and the tokens it was counted with."""

    key: str
    member: str
    tokens: int


class RateLimiter(Protocol):
    def acquire(self, model: str, tokens: int) -> Grant | None:
        """Wait (bounded) until ``model`` has room for one call of ``tokens``; None when the
        model has no limit. Raises :class:`LLMRateLimitedError` when the wait would be longer."""
        ...

    def settle(self, grant: Grant, tokens: int) -> None:
        """Count the call with the tokens it really used."""
        ...


class LLMCache(Protocol):
    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str, ttl_seconds: int) -> None: ...


class WindowLimiter:
    """The waiting and the configuration; subclasses keep the windows (``_try``, ``_recount``).

    ``_try(key, limit, tokens, member)`` counts the call and returns 0 when it fits, else the
    seconds until it would; ``_recount(grant, tokens)`` changes a counted call's tokens."""

    def __init__(
        self,
        limits: dict[str, Limit],
        *,
        max_wait: float,
        window: float = WINDOW_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits, self.max_wait, self.window = limits, max_wait, window
        self._sleep, self._clock = sleep, clock

    def limit_for(self, model: str) -> tuple[str, Limit] | None:
        """The model's own limit, else its provider's."""
        for key in (model, model.split("/", 1)[0]):
            if key in self.limits:
                return key, self.limits[key]
        return None

    def acquire(self, model: str, tokens: int) -> Grant | None:
        found = self.limit_for(model)
        if found is None:
            return None
        key, limit = found
        tokens = min(tokens, limit.tpm) if limit.tpm else tokens  # else it could never fit
        member = f"{uuid.uuid4().hex}:{tokens}"
        deadline = self._clock() + self.max_wait
        while True:
            wait = self._try(key, limit, tokens, member)
            if wait <= 0:
                return Grant(key, member, tokens)
            left = deadline - self._clock()
            if wait > left:
                raise LLMRateLimitedError(
                    f"the rate limit of {key} is full for {wait:.1f} s more "
                    f"(LLM_RATE_LIMIT_MAX_WAIT_SECONDS={self.max_wait:g})",
                    retry_after=round(wait, 3),
                )
            # other workers wake at the same moment: a little jitter spreads their retries
            self._sleep(wait + random.uniform(0, 0.05))

    def settle(self, grant: Grant, tokens: int) -> None:
        limit = self.limits.get(grant.key)
        if limit is not None and limit.tpm and tokens != grant.tokens:
            self._recount(grant, min(tokens, limit.tpm))

    def _try(self, key: str, limit: Limit, tokens: int, member: str) -> float:
        raise NotImplementedError

    def _recount(self, grant: Grant, tokens: int) -> None:
        raise NotImplementedError


class MemoryRateLimiter(WindowLimiter):
    """Windows in this process (the algorithm of the Redis script, in Python)."""

    def __init__(self, limits: dict[str, Limit], **kwargs: Any) -> None:
        super().__init__(limits, **kwargs)
        self._windows: dict[str, deque[list[Any]]] = {}  # key -> [[time, member, tokens], ...]
        self._lock = threading.Lock()

    def _try(self, key: str, limit: Limit, tokens: int, member: str) -> float:
        with self._lock:
            now = self._clock()
            window = self._windows.setdefault(key, deque())
            while window and window[0][0] <= now - self.window:
                window.popleft()
            entries = list(window)
            wait = 0.0
            if limit.rpm and len(entries) >= limit.rpm:
                wait = entries[len(entries) - limit.rpm][0] + self.window - now
            if limit.tpm:
                used = sum(e[2] for e in entries)
                for entry in entries:  # the oldest calls leave the window first
                    if used + tokens <= limit.tpm:
                        break
                    used -= entry[2]
                    wait = max(wait, entry[0] + self.window - now)
            if wait > 0:
                return wait
            window.append([now, member, tokens])
            return 0.0

    def _recount(self, grant: Grant, tokens: int) -> None:
        with self._lock:
            for entry in self._windows.get(grant.key, ()):
                if entry[1] == grant.member:
                    entry[2] = tokens


class MemoryLLMCache:
    """Answers kept in this process until their TTL."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._items: dict[str, tuple[float, str]] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] <= self._clock():
                self._items.pop(key, None)
                return None
            return item[1]

    def put(self, key: str, value: str, ttl_seconds: int) -> None:
        with self._lock:
            self._items[key] = (self._clock() + ttl_seconds, value)


def blank_nonces(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with every data-block nonce replaced by the same placeholder."""
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    for nonce in set(_NONCE.findall(text)):
        text = text.replace(nonce, "0" * 16)
    blanked: list[dict[str, Any]] = json.loads(text)
    return blanked


def cache_key(
    models: list[str],
    messages: list[dict[str, Any]],
    *,
    temperature: float,
    tools: list[dict[str, Any]] | None,
    output_model: str,
) -> str:
    """One hex key for everything that decides the answer (see the module docstring)."""
    material = {
        "v": 1,
        "models": models,
        "messages": blank_nonces(messages),
        "temperature": temperature,
        "tools": tools or [],
        "output": output_model,
    }
    return sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
