"""The evidence cache on a real redis-server: a second job of the same link reuses the first
one's reading (no fetch, marked cache_hit), a reprocess reads afresh, an unreadable link is not
cached, and an unreachable Redis is a miss, never a failed job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pipeline.errors import SourceUnavailableError
from pipeline.fetch import SafeFetcher
from pipeline.models import Job, JobCarry
from pipeline.settings import Settings
from pipeline.stages import STAGE_BY_NAME, advance
from services.evidence_cache import RedisEvidenceCache
from services.recorded_web import RecordedWeb
from services.wiring import build_deps

WEB = RecordedWeb()
REPO = "https://github.com/encode/httpx"


class CountingFetcher:
    def __init__(self, inner: SafeFetcher) -> None:
        self.inner, self.urls = inner, []

    def get(self, url: str, **kwargs):
        self.urls.append(url)
        return self.inner.get(url, **kwargs)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(name="raw")
def raw_fixture(redis_server, redis_client) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def fetch(url: str, deps, *, refresh: bool = False, job_id: str = "j1"):
    job = Job(job_id=job_id, url=url, canonical_url=url)
    return advance(
        STAGE_BY_NAME["fetch_evidence"], JobCarry(job=job, refresh=refresh), deps
    ).evidence


def deps_with(cache: RedisEvidenceCache) -> tuple[object, CountingFetcher]:
    settings = Settings(mlflow_enable_tracking=False)
    fetcher = CountingFetcher(SafeFetcher(settings, transport=WEB.transport, resolver=WEB.resolver))
    return build_deps(settings, fetcher=fetcher, evidence_cache=cache), fetcher  # type: ignore[arg-type]


def test_second_job_of_a_link_reuses_the_evidence_and_a_reprocess_reads_again(raw):
    deps, fetcher = deps_with(RedisEvidenceCache(raw, 3600))
    first = fetch(REPO, deps)
    reads = len(fetcher.urls)
    assert reads >= 1 and not first.cache_hit
    second = fetch(REPO, deps, job_id="j2")
    assert len(fetcher.urls) == reads and second.cache_hit
    assert second.model_copy(update={"cache_hit": False}) == first
    assert 3500 < raw.ttl(RedisEvidenceCache.key(REPO)) <= 3600
    again = fetch(REPO, deps, refresh=True, job_id="j3")
    assert len(fetcher.urls) == 2 * reads and not again.cache_hit


def test_unreadable_links_are_not_cached(raw):
    deps, _ = deps_with(RedisEvidenceCache(raw, 3600))
    missing = "https://github.com/nobody/not-recorded-here"
    with pytest.raises(SourceUnavailableError):
        fetch(missing, deps)
    assert raw.get(RedisEvidenceCache.key(missing)) is None


def test_no_redis_or_no_ttl_means_reading_the_link():
    nothing_listens = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    dead = RedisEvidenceCache(nothing_listens, 3600)
    deps, fetcher = deps_with(dead)
    assert not fetch(REPO, deps).cache_hit and fetch(REPO, deps).cache_hit is False
    off = RedisEvidenceCache(None, 0)
    assert off.get(REPO) is None and off.put(fetch(REPO, deps)) is None
