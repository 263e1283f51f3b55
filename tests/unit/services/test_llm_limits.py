"""The shared LLM rate limiter and answer cache: the in-memory versions and the Redis ones (a
real redis-server) behave alike; LLMClient waits for room or raises the retryable error,
never limits the offline model, and reuses a validated answer as a recorded cache hit."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from pipeline import offline_model
from pipeline.errors import ConfigError, LLMRateLimitedError
from pipeline.llm import CACHE_HIT, LLMClient
from pipeline.llm_limits import (
    Limit,
    MemoryLLMCache,
    MemoryRateLimiter,
    WindowLimiter,
    blank_nonces,
    parse_rate_limits,
)
from pipeline.prompting import new_nonce, wrap_data
from pipeline.stage_a import FactsAnswer
from services.llm_limits import RedisLLMCache, RedisRateLimiter, worker_llm_factory
from tests.support.builders import make_article_evidence
from tests.support.llm import PRIMARY, json_answer, llm_settings, stage_a_messages


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request, redis_server) -> Iterator:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()

    def make(limits: dict[str, Limit], max_wait: float = 0.0) -> WindowLimiter:
        if request.param == "memory":
            return MemoryRateLimiter(limits, max_wait=max_wait)
        return RedisRateLimiter(client, limits, max_wait=max_wait)

    yield make
    client.close()


def test_limits_parse_from_the_setting():
    assert parse_rate_limits("openai/gpt-4o-mini=500rpm,200000tpm; anthropic=50rpm") == {
        "openai/gpt-4o-mini": Limit(500, 200000),
        "anthropic": Limit(50, 0),
    }
    assert parse_rate_limits("") == {}
    with pytest.raises(ConfigError):
        parse_rate_limits("openai/gpt-4o-mini=500 per minute")


def test_requests_beyond_the_limit_raise_the_retryable_error(make_limiter):
    limiter = make_limiter({"openai/gpt-4o-mini": Limit(rpm=3)})
    assert all(limiter.acquire("openai/gpt-4o-mini", 10) for _ in range(3))
    with pytest.raises(LLMRateLimitedError) as caught:
        limiter.acquire("openai/gpt-4o-mini", 10)
    assert 0 < caught.value.retry_after <= 60
    assert limiter.acquire("openai/other", 10) is None  # no limit for it


def test_tokens_are_corrected_after_the_call(make_limiter):
    limiter = make_limiter({"openai": Limit(tpm=1000)})
    first = limiter.acquire("openai/a", 600)
    with pytest.raises(LLMRateLimitedError):
        limiter.acquire("openai/b", 600)  # the provider's models share its limit
    limiter.settle(first, 200)  # the call used fewer tokens than estimated
    assert limiter.acquire("openai/b", 600)
    with pytest.raises(LLMRateLimitedError):
        limiter.acquire("openai/a", 300)


def test_concurrent_callers_never_get_more_than_the_limit(make_limiter):
    limiter = make_limiter({"m/x": Limit(rpm=10)})
    granted: list[bool] = []

    def hammer() -> None:
        for _ in range(10):
            try:
                granted.append(limiter.acquire("m/x", 1) is not None)
            except LLMRateLimitedError:
                granted.append(False)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert granted.count(True) == 10 and len(granted) == 40


def test_a_full_window_makes_the_call_wait_until_there_is_room():
    clock = FakeClock()
    limiter = MemoryRateLimiter(
        {"m/x": Limit(rpm=1)}, max_wait=90, window=60, sleep=clock.sleep, clock=clock
    )
    assert limiter.acquire("m/x", 1)
    clock.now += 15
    assert limiter.acquire("m/x", 1)  # waited for the first call to leave the window
    assert clock.slept and 45 <= sum(clock.slept) <= 45.2


def test_redis_down_lets_calls_through():
    down = redis.Redis(port=1, socket_connect_timeout=0.2)  # nothing listens on port 1
    limiter = RedisRateLimiter(down, {"m/x": Limit(rpm=1)}, max_wait=0)
    assert limiter.acquire("m/x", 1) and limiter.acquire("m/x", 1)
    cache = RedisLLMCache(down)
    cache.put("k", "v", 60)
    assert cache.get("k") is None


# --- through LLMClient ---------------------------------------------------------------------
MESSAGES_TEXT = "Facts about the thing."


def _messages() -> list[dict[str, str]]:
    nonce = new_nonce()
    return [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": wrap_data("EVIDENCE", f"[S1] {MESSAGES_TEXT}", nonce)},
    ]


FACTS = {"title": "T", "key_facts": [{"text": "A fact.", "snippet_ids": ["S1"]}]}


def test_the_client_waits_then_raises_and_makes_no_request(scripted):
    scripted.script(PRIMARY, json_answer(FACTS))
    limiter = MemoryRateLimiter({PRIMARY: Limit(rpm=1)}, max_wait=0)
    client = LLMClient(llm_settings(), limiter=limiter)
    client.complete_model("stage_a", _messages(), FactsAnswer)
    with pytest.raises(LLMRateLimitedError):
        client.complete_model("stage_a", _messages(), FactsAnswer)
    assert len(scripted.received) == 1


def test_the_offline_model_is_never_limited():
    limiter = MemoryRateLimiter({"offline": Limit(rpm=1)}, max_wait=0)
    client = LLMClient(llm_settings(llm_model=offline_model.MODEL), limiter=limiter)
    messages = stage_a_messages(make_article_evidence())
    for _ in range(3):
        client.complete_model("stage_a", messages, FactsAnswer)


@pytest.fixture(params=["memory", "redis"])
def cache(request, redis_client):
    return MemoryLLMCache() if request.param == "memory" else RedisLLMCache(redis_client)


def test_the_same_messages_reuse_the_answer_as_a_cache_hit(scripted, cache):
    scripted.script(PRIMARY, json_answer(FACTS))
    client = LLMClient(llm_settings(llm_cache_ttl_seconds=60), cache=cache)
    first, _ = client.complete_model("stage_a", _messages(), FactsAnswer)
    again, usage = client.complete_model("stage_a", _messages(), FactsAnswer)  # a new nonce
    assert again == first and len(scripted.received) == 1
    [call] = usage.calls
    assert (call.purpose, call.model, call.cost_usd, call.input_tokens) == (
        CACHE_HIT,
        PRIMARY,
        0,
        0,
    )
    assert usage.cost_usd == 0 and usage.model == PRIMARY


def test_other_messages_or_a_failing_check_miss(scripted, cache):
    scripted.script(PRIMARY, json_answer(FACTS), json_answer(FACTS), json_answer(FACTS))
    client = LLMClient(llm_settings(llm_cache_ttl_seconds=60), cache=cache)
    client.complete_model("stage_a", _messages(), FactsAnswer)
    other = [*_messages(), {"role": "user", "content": "and one more thing"}]
    client.complete_model("stage_a", other, FactsAnswer)
    assert len(scripted.received) == 2

    calls = []

    def check(answer: FactsAnswer) -> None:
        calls.append(answer)
        if len(calls) == 1:  # the kept answer no longer passes: ask the model
            raise ValueError("cites a snippet that is gone")

    _, usage = client.complete_model("stage_a", _messages(), FactsAnswer, check=check)
    assert len(scripted.received) == 3 and usage.calls[0].purpose == "answer"


def test_no_cache_without_a_ttl(scripted):
    scripted.script(PRIMARY, json_answer(FACTS), json_answer(FACTS))
    client = LLMClient(llm_settings(), cache=MemoryLLMCache())
    client.complete_model("stage_a", _messages(), FactsAnswer)
    client.complete_model("stage_a", _messages(), FactsAnswer)
    assert len(scripted.received) == 2


def test_nonces_are_blanked_in_the_key_material():
    a, b = _messages(), _messages()
    assert a != b and blank_nonces(a) == blank_nonces(b)


def test_worker_factory_builds_the_client_from_settings(redis_server, redis_client, scripted):
    settings = llm_settings(
        redis_url=redis_server.url,
        llm_rate_limits=f"{PRIMARY}=1rpm",
        llm_rate_limit_max_wait_seconds=0,
        llm_cache_ttl_seconds=60,
    )
    client = worker_llm_factory(settings)
    assert isinstance(client.limiter, RedisRateLimiter)
    assert isinstance(client.cache, RedisLLMCache)
    scripted.script(PRIMARY, json_answer(FACTS))
    client.complete_model("stage_a", _messages(), FactsAnswer)
    client.complete_model("stage_a", _messages(), FactsAnswer)  # the cache: no request
    assert len(scripted.received) == 1
    with pytest.raises(LLMRateLimitedError):  # another worker, same Redis, a new question
        worker_llm_factory(settings).complete_model(
            "stage_a", [*_messages(), {"role": "user", "content": "new"}], FactsAnswer
        )
    bare = worker_llm_factory(llm_settings(redis_url=redis_server.url))
    assert bare.limiter is None and bare.cache is None
