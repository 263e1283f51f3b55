"""The LLM rate limiter and answer cache shared by every worker, in Redis.

    RedisRateLimiter(redis, limits, max_wait)   pipeline.llm_limits.RateLimiter
    RedisLLMCache(redis)                         pipeline.llm_limits.LLMCache
    worker_llm_factory(settings) -> LLMClient    the client with both, from settings

The limiter keeps one sliding window per model or provider (``LLM_RATE_LIMITS``): a sorted set
of the calls let through in the last minute, one member ``<id>:<tokens>`` each, scored by
Redis's own clock (``TIME``), so workers on machines whose clocks differ share one window. One
Lua script prunes the window, decides and counts the call atomically, so N workers never let
more through than the limit together; when the call does not fit it returns the milliseconds
until it would, and the caller waits (bounded) and asks again. A second script corrects a
call's tokens once the provider has counted them.

Redis unreachable: the limiter lets the call through (a Redis outage must not stop every LLM
call; the provider's own 429s and the Router's retries still apply) and the cache misses; both
log a warning without the Redis URL (it may hold a password).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipeline.constants import LLM_CACHE_KEY, LLM_RATE_KEY
from pipeline.llm_limits import Grant, Limit, WindowLimiter, parse_rate_limits
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.llm import LLMClient

log = logging.getLogger(__name__)

# KEYS[1] window; ARGV: window ms, rpm (0: none), tpm (0: none), tokens, member.
# Returns 0 when counted, else the ms until the call would fit.
_ACQUIRE = """
local key = KEYS[1]
local window = tonumber(ARGV[1])
local rpm, tpm, tokens = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local n = #entries / 2
local wait = 0
if rpm > 0 and n >= rpm then
  wait = tonumber(entries[(n - rpm) * 2 + 2]) + window - now
end
if tpm > 0 then
  local used = 0
  for i = 1, #entries, 2 do
    used = used + tonumber(string.match(entries[i], ':(%d+)$'))
  end
  local i = 1
  while used + tokens > tpm and i <= #entries do
    used = used - tonumber(string.match(entries[i], ':(%d+)$'))
    wait = math.max(wait, tonumber(entries[i + 1]) + window - now)
    i = i + 2
  end
end
if wait > 0 then
  return wait
end
redis.call('ZADD', key, now, ARGV[5])
redis.call('PEXPIRE', key, window)
return 0
"""

# KEYS[1] window; ARGV: the member as counted, the member with the real tokens.
_RECOUNT = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[1], score, ARGV[2])
end
return 0
"""


class RedisRateLimiter(WindowLimiter):
    """Windows in Redis, shared by every process that uses the same Redis."""

    def __init__(self, redis: Any, limits: dict[str, Limit], **kwargs: Any) -> None:
        super().__init__(limits, **kwargs)
        self.redis = redis
        self._acquire = redis.register_script(_ACQUIRE)
        self._recount_script = redis.register_script(_RECOUNT)

    def _try(self, key: str, limit: Limit, tokens: int, member: str) -> float:
        try:
            wait_ms = self._acquire(
                keys=[LLM_RATE_KEY.format(limit_key=key)],
                args=[int(self.window * 1000), limit.rpm, limit.tpm, tokens, member],
            )
        except Exception as exc:  # redis.RedisError, or a connection refused
            log.warning("LLM rate limit of %s not applied: Redis unavailable (%s)", key, exc)
            return 0.0
        return int(wait_ms) / 1000

    def _recount(self, grant: Grant, tokens: int) -> None:
        real = f"{grant.member.rsplit(':', 1)[0]}:{tokens}"
        try:
            self._recount_script(
                keys=[LLM_RATE_KEY.format(limit_key=grant.key)], args=[grant.member, real]
            )
        except Exception as exc:
            log.warning("LLM tokens of %s not corrected: Redis unavailable (%s)", grant.key, exc)


class RedisLLMCache:
    """Validated answers by cache key, each with its TTL."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    def get(self, key: str) -> str | None:
        try:
            value = self.redis.get(LLM_CACHE_KEY.format(key=key))
        except Exception as exc:
            log.warning("LLM cache not read: Redis unavailable (%s)", exc)
            return None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def put(self, key: str, value: str, ttl_seconds: int) -> None:
        try:
            self.redis.set(LLM_CACHE_KEY.format(key=key), value, ex=max(1, int(ttl_seconds)))
        except Exception as exc:
            log.warning("LLM answer not cached: Redis unavailable (%s)", exc)


def worker_llm_factory(settings: Settings) -> LLMClient:
    """``StageDeps.llm_factory`` of the workers: ``LLMClient`` with the shared limiter (when
    ``LLM_RATE_LIMITS`` is set) and the cache (when ``LLM_CACHE_TTL_SECONDS`` > 0). The offline
    model needs neither, and no Redis connection is made for it."""
    import redis

    from pipeline.llm import LLMClient

    limits = parse_rate_limits(settings.llm_rate_limits)
    wanted = bool(limits) or settings.llm_cache_ttl_seconds > 0
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2) if wanted else None
    limiter = (
        RedisRateLimiter(client, limits, max_wait=settings.llm_rate_limit_max_wait_seconds)
        if client is not None and limits
        else None
    )
    cache = (
        RedisLLMCache(client) if client is not None and settings.llm_cache_ttl_seconds > 0 else None
    )
    return LLMClient(settings, limiter=limiter, cache=cache)
