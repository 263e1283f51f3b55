"""The LLM layer: one sync call path for both stages.

``LLMClient(settings, limiter=None, cache=None).complete_model(stage, messages, OutputModel,
...)`` returns a validated pydantic instance and the stage's :class:`StageUsage`:

- the model is ``settings.model_for(stage)`` (any litellm name: ``openai/...``,
  ``anthropic/...``, ``ollama_chat/...``, an OpenAI-compatible server via ``LLM_API_BASE``, or the
  default ``offline/extractive``), with ``LLM_FALLBACK_MODELS`` as litellm Router fallbacks
  (``pipeline.llm_litellm``: retries 429/5xx/timeouts with backoff, ``LLM_MAX_RETRIES`` per
  model, then the next fallback);
- when every model of the stage is offline, ``pipeline.offline_model.complete`` answers directly:
  the same answer, tokens and validation, without importing litellm (seconds per process);
- the answer must be JSON (``response_format`` json_object; the schema is in the prompt) valid
  for the output model and for the caller's ``check``; ONE re-ask feeds the error back, then
  :class:`LLMOutputError`;
- tool calls are answered through ``tool_handler(name, args) -> str`` (the caller enforces its
  own cap; a hard cap here stops a model that never stops calling);
- every call is an :class:`LLMCall` (model that answered, tokens, USD cost, latency);
- ``limiter`` (``pipeline.llm_limits.RateLimiter``) makes each call to a limited model wait
  for room in the shared per-model window (the offline model is never limited);
- ``cache`` (``pipeline.llm_limits.LLMCache``, with ``LLM_CACHE_TTL_SECONDS`` > 0) reuses a
  validated answer to the same messages and models; a hit is one call with
  ``purpose="cache_hit"``, no tokens and no cost. Answers that needed tools are not kept (their
  facts cite pages the tools fetched).

Calls are sync (``Router.completion``) so ``mlflow.litellm.autolog`` records them as spans.
Tests replace the model with a litellm custom provider (``tests/support/llm.py``): the seam is
the model name, nothing in this module is patched.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline import offline_model
from pipeline.errors import LLMOutputError, LLMUnavailableError
from pipeline.llm_limits import LLMCache, RateLimiter, cache_key, estimate_tokens
from pipeline.llm_litellm import ALLOW_MODEL_REQUESTS_ENV as ALLOW_MODEL_REQUESTS_ENV
from pipeline.llm_litellm import LitellmCaller
from pipeline.llm_litellm import check_model_requests_allowed as check_model_requests_allowed
from pipeline.models import LLMCall, StageUsage
from pipeline.settings import Settings

T = TypeVar("T", bound=BaseModel)
ToolHandler = Callable[[str, dict[str, Any]], str]
OutputCheck = Callable[[Any], None]  # raises ValueError with a message fed back to the model

REASK = (
    "Your previous answer could not be used: {error}\n"
    "Answer again with ONLY one JSON object that follows the schema in the instructions: "
    "no prose, no code fences."
)
CACHE_HIT = "cache_hit"  # LLMCall.purpose of an answer served from the cache
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


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


@dataclass
class _Message:
    """An offline answer in the shape of a litellm message."""

    content: str
    tool_calls: None = None


class LLMClient:
    def __init__(
        self,
        settings: Settings,
        *,
        limiter: RateLimiter | None = None,
        cache: LLMCache | None = None,
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.cache = cache if settings.llm_cache_ttl_seconds > 0 else None
        self._litellm = LitellmCaller(settings)

    # --- configuration -------------------------------------------------------------------
    def models_for(self, stage: str) -> list[str]:
        """Primary then fallbacks, without repeats."""
        return list(
            dict.fromkeys([self.settings.model_for(stage), *self.settings.llm_fallback_models])
        )

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
        if all(offline_model.is_offline_model(m) for m in models):
            message, call = self._offline_call(models[0], messages)
        else:
            kwargs: dict[str, Any] = {
                "messages": messages,
                "temperature": self.settings.llm_temperature,
                "response_format": {"type": "json_object"},
                "drop_params": True,  # providers without json mode or temperature still answer
            }
            if tools:
                kwargs["tools"] = tools
                if tool_choice:
                    kwargs["tool_choice"] = tool_choice
            limiter = self.limiter
            grant = limiter.acquire(models[0], estimate_tokens(messages)) if limiter else None
            message, call = self._litellm.call(models, kwargs)
            if grant is not None and limiter is not None:
                limiter.settle(grant, call.input_tokens + call.output_tokens)
        call.attempt, call.purpose = attempt, purpose
        return message, call

    @staticmethod
    def _offline_call(model: str, messages: list[dict[str, Any]]) -> tuple[_Message, LLMCall]:
        started = time.monotonic()
        try:
            done = offline_model.complete(model, messages)
        except ValueError as exc:  # the prompt cannot be answered: retrying cannot help
            raise LLMUnavailableError(f"{model} failed: BadRequestError: {exc}") from exc
        return _Message(done.content), LLMCall(
            model=model,
            input_tokens=done.prompt_tokens,
            output_tokens=done.completion_tokens,
            latency_seconds=round(time.monotonic() - started, 4),
        )

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
        key = self._cache_key(models, messages, tools if tool_handler else None, output_model)
        if key is not None and (hit := self._cached(key, output_model, check, usage)) is not None:
            return hit, usage
        convo = list(messages)
        attempt, tool_rounds = 1, 0
        max_rounds = self.settings.max_tool_calls + 2
        while True:
            offer_tools = tools if tools and tool_handler else None
            message, call = self._call(
                models,
                convo,
                tools=offer_tools,
                tool_choice="none" if offer_tools and tool_rounds >= max_rounds else None,
                purpose=purpose if attempt == 1 else "reask",
                attempt=attempt,
            )
            usage.calls.append(call)
            usage.model = call.model
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
                continue
            if key is not None and self.cache is not None and tool_rounds == 0:
                entry = json.dumps({"model": call.model, "content": content}, ensure_ascii=False)
                self.cache.put(key, entry, self.settings.llm_cache_ttl_seconds)
            return result, usage

    # --- the cache -----------------------------------------------------------------------
    def _cache_key(
        self,
        models: list[str],
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        output_model: type[BaseModel],
    ) -> str | None:
        if self.cache is None or all(offline_model.is_offline_model(m) for m in models):
            return None  # the offline model answers faster than a cache lookup
        return cache_key(
            models,
            messages,
            temperature=self.settings.llm_temperature,
            tools=tools,
            output_model=f"{output_model.__module__}.{output_model.__qualname__}",
        )

    def _cached(
        self, key: str, output_model: type[T], check: OutputCheck | None, usage: StageUsage
    ) -> T | None:
        """The kept answer, validated again as a fresh one would be (a check may depend on more
        than the messages); None: a miss, or a kept answer that no longer passes."""
        assert self.cache is not None
        started = time.monotonic()
        raw = self.cache.get(key)
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
            result = output_model.model_validate(extract_json(str(entry["content"])))
            if check is not None:
                check(result)
        except (ValueError, KeyError, TypeError, ValidationError):
            return None
        call = LLMCall(
            model=str(entry.get("model") or usage.model),
            latency_seconds=round(time.monotonic() - started, 4),
            purpose=CACHE_HIT,
        )
        usage.calls.append(call)
        usage.model = call.model
        return result

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
