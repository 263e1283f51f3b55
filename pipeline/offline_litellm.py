"""``offline/extractive`` as a litellm custom provider, for Routers that need it as a model
among others (a fallback after a real model) and for tests that call ``litellm.completion``.

The answer is ``pipeline.offline_model.complete``'s, handed to :func:`register_provider` (this
module imports nothing of the offline model: no import circle); it only wraps it in litellm's
types (``litellm.CustomLLM`` in ``litellm.custom_provider_map``, registered with zero cost so
``completion_cost`` works). Importing it imports litellm: only ``offline_model.register`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.types.utils import ModelResponse, Usage

# complete(model, messages) -> an answer with model, content, prompt_tokens, completion_tokens
Complete = Callable[[str, list[dict[str, Any]]], Any]

_ZERO_COST = {
    "input_cost_per_token": 0.0,
    "output_cost_per_token": 0.0,
    "cache_creation_input_token_cost": 0.0,
    "cache_read_input_token_cost": 0.0,
    "max_input_tokens": 1_000_000,
    "max_output_tokens": 100_000,
    "mode": "chat",
}


class OfflineExtractiveLLM(CustomLLM):
    def __init__(self, provider: str, complete: Complete) -> None:
        super().__init__()
        self.provider, self.complete = provider, complete

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        # litellm passes everything by keyword (model, messages, model_response, ...).
        response: ModelResponse = kwargs["model_response"]
        try:
            done = self.complete(kwargs["model"], kwargs["messages"])
        except ValueError as exc:  # a permanent error: litellm must not retry it
            raise litellm.BadRequestError(
                message=str(exc), model=kwargs["model"], llm_provider=self.provider
            ) from exc
        response.choices[0].message.content = done.content  # type: ignore[union-attr]
        response.model = done.model
        response.usage = Usage(  # type: ignore[attr-defined]
            prompt_tokens=done.prompt_tokens,
            completion_tokens=done.completion_tokens,
            total_tokens=done.prompt_tokens + done.completion_tokens,
        )
        return response


def register_provider(provider: str, model: str, complete: Complete) -> None:
    """Add the provider to litellm's map once, and ``model`` at zero price."""
    if not any(p.get("provider") == provider for p in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": provider, "custom_handler": OfflineExtractiveLLM(provider, complete)},
        ]
    litellm.register_model({model: {**_ZERO_COST, "litellm_provider": provider}})
