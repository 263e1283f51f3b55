"""The history in a real redis-server: one pipelined write per posted job, entries newest first
and pruned to HISTORY_MAX_ENTRIES, TTLs from the settings, archives round-trip compressed, and
the digest groups a channel's week by theme."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from pipeline.constants import HISTORY_ENTRY_KEY, HISTORY_KEY, JOB_ARCHIVE_KEY, THREAD_JOBS_KEY
from pipeline.followup import ArchivedJob
from pipeline.history import HistoryEntry
from pipeline.models import Snippet, utcnow
from pipeline.settings import Settings
from services.digest import digest_message, grouped
from services.history_store import RedisHistory, archive_of
from tests.support.builders import make_evidence, make_facts, make_job


def entry(job_id: str, days_ago: float, themes: list[str], channel: str = "C1") -> HistoryEntry:
    return HistoryEntry(
        job_id=job_id, channel_id=channel, url=f"https://example.com/{job_id}",
        canonical_url=f"https://example.com/{job_id}", title=f"Title {job_id}",
        permalink=f"https://slack.test/archives/{channel}/p{job_id}", themes=themes,
        tldr=f"What {job_id} does.", shared_at=utcnow() - timedelta(days=days_ago),
    )  # fmt: skip


@pytest.fixture(name="raw")
def raw_fixture(redis_server, redis_client) -> Iterator[redis.Redis]:
    """Bytes in and out, as the workers' history client (archives are compressed)."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def test_store_keeps_entries_newest_first_with_ttls_and_prunes(raw, redis_client):
    settings = Settings(history_ttl_days=180, history_max_entries=3, followup_window_days=30)
    history = RedisHistory(raw, settings)
    job = make_job(channel_id="C1", message_ts="100.1")
    for i, age in enumerate([10, 5, 1, 0.5]):
        archive = ArchivedJob(job=job.model_copy(update={"job_id": f"j{i}"}), title="t")
        history.store(archive, entry(f"j{i}", age, ["Evals"]))
    assert [e.job_id for e in history.entries("C1")] == ["j3", "j2", "j1"]  # j0 pruned
    assert [e.job_id for e in history.entries("C1", since=utcnow() - timedelta(days=2))] == ["j3", "j2"]  # fmt: skip
    assert 179 * 86400 < redis_client.ttl(HISTORY_ENTRY_KEY.format(job_id="j3")) <= 180 * 86400
    assert 29 * 86400 < redis_client.ttl(JOB_ARCHIVE_KEY.format(job_id="j3")) <= 30 * 86400
    assert redis_client.ttl(HISTORY_KEY.format(channel_id="C1")) > 0
    thread = THREAD_JOBS_KEY.format(channel_id="C1", thread_ts="100.1")
    assert redis_client.ttl(thread) > 0 and history.thread_jobs("C1", "100.1") == ["j0", "j1", "j2", "j3"]  # fmt: skip
    assert history.entries("C2") == []


def test_archive_round_trips_the_snippets_and_facts_the_job_read(raw):
    history = RedisHistory(raw, Settings())
    evidence = make_evidence()
    facts = make_facts(fetched_snippets=[Snippet(id="S9", text="Read through the tool.")])
    archive = archive_of(make_job(), evidence, facts, "Fast queues")
    history.store(archive, None)
    [back] = history.archives([archive.job.job_id, "missing"])
    assert back == archive and back.snippets[-1].id == "S9" and back.facts.usage.calls == []


def test_no_history_when_its_ttl_is_zero(raw):
    history = RedisHistory(raw, Settings(history_ttl_days=0))
    from pipeline.models import JobCarry

    carry = JobCarry(job=make_job(), evidence=make_evidence(), facts=make_facts())
    history.remember(carry, "1.2")
    assert history.related(carry) == [] and raw.dbsize() == 0


def test_digest_groups_by_the_context_themes_in_order_general_last():
    entries = [entry("a", 3, ["General"]), entry("b", 2, ["Evals"]), entry("c", 1, ["Retrieval", "Evals"])]  # fmt: skip
    assert [(t, [e.job_id for e in items]) for t, items in grouped(entries, ["Retrieval", "Evals"])] == [
        ("Retrieval", ["c"]), ("Evals", ["b"]), ("General", ["a"]),
    ]  # fmt: skip
    message = digest_message("C1", "COPS", entries, ["Retrieval", "Evals"], 7)
    assert message.channel == "COPS" and "3 links" in message.text
    assert "• <https://slack.test/archives/C1/pb|Title b> — What b does." in message.text


class CountingClient:
    """The real client, counting MGETs (what fetching entries costs)."""

    def __init__(self, inner: redis.Redis) -> None:
        self.inner, self.mgets = inner, []

    def mget(self, keys):
        self.mgets.append(len(keys))
        return self.inner.mget(keys)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_related_reads_each_entry_once_per_process(raw):
    from pipeline.models import JobCarry
    from tests.support.builders import make_commentary

    client = CountingClient(raw)
    history = RedisHistory(client, Settings(history_max_entries=50))
    for i in range(5):
        history.store(
            ArchivedJob(job=make_job(job_id=f"j{i}"), title="t"), entry(f"j{i}", i, ["Evals"])
        )
    carry = JobCarry(job=make_job(job_id="new", channel_id="C1"), evidence=make_evidence(),
                     facts=make_facts(), commentary=make_commentary())  # fmt: skip
    history.related(carry)
    history.related(carry)
    history.store(ArchivedJob(job=make_job(job_id="j9"), title="t"), entry("j9", 0, ["Evals"]))
    history.related(carry)
    assert client.mgets == [5, 1]  # the second call fetched nothing, the third only the new one


def test_entries_are_stored_compressed_and_plain_json_ones_still_read(raw):
    """The entry is what a job leaves longest (HISTORY_TTL_DAYS): compressed, it takes less
    than half; entries written as plain JSON by an earlier version are still read."""
    settings = Settings()
    history = RedisHistory(raw, settings)
    long = entry("new", 1, ["Evals"]).model_copy(update={"text": "Streaming logs to queues. " * 80})
    history.store(ArchivedJob(job=make_job(job_id="new"), title="t"), long)
    stored = raw.get(HISTORY_ENTRY_KEY.format(job_id="new"))
    assert len(stored) < len(long.model_dump_json()) / 2
    old = entry("old", 2, ["Evals"])
    raw.set(HISTORY_ENTRY_KEY.format(job_id="old"), old.model_dump_json())
    raw.zadd(HISTORY_KEY.format(channel_id="C1"), {"old": old.shared_at.timestamp()})
    raw.set(HISTORY_ENTRY_KEY.format(job_id="bad"), b"\x00garbage")
    raw.zadd(HISTORY_KEY.format(channel_id="C1"), {"bad": old.shared_at.timestamp() - 1})
    assert [(e.job_id, e.text) for e in history.entries("C1")] == [
        ("new", long.text), ("old", old.text),
    ]  # fmt: skip
