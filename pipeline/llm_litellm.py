"""The litellm side of ``pipeline.llm``: one Router per configuration, its parameters, cost and
error mapping. litellm is imported on the first call that needs it (6-7 s at start-up), never
by importing this module: a process that runs only the offline model never loads it.

Errors after the Router gave up: with fallbacks configured, every model failed ->
:class:`LLMUnavailableError`; with one model, a transient failure (429, 5xx, timeout,
connection) -> :class:`LLMTransientError` (the task may retry later), anything else ->
:class:`LLMUnavailableError`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import ConfigError, LLMTransientError, LLMUnavailableError
from pipeline.models import LLMCall
from pipeline.settings import Settings

ALLOW_MODEL_REQUESTS_ENV = "TECHNOSHARE_ALLOW_MODEL_REQUESTS"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Providers that talk to an OpenAI-compatible or Ollama server: these take LLM_API_BASE.
_API_BASE_PROVIDERS = frozenset(
    {"openai", "hosted_vllm", "ollama", "ollama_chat", "lm_studio", "llamafile", "openai_like"}
)
_TRANSIENT_NAMES = (
    "RateLimitError",
    "Timeout",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
)
_routers: dict[tuple[Any, ...], Any] = {}  # built once per process per configuration (~0.5 s)
_routers_lock = threading.Lock()
_setup_lock = threading.Lock()
_ready = False
_on_load: list[Callable[[Any], None]] = []  # called with litellm once it is loaded here


def lib() -> Any:
    """litellm, imported and set up once: quiet, and the offline model registered as a provider
    (a Router may fall back to it); then each ``on_load`` callback, before the first call."""
    global _ready
    import litellm

    if not _ready:
        with _setup_lock:
            if not _ready:
                litellm.suppress_debug_info = True  # no "Provider List" banners on stdout
                from pipeline.offline_model import register

                register()
                for callback in _on_load:
                    _run(callback, litellm)
                _ready = True
    return litellm


def on_load(callback: Callable[[Any], None]) -> None:
    """Run ``callback(litellm)`` when this module first loads litellm, or now if it has: how
    observability arms LLM-call autologging without importing litellm for a job that never
    calls a real model. (Not MLflow's post-import hooks: their registry holds its lock while a
    hook imports, and every import in another thread takes that lock inside the interpreter's
    import lock: the two deadlocked.)"""
    with _setup_lock:
        if not _ready:
            _on_load.append(callback)
            return
    _run(callback, lib())


def _run(callback: Callable[[Any], None], litellm: Any) -> None:
    try:
        callback(litellm)
    except Exception:  # an observer's failure never fails the model call
        logging.getLogger(__name__).info("litellm load callback failed", exc_info=True)


def _short(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:300]


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        return float(headers.get("retry-after", ""))
    except (TypeError, ValueError):
        return None


def check_model_requests_allowed(model: str, provider: str, api_base: str | None) -> None:
    """With ``TECHNOSHARE_ALLOW_MODEL_REQUESTS=false`` (the test suite sets it, as pydantic-ai's
    ``ALLOW_MODEL_REQUESTS = False`` does) only models that never leave the machine may be
    called: the offline model, providers registered in-process (test doubles), and servers on
    loopback. Anything else is a ``ConfigError`` before a request is made."""
    if os.environ.get(ALLOW_MODEL_REQUESTS_ENV, "true").strip().lower() not in ("0", "false", "no"):
        return
    in_process = {entry.get("provider") for entry in lib().custom_provider_map or []}
    if provider in in_process:
        return
    host = (urlsplit(api_base).hostname or "") if api_base else ""
    if host in _LOOPBACK_HOSTS or host.startswith("127."):
        return
    raise ConfigError(
        f"real model requests are blocked ({ALLOW_MODEL_REQUESTS_ENV}=false): {model!r} would "
        "leave this machine; use the offline model, a test double or a loopback LLM_API_BASE"
    )


class LitellmCaller:
    """Calls through a litellm Router with fallbacks and retries; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _params(self, model: str) -> dict[str, Any]:
        litellm = lib()
        try:
            provider = litellm.get_llm_provider(model)[1]
        except Exception as exc:  # litellm raises BadRequestError for an unknown provider
            raise ConfigError(
                f"LLM model {model!r} is not a litellm model name (e.g. openai/gpt-4o-mini, "
                "anthropic/claude-..., ollama_chat/llama3.1, offline/extractive)"
            ) from exc
        base = self.settings.llm_api_base
        check_model_requests_allowed(
            model, provider, base if provider in _API_BASE_PROVIDERS else None
        )
        params: dict[str, Any] = {"model": model}
        if base and provider in _API_BASE_PROVIDERS:
            params["api_base"] = base
            if provider == "openai" and not os.environ.get("OPENAI_API_KEY"):
                params["api_key"] = "no-key"  # local OpenAI-compatible servers want any key
            if provider.startswith("ollama"):
                os.environ.setdefault("OLLAMA_API_BASE", base)  # its model-info call needs it
        return params

    def router(self, models: list[str]) -> Any:
        s = self.settings
        key = (tuple(models), s.llm_api_base, s.llm_max_retries, s.llm_timeout)
        with _routers_lock:
            if key not in _routers:
                _routers[key] = lib().Router(
                    model_list=[
                        {"model_name": m, "litellm_params": self._params(m)} for m in models
                    ],
                    fallbacks=[{models[0]: models[1:]}] if len(models) > 1 else [],
                    num_retries=s.llm_max_retries,
                    timeout=s.llm_timeout,
                    disable_cooldowns=True,  # one deployment per model: a cooldown would skip it
                )
            return _routers[key]

    def call(self, models: list[str], kwargs: dict[str, Any]) -> tuple[Any, LLMCall]:
        """One completion (the Router's retries and fallbacks inside): the message and what it
        cost; ``attempt`` and ``purpose`` are the caller's to fill."""
        from openai import OpenAIError  # every litellm exception derives from it

        router = self.router(models)
        started = time.monotonic()
        try:
            response = router.completion(model=models[0], **kwargs)
        except OpenAIError as exc:
            raise self._error(models, exc) from exc
        latency = time.monotonic() - started
        hidden = getattr(response, "_hidden_params", {}) or {}
        answered_by = hidden.get("litellm_model_name") or response.model or models[0]
        usage = getattr(response, "usage", None)
        return response.choices[0].message, LLMCall(
            model=str(answered_by),
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=float(self._cost(response, hidden)),
            latency_seconds=round(latency, 4),
        )

    @staticmethod
    def _cost(response: Any, hidden: dict[str, Any]) -> float:
        if hidden.get("response_cost") is not None:
            return float(hidden["response_cost"])
        try:
            return float(lib().completion_cost(completion_response=response))
        except Exception:  # a model missing from the price list (local servers): free
            return 0.0

    @staticmethod
    def _error(models: list[str], exc: BaseException) -> Exception:
        if len(models) > 1:
            return LLMUnavailableError(f"every model failed ({', '.join(models)}): {_short(exc)}")
        litellm = lib()
        transient = tuple(getattr(litellm, n) for n in _TRANSIENT_NAMES if hasattr(litellm, n))
        if isinstance(exc, transient):
            return LLMTransientError(
                f"{models[0]} failed after retries: {_short(exc)}", retry_after=_retry_after(exc)
            )
        return LLMUnavailableError(f"{models[0]} failed: {_short(exc)}")
