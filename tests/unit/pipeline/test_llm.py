"""LLMClient against the scripted fake model: JSON validation and the re-ask, litellm Router
retries and fallbacks, error mapping, tool loop, usage and cost."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from pipeline.errors import ConfigError, LLMOutputError, LLMTransientError, LLMUnavailableError
from pipeline.llm import LLMClient, extract_json
from tests.support.llm import (
    CALL_COST,
    COMPLETION_TOKENS,
    FALLBACK,
    PRIMARY,
    PROMPT_TOKENS,
    auth_error,
    json_answer,
    llm_settings,
    rate_limited,
    server_error,
    text,
    tool_calls,
)


class Answer(BaseModel):
    verdict: str
    score: int


MESSAGES = [
    {"role": "system", "content": "Reply with JSON {verdict, score}."},
    {"role": "user", "content": "Judge this."},
]
GOOD = {"verdict": "fine", "score": 3}


def test_valid_answer_records_one_call_with_tokens_and_cost(scripted):
    scripted.script(PRIMARY, json_answer(GOOD))
    result, usage = LLMClient(llm_settings()).complete_model("stage_a", MESSAGES, Answer)
    assert result == Answer(**GOOD)
    assert usage.model == PRIMARY
    [call] = usage.calls
    assert (call.model, call.attempt, call.purpose) == (PRIMARY, 1, "answer")
    assert (call.input_tokens, call.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert call.cost_usd == pytest.approx(CALL_COST)
    assert usage.cost_usd == pytest.approx(CALL_COST)
    sent = scripted.received[0]
    assert sent.params["response_format"] == {"type": "json_object"}
    assert sent.messages == MESSAGES


def test_invalid_json_is_reasked_once_with_the_error(scripted):
    scripted.script(PRIMARY, text("Sure! Here is my verdict: fine"), json_answer(GOOD))
    result, usage = LLMClient(llm_settings()).complete_model("stage_a", MESSAGES, Answer)
    assert result.verdict == "fine"
    assert [(c.attempt, c.purpose) for c in usage.calls] == [(1, "answer"), (2, "reask")]
    reask = scripted.received[1].messages
    assert reask[:2] == MESSAGES
    assert reask[2] == {"role": "assistant", "content": "Sure! Here is my verdict: fine"}
    assert "no JSON object" in reask[3]["content"]


def test_schema_errors_are_fed_back_and_a_second_failure_raises(scripted):
    scripted.script(PRIMARY, json_answer({"verdict": "fine"}), json_answer({"score": "many"}))
    with pytest.raises(LLMOutputError, match="stayed invalid after one re-ask"):
        LLMClient(llm_settings()).complete_model("stage_a", MESSAGES, Answer)
    assert len(scripted.received) == 2
    assert "score: Field required" in scripted.received[1].messages[-1]["content"]


def test_caller_check_failure_triggers_the_reask(scripted):
    scripted.script(PRIMARY, json_answer({"verdict": "x", "score": 99}), json_answer(GOOD))

    def at_most_ten(answer: Answer) -> None:
        if answer.score > 10:
            raise ValueError("score must be at most 10")

    result, usage = LLMClient(llm_settings()).complete_model(
        "stage_a", MESSAGES, Answer, check=at_most_ten
    )
    assert result.score == 3 and len(usage.calls) == 2
    assert "score must be at most 10" in scripted.received[1].messages[-1]["content"]


def test_code_fences_around_the_json_are_tolerated():
    assert extract_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('Here: {"a": {"b": 2}} done') == {"a": {"b": 2}}


def test_rate_limit_is_retried_by_the_router_then_succeeds(scripted):
    scripted.script(PRIMARY, rate_limited(), json_answer(GOOD))
    result, usage = LLMClient(llm_settings(llm_max_retries=1)).complete_model(
        "stage_b", MESSAGES, Answer
    )
    assert result == Answer(**GOOD)
    assert len(scripted.calls_to(PRIMARY)) == 2  # the 429, then the retry
    assert [c.model for c in usage.calls] == [PRIMARY]


def test_primary_failing_for_good_falls_back_to_the_next_model(scripted):
    scripted.script(PRIMARY, auth_error())
    scripted.script(FALLBACK, json_answer(GOOD))
    settings = llm_settings(llm_fallback_models=[FALLBACK])
    result, usage = LLMClient(settings).complete_model("stage_a", MESSAGES, Answer)
    assert result == Answer(**GOOD)
    assert len(scripted.calls_to(PRIMARY)) == 1  # an auth error is not retried
    assert usage.model == FALLBACK
    assert [c.model for c in usage.calls] == [FALLBACK]
    assert usage.cost_usd == pytest.approx(CALL_COST)


def test_server_errors_are_retried_then_the_fallback_answers(scripted):
    scripted.script(PRIMARY, server_error(), server_error())
    scripted.script(FALLBACK, json_answer(GOOD))
    settings = llm_settings(llm_fallback_models=[FALLBACK], llm_max_retries=1)
    result, usage = LLMClient(settings).complete_model("stage_a", MESSAGES, Answer)
    assert result == Answer(**GOOD)
    assert len(scripted.calls_to(PRIMARY)) == 2
    assert usage.model == FALLBACK


def test_every_model_failing_raises_unavailable(scripted):
    scripted.script(PRIMARY, auth_error())
    scripted.script(FALLBACK, auth_error())
    settings = llm_settings(llm_fallback_models=[FALLBACK], llm_max_retries=0)
    with pytest.raises(LLMUnavailableError, match="every model failed") as info:
        LLMClient(settings).complete_model("stage_a", MESSAGES, Answer)
    assert "api key" not in info.value.user_message
    assert len(scripted.calls_to(FALLBACK)) == 1


def test_a_single_model_still_rate_limited_after_retries_is_transient(scripted):
    scripted.script(PRIMARY, rate_limited(retry_after="30"))
    with pytest.raises(LLMTransientError) as info:
        LLMClient(llm_settings(llm_max_retries=0)).complete_model("stage_a", MESSAGES, Answer)
    assert info.value.retry_after == 30.0


def test_a_single_model_failing_permanently_is_unavailable(scripted):
    scripted.script(PRIMARY, auth_error())
    with pytest.raises(LLMUnavailableError):
        LLMClient(llm_settings(llm_max_retries=0)).complete_model("stage_a", MESSAGES, Answer)


def test_stage_models_come_from_settings(scripted):
    scripted.script(FALLBACK, json_answer(GOOD))
    settings = llm_settings(llm_model_stage_b=FALLBACK)
    _, usage = LLMClient(settings).complete_model("stage_b", MESSAGES, Answer)
    assert usage.model == FALLBACK and not scripted.calls_to(PRIMARY)


def test_unknown_provider_is_a_config_error():
    with pytest.raises(ConfigError, match="not a litellm model name"):
        LLMClient(llm_settings(llm_model="nosuchprovider/model")).complete_model(
            "stage_a", MESSAGES, Answer
        )


def test_tool_calls_go_through_the_handler_and_results_come_back(scripted):
    scripted.script(
        PRIMARY,
        tool_calls(("lookup", {"q": "a"}), ("lookup", {"q": "b"})),
        json_answer(GOOD),
    )
    seen = []

    def handler(name, args):
        seen.append((name, args))
        return f"result for {args['q']}"

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    result, usage = LLMClient(llm_settings()).complete_model(
        "stage_a", MESSAGES, Answer, tools=tools, tool_handler=handler
    )
    assert result == Answer(**GOOD)
    assert seen == [("lookup", {"q": "a"}), ("lookup", {"q": "b"})]
    assert [c.purpose for c in usage.calls] == ["tool", "answer"]
    second = scripted.received[1].messages
    assert second[2]["role"] == "assistant" and len(second[2]["tool_calls"]) == 2
    assert [(m["role"], m["content"]) for m in second[3:]] == [
        ("tool", "result for a"),
        ("tool", "result for b"),
    ]
    assert scripted.received[0].params["tools"] == tools


def test_a_model_that_never_stops_calling_tools_is_stopped(scripted):
    settings = llm_settings(max_tool_calls=1)  # hard cap: max_tool_calls + 2 rounds
    scripted.script(PRIMARY, *[tool_calls(("lookup", {"q": "again"}))] * 4)
    with pytest.raises(LLMOutputError, match="kept calling tools"):
        LLMClient(settings).complete_model(
            "stage_a",
            MESSAGES,
            Answer,
            tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
            tool_handler=lambda name, args: "limit reached",
        )
    assert scripted.received[-1].params.get("tool_choice") == "none"


def test_real_model_requests_are_blocked_in_the_test_suite(monkeypatch):
    """The suite sets TECHNOSHARE_ALLOW_MODEL_REQUESTS=false: a model that would leave the
    machine is refused before any request; loopback servers and in-process doubles are not."""
    import os

    from pipeline.llm import ALLOW_MODEL_REQUESTS_ENV, check_model_requests_allowed

    assert os.environ[ALLOW_MODEL_REQUESTS_ENV] == "false"
    client = LLMClient(llm_settings(llm_model="openai/gpt-4o-mini"))
    with pytest.raises(ConfigError, match="real model requests are blocked"):
        client.complete_model("stage_a", MESSAGES, Answer)
    check_model_requests_allowed("openai/x", "openai", "http://127.0.0.1:8000/v1")  # loopback
    with pytest.raises(ConfigError):
        check_model_requests_allowed("openai/x", "openai", "http://10.0.0.5:8000/v1")
    monkeypatch.setenv(ALLOW_MODEL_REQUESTS_ENV, "true")
    check_model_requests_allowed("openai/x", "openai", None)  # allowed outside the suite
