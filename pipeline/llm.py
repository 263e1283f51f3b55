"""The LLM layer: one sync call path on litellm for both stages.

``LLMClient(settings).complete_model(stage, messages, OutputModel, ...)`` returns a validated
pydantic instance and the stage's :class:`StageUsage`:

- the model is ``settings.model_for(stage)`` (any litellm name: ``openai/...``,
  ``anthropic/...``, ``ollama_chat/...``, an OpenAI-compatible server via ``LLM_API_BASE``, or the
  default ``offline/extractive``), with ``LLM_FALLBACK_MODELS`` as litellm Router fallbacks;
- litellm's Router retries 429/5xx/timeouts with backoff (``LLM_MAX_RETRIES`` per model) and
  moves to the next fallback when a model fails for good;
- the answer must be JSON (``response_format`` json_object; the schema is in the prompt) valid
  for the output model and for the caller's ``check``; ONE re-ask feeds the error back, then
  :class:`LLMOutputError`;
- tool calls are answered through ``tool_handler(name, args) -> str`` (the caller enforces its
  own cap; a hard cap here stops a model that never stops calling);
- every successful call is an :class:`LLMCall` (model that answered, tokens, USD cost, latency).

Calls are sync (``Router.completion``) so ``mlflow.litellm.autolog`` records them as spans.
Tests replace the model with a litellm custom provider (``tests/support/llm.py``): the seam is
the model name, nothing in this module is patched.

Errors after the Router gave up: with fallbacks configured, every model failed ->
:class:`LLMUnavailableError`; with one model, a transient failure (429, 5xx, timeout,
connection) -> :class:`LLMTransientError` (the task may retry later), anything else ->
:class:`LLMUnavailableError`.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import litellm
from openai import OpenAIError
from pydantic import BaseModel, ValidationError

from pipeline import offline_model
from pipeline.errors import ConfigError, LLMOutputError, LLMTransientError, LLMUnavailableError
from pipeline.models import LLMCall, StageUsage
from pipeline.settings import Settings

litellm.suppress_debug_info = True  # no "Provider List" banners on stdout

T = TypeVar("T", bound=BaseModel)
ToolHandler = Callable[[str, dict[str, Any]], str]
OutputCheck = Callable[[Any], None]  # raises ValueError with a message fed back to the model

# Providers that talk to an OpenAI-compatible or Ollama server: these take LLM_API_BASE.
_API_BASE_PROVIDERS = frozenset(
    {"openai", "hosted_vllm", "ollama", "ollama_chat", "lm_studio", "llamafile", "openai_like"}
)
_TRANSIENT = tuple(
    getattr(litellm, name)
    for name in (
        "RateLimitError",
        "Timeout",
        "APIConnectionError",
        "InternalServerError",
        "ServiceUnavailableError",
        "BadGatewayError",
    )
    if hasattr(litellm, name)
)
REASK = (
    "Your previous answer could not be used: {error}\n"
    "Answer again with ONLY one JSON object that follows the schema in the instructions: "
    "no prose, no code fences."
)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_routers: dict[tuple[Any, ...], Any] = {}  # built once per process per configuration (~0.5 s)
_routers_lock = threading.Lock()


def extract_json(text: str) -> Any:
    """The JSON object in a model answer (code fences and text around the object tolerated)."""
    text = _FENCE.sub("", text.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("the answer contains no JSON object")
    return json.loads(text[start : end + 1])


def _validation_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()[:8]
        ]
        return "the JSON does not match the schema: " + "; ".join(parts)
    if isinstance(exc, json.JSONDecodeError):
        return f"the answer is not valid JSON ({exc.msg} at position {exc.pos})"
    return str(exc)[:1500]


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


ALLOW_MODEL_REQUESTS_ENV = "TECHNOSHARE_ALLOW_MODEL_REQUESTS"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def check_model_requests_allowed(model: str, provider: str, api_base: str | None) -> None:
    """With ``TECHNOSHARE_ALLOW_MODEL_REQUESTS=false`` (the test suite sets it, as pydantic-ai's
    ``ALLOW_MODEL_REQUESTS = False`` does) only models that never leave the machine may be
    called: the offline model, providers registered in-process (test doubles), and servers on
    loopback. Anything else is a ``ConfigError`` before a request is made."""
    if os.environ.get(ALLOW_MODEL_REQUESTS_ENV, "true").strip().lower() not in ("0", "false", "no"):
        return
    in_process = {entry.get("provider") for entry in litellm.custom_provider_map or []}
    if provider in in_process:
        return
    host = (urlsplit(api_base).hostname or "") if api_base else ""
    if host in _LOOPBACK_HOSTS or host.startswith("127."):
        return
    raise ConfigError(
        f"real model requests are blocked ({ALLOW_MODEL_REQUESTS_ENV}=false): {model!r} would "
        "leave this machine; use the offline model, a test double or a loopback LLM_API_BASE"
    )


class LLMClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        offline_model.register()

    # --- configuration -------------------------------------------------------------------
    def models_for(self, stage: str) -> list[str]:
        """Primary then fallbacks, without repeats."""
        return list(
            dict.fromkeys([self.settings.model_for(stage), *self.settings.llm_fallback_models])
        )

    def _litellm_params(self, model: str) -> dict[str, Any]:
        try:
            provider = litellm.get_llm_provider(model)[1]
        except Exception as exc:  # litellm raises BadRequestError for an unknown provider
            raise ConfigError(
                f"LLM model {model!r} is not a litellm model name (e.g. openai/gpt-4o-mini, "
                f"anthropic/claude-..., ollama_chat/llama3.1, {offline_model.MODEL})"
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

    def _router(self, models: list[str]) -> Any:
        s = self.settings
        key = (tuple(models), s.llm_api_base, s.llm_max_retries, s.llm_timeout)
        with _routers_lock:
            if key not in _routers:
                _routers[key] = litellm.Router(
                    model_list=[
                        {"model_name": m, "litellm_params": self._litellm_params(m)} for m in models
                    ],
                    fallbacks=[{models[0]: models[1:]}] if len(models) > 1 else [],
                    num_retries=s.llm_max_retries,
                    timeout=s.llm_timeout,
                    disable_cooldowns=True,  # one deployment per model: a cooldown would skip it
                )
            return _routers[key]

    # --- one call ------------------------------------------------------------------------
    def _call(
        self,
        models: list[str],
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None,
        tool_choice: str | None,
        purpose: str,
        attempt: int,
    ) -> tuple[Any, LLMCall]:
        kwargs: dict[str, Any] = {
            "model": models[0],
            "messages": messages,
            "temperature": self.settings.llm_temperature,
            "response_format": {"type": "json_object"},
            "drop_params": True,  # providers without json mode or temperature still answer
        }
        if tools:
            kwargs["tools"] = tools
            if tool_choice:
                kwargs["tool_choice"] = tool_choice
        started = time.monotonic()
        try:
            response = self._router(models).completion(**kwargs)
        except OpenAIError as exc:  # every litellm exception derives from it
            raise self._error(models, exc) from exc
        latency = time.monotonic() - started
        hidden = getattr(response, "_hidden_params", {}) or {}
        answered_by = hidden.get("litellm_model_name") or response.model or models[0]
        usage = getattr(response, "usage", None)
        return response, LLMCall(
            model=str(answered_by),
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=float(self._cost(response, hidden)),
            latency_seconds=round(latency, 4),
            attempt=attempt,
            purpose=purpose,
        )

    @staticmethod
    def _cost(response: Any, hidden: dict[str, Any]) -> float:
        if hidden.get("response_cost") is not None:
            return float(hidden["response_cost"])
        try:
            return float(litellm.completion_cost(completion_response=response))
        except Exception:  # a model missing from the price list (local servers): free
            return 0.0

    @staticmethod
    def _error(models: list[str], exc: BaseException) -> Exception:
        if len(models) > 1:
            return LLMUnavailableError(f"every model failed ({', '.join(models)}): {_short(exc)}")
        if isinstance(exc, _TRANSIENT):
            return LLMTransientError(
                f"{models[0]} failed after retries: {_short(exc)}", retry_after=_retry_after(exc)
            )
        return LLMUnavailableError(f"{models[0]} failed: {_short(exc)}")

    # --- the public call -----------------------------------------------------------------
    def complete_model(
        self,
        stage: str,
        messages: list[dict[str, Any]],
        output_model: type[T],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_handler: ToolHandler | None = None,
        purpose: str = "answer",
        check: OutputCheck | None = None,
    ) -> tuple[T, StageUsage]:
        """Ask ``stage``'s model for an ``output_model``; see the module docstring."""
        models = self.models_for(stage)
        usage = StageUsage(model=models[0])
        convo = list(messages)
        attempt, tool_rounds = 1, 0
        max_rounds = self.settings.max_tool_calls + 2
        while True:
            offer_tools = tools if tools and tool_handler else None
            response, call = self._call(
                models,
                convo,
                tools=offer_tools,
                tool_choice="none" if offer_tools and tool_rounds >= max_rounds else None,
                purpose=purpose if attempt == 1 else "reask",
                attempt=attempt,
            )
            usage.calls.append(call)
            usage.model = call.model
            message = response.choices[0].message
            tool_calls = getattr(message, "tool_calls", None) or []
            if tool_calls and offer_tools and tool_handler:
                if tool_rounds >= max_rounds:
                    raise LLMOutputError(f"the model kept calling tools after {tool_rounds} rounds")
                call.purpose = "tool"
                tool_rounds += 1
                convo += self._run_tools(message, tool_calls, tool_handler)
                continue
            content = message.content or ""
            try:
                result = output_model.model_validate(extract_json(content))
                if check is not None:
                    check(result)
                return result, usage
            except (ValueError, ValidationError) as exc:
                if attempt >= 2:
                    raise LLMOutputError(
                        f"{stage}: the answer of {call.model} stayed invalid after one re-ask: "
                        f"{_validation_message(exc)}"
                    ) from exc
                attempt = 2
                convo += [
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": REASK.format(error=_validation_message(exc))},
                ]

    @staticmethod
    def _run_tools(
        message: Any, tool_calls: list[Any], handler: ToolHandler
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {
                "role": "assistant",
                "content": message.content,
                "tool_calls": [
                    {
                        "id": tc.id,
                        "type": "function",
                        "function": {"name": tc.function.name, "arguments": tc.function.arguments},
                    }
                    for tc in tool_calls
                ],
            }
        ]
        for tc in tool_calls:
            try:
                args = json.loads(tc.function.arguments or "{}")
                result = handler(tc.function.name, args if isinstance(args, dict) else {})
            except json.JSONDecodeError:
                result = "error: the tool arguments were not valid JSON"
            out.append({"role": "tool", "tool_call_id": tc.id, "content": result})
        return out
