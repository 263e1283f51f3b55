"""A scripted fake model for the LLM tests, and hand-made evidence.

``ScriptedLLM`` is a litellm custom provider (the seam of every model but the offline one, which
``LLMClient`` calls directly; ``offline_model.register()`` makes it a provider too): tests set
``LLM_MODEL=scripted/primary`` (and ``scripted/fallback``) and script each model's answers, in
order, with the step helpers below. Every request the provider receives is recorded, so tests can
read the messages, tools and params the LLM layer really sent.

litellm is imported once per test session (6-7 s); import this module, not litellm directly.
Fixtures: import ``scripted_fixture`` into a test module and use the name ``scripted``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import litellm
import pytest
from litellm import CustomLLM
from litellm.types.utils import ChatCompletionMessageToolCall, Function, ModelResponse, Usage

from pipeline import offline_model, stage_a
from pipeline.context import ProjectContext, load_project_context
from pipeline.llm import LLMClient
from pipeline.models import Evidence
from pipeline.prompting import PROMPTS_DIR, FilePromptSource, new_nonce
from pipeline.settings import Settings

PROVIDER = "scripted"
PRIMARY = f"{PROVIDER}/primary"
FALLBACK = f"{PROVIDER}/fallback"
PROMPT_TOKENS, COMPLETION_TOKENS = 120, 30
COST_IN, COST_OUT = 2e-6, 8e-6  # USD per token, registered for both scripted models
CALL_COST = PROMPT_TOKENS * COST_IN + COMPLETION_TOKENS * COST_OUT


# --- script steps --------------------------------------------------------------------------
@dataclass
class Step:
    kind: str  # text | tools | raise | reply (a function of the messages)
    value: Any = None


def text(content: str) -> Step:
    return Step("text", content)


def json_answer(data: Any) -> Step:
    return Step("text", json.dumps(data, ensure_ascii=False))


def tool_calls(*calls: tuple[str, dict[str, Any]]) -> Step:
    return Step("tools", list(calls))


def reply(fn: Callable[[list[dict[str, Any]]], str]) -> Step:
    return Step("reply", fn)


def _http_error(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://llm"))


def rate_limited(retry_after: str | None = None) -> Step:
    headers = {"retry-after": retry_after} if retry_after else None
    return Step(
        "raise",
        lambda model: litellm.RateLimitError(
            message="rate limited (scripted)",
            llm_provider=PROVIDER,
            model=model,
            response=_http_error(429, headers),
        ),
    )


def server_error() -> Step:
    return Step(
        "raise",
        lambda model: litellm.InternalServerError(
            message="upstream exploded (scripted)", llm_provider=PROVIDER, model=model
        ),
    )


def auth_error() -> Step:
    return Step(
        "raise",
        lambda model: litellm.AuthenticationError(
            message="invalid api key (scripted)", llm_provider=PROVIDER, model=model
        ),
    )


# --- the provider --------------------------------------------------------------------------
@dataclass
class Received:
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]

    @property
    def system(self) -> str:
        return "\n".join(str(m.get("content")) for m in self.messages if m["role"] == "system")

    @property
    def all_text(self) -> str:
        return "\n".join(str(m.get("content") or "") for m in self.messages)


@dataclass
class ScriptedLLM(CustomLLM):
    scripts: dict[str, list[Step]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def script(self, model: str, *steps: Step) -> None:
        self.scripts.setdefault(model, []).extend(steps)

    def reset(self) -> None:
        self.scripts.clear()
        self.received.clear()

    def calls_to(self, model: str) -> list[Received]:
        return [r for r in self.received if r.model == model]

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        model = f"{PROVIDER}/{kwargs['model'].split('/')[-1]}"
        messages = [dict(m) for m in kwargs["messages"]]
        self.received.append(Received(model, messages, dict(kwargs["optional_params"])))
        queue = self.scripts.get(model)
        if not queue:
            raise litellm.BadRequestError(
                message=f"script for {model} is exhausted", model=model, llm_provider=PROVIDER
            )
        step = queue.pop(0)
        if step.kind == "raise":
            raise step.value(model)
        response: ModelResponse = kwargs["model_response"]
        message = response.choices[0].message  # type: ignore[union-attr]
        if step.kind == "tools":
            message.content = None
            message.tool_calls = [
                ChatCompletionMessageToolCall(
                    id=f"call_{len(self.received)}_{i}",
                    type="function",
                    function=Function(name=name, arguments=json.dumps(args)),
                )
                for i, (name, args) in enumerate(step.value)
            ]
            response.choices[0].finish_reason = "tool_calls"
        else:
            message.content = step.value(messages) if step.kind == "reply" else step.value
        response.model = model
        response.usage = Usage(  # type: ignore[attr-defined]
            prompt_tokens=PROMPT_TOKENS,
            completion_tokens=COMPLETION_TOKENS,
            total_tokens=PROMPT_TOKENS + COMPLETION_TOKENS,
        )
        return response


_provider = ScriptedLLM()


def _register() -> None:
    if not any(p.get("provider") == PROVIDER for p in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": PROVIDER, "custom_handler": _provider},
        ]
    price = {
        "input_cost_per_token": COST_IN,
        "output_cost_per_token": COST_OUT,
        "cache_creation_input_token_cost": 0.0,
        "cache_read_input_token_cost": 0.0,
        "litellm_provider": PROVIDER,
        "mode": "chat",
    }
    litellm.register_model({PRIMARY: dict(price), FALLBACK: dict(price)})


@pytest.fixture(name="scripted")
def scripted_fixture() -> Iterator[ScriptedLLM]:
    """The fake model, with empty scripts and no recorded calls."""
    _register()
    _provider.reset()
    yield _provider
    _provider.reset()


def llm_settings(**overrides: Any) -> Settings:
    """Settings for the scripted model: one retry per model (each litellm retry sleeps ~1 s)."""
    values: dict[str, Any] = {"llm_model": PRIMARY, "llm_max_retries": 1, "llm_timeout": 10.0}
    values.update(overrides)
    return Settings(**values)


# --- evidence ------------------------------------------------------------------------------
# --- the offline stack -----------------------------------------------------------------------
def offline_settings(**overrides: Any) -> Settings:
    return llm_settings(llm_model=offline_model.MODEL, **overrides)


def offline_llm(settings: Settings | None = None) -> LLMClient:
    return LLMClient(settings or offline_settings())


def prompts() -> FilePromptSource:
    return FilePromptSource()  # the shipped prompts/*.md


def default_context() -> ProjectContext:
    return load_project_context(PROMPTS_DIR / "project_context.yaml")


def stage_a_messages(evidence: Evidence) -> list[dict[str, Any]]:
    messages, _ = stage_a.build_messages(
        evidence, prompts=prompts(), settings=offline_settings(), nonce=new_nonce()
    )
    return messages
