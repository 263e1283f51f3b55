"""The evidence cache in Redis: a link read by one job is reused by another job of the same
canonical URL within ``EVIDENCE_CACHE_TTL_SECONDS`` (the same paper shared in two channels, a
burst of the same link), so the source is fetched once.

    ts:evidence:<url hash>   zlib-compressed ``Evidence`` JSON   TTL EVIDENCE_CACHE_TTL_SECONDS

A hit is marked on the evidence (``cache_hit``), which its stage run and artifact show. A Redis
error while reading is a miss (the link is read instead); while writing, it is logged: the cache
never fails a job.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

import redis

from pipeline.constants import EVIDENCE_CACHE_KEY
from pipeline.models import Evidence
from services.job_store import url_hash

log = logging.getLogger(__name__)


class RedisEvidenceCache:
    def __init__(self, client: Any, ttl_seconds: int) -> None:
        self.r = client  # bytes in and out (decode_responses=False)
        self.ttl = ttl_seconds

    @classmethod
    def from_url(cls, url: str, ttl_seconds: int) -> RedisEvidenceCache:
        return cls(redis.Redis.from_url(url), ttl_seconds)

    @staticmethod
    def key(canonical_url: str) -> str:
        return EVIDENCE_CACHE_KEY.format(url_hash=url_hash(canonical_url))

    def get(self, canonical_url: str) -> Evidence | None:
        if self.ttl <= 0:
            return None
        try:
            raw = self.r.get(self.key(canonical_url))
            return Evidence.model_validate_json(zlib.decompress(raw)) if raw else None
        except (redis.RedisError, zlib.error, ValueError) as exc:
            log.warning(
                "evidence cache unreadable for %s (reading the link): %s", canonical_url, exc
            )
            return None

    def put(self, evidence: Evidence) -> None:
        if self.ttl <= 0:
            return
        data = zlib.compress(evidence.model_dump_json().encode(), 6)
        try:
            self.r.set(self.key(evidence.canonical_url), data, ex=self.ttl)
        except redis.RedisError as exc:
            log.warning("evidence of %s not cached: %s", evidence.canonical_url, exc)
