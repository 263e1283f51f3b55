"""The team's history in Redis: answered links ("Shared before", the weekly digest), which jobs
replied in which thread, and what each of them read (follow-up questions).

    ts:history:<channel>          sorted set: job id -> posted at (unix s), newest kept
    ts:history:entry:<job>        zlib JSON ``HistoryEntry``       TTL HISTORY_TTL_DAYS
    ts:thread:<channel>:<ts>      set of the job ids that replied in the thread
    ts:archive:<job>              zlib JSON ``ArchivedJob``        TTL FOLLOWUP_WINDOW_DAYS

Written once per posted job by ``slack_post`` (``remember``), in one pipelined round trip; an
entry whose job is reprocessed is replaced, not doubled (the job id is the member). Reading
"Shared before" costs one ZREVRANGE and one MGET of at most ``HISTORY_MAX_ENTRIES`` entries.
Imports only redis and the pipeline models: the ingest process uses the thread index.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pipeline.constants import HISTORY_ENTRY_KEY, HISTORY_KEY, JOB_ARCHIVE_KEY, THREAD_JOBS_KEY
from pipeline.followup import ArchivedJob
from pipeline.history import HistoryEntry, entry_for, related, title_of
from pipeline.models import (
    Evidence,
    Facts,
    Job,
    JobCarry,
    Outcome,
    SharedBefore,
    StageUsage,
)
from pipeline.ranking import TermWeights, Vocabulary
from pipeline.settings import Settings
from pipeline.text import content_tokens

log = logging.getLogger(__name__)

Permalink = Callable[[str, str], str | None]  # (channel, ts) -> the message's permalink
DAY = 24 * 3600
# A process's vocabulary grows with every entry it weighs; past this many terms (tens of MB of
# dict) it starts afresh with the entries it needs now.
VOCABULARY_LIMIT = 400_000


def archive_of(job: Job, evidence: Evidence, facts: Facts, title: str) -> ArchivedJob:
    """What a follow-up is answered from: the snippets read (Stage A's fetches included) and
    the facts, without the accounting."""
    slim = facts.model_copy(update={"fetched_snippets": [], "usage": StageUsage()})
    snippets = [*evidence.snippets, *facts.fetched_snippets]
    return ArchivedJob(job=job, title=title, snippets=snippets, facts=slim)


def dump_entry(entry: HistoryEntry) -> bytes:
    """An entry as stored: compressed (2.4-2.8 KB of JSON, mostly its text, become ~1.2 KB;
    it is kept HISTORY_TTL_DAYS, the longest-lived thing a job leaves)."""
    return zlib.compress(entry.model_dump_json().encode(), 6)


def load_entry(data: bytes | str) -> HistoryEntry:
    """An entry as stored; plain JSON too (entries written before they were compressed).
    ``ValueError`` when it is neither."""
    raw = data.encode() if isinstance(data, str) else data
    if not raw.lstrip().startswith(b"{"):
        try:
            raw = zlib.decompress(raw)
        except zlib.error as exc:
            raise ValueError(f"history entry is neither JSON nor zlib: {exc}") from None
    return HistoryEntry.model_validate_json(raw)


def dump_archive(archive: ArchivedJob) -> bytes:
    return zlib.compress(archive.model_dump_json().encode(), 6)


def load_archive(data: bytes) -> ArchivedJob:
    return ArchivedJob.model_validate_json(zlib.decompress(data))


class RedisHistory:
    """The ``pipeline.deps.History`` of the workers, plus the reads of ingest, follow-ups and
    the digest. ``permalink`` turns the reply's ts into the link "Shared before" shows."""

    def __init__(self, client: Any, settings: Settings, permalink: Permalink | None = None):
        self.r = client  # a bytes client: archives are compressed (decode_responses=False)
        self.settings = settings
        self.permalink = permalink
        # job id -> (entry, its weighed terms): entries never change once written (a
        # reprocess rewrites one: its shared_at moves, so the key is the id and that time),
        # so each is read from Redis and weighed once per process, not once per job
        self._parsed: OrderedDict[tuple[str, float], tuple[HistoryEntry, TermWeights]] = (
            OrderedDict()
        )
        self._vocabulary = Vocabulary()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, permalink: Permalink | None = None) -> RedisHistory:
        import redis

        return cls(redis.Redis.from_url(settings.redis_url), settings, permalink)

    @property
    def enabled(self) -> bool:
        return self.settings.history_ttl_days > 0

    # --- History protocol --------------------------------------------------------------------
    def related(self, carry: JobCarry) -> list[SharedBefore]:
        if not self.enabled or carry.evidence is None or carry.facts is None:
            return []
        parsed, vocabulary = self._weighed_entries(carry.job.channel_id)
        entries, weights = [e for e, _ in parsed], [w for _, w in parsed]
        return related(carry.job, carry.evidence, carry.facts, carry.commentary, entries,
                       weights=weights, vocabulary=vocabulary)  # fmt: skip

    def _weighed_entries(
        self, channel: str
    ) -> tuple[list[tuple[HistoryEntry, TermWeights]], Vocabulary]:
        """The channel's newest entries with their weighed terms (and the vocabulary they were
        weighed with); only entries this process has not seen are fetched (one ZREVRANGE, an
        MGET of the new ones)."""
        index = HISTORY_KEY.format(channel_id=channel)
        scored = self.r.zrevrangebyscore(
            index, "+inf", "-inf", start=0, num=self.settings.history_max_entries, withscores=True
        )
        keys = [(_text(member), float(score)) for member, score in scored]
        with self._lock:
            missing = [k for k in keys if k not in self._parsed]
        if missing:
            fresh = self._fetch(missing)
            with self._lock:
                if len(self._vocabulary) > VOCABULARY_LIMIT:  # terms of long-evicted entries
                    self._vocabulary, self._parsed = Vocabulary(), OrderedDict()
                    fresh.update(self._fetch([k for k in keys if k not in fresh]))
                for key, entry in fresh.items():
                    self._parsed[key] = (entry, self._vocabulary.weigh(content_tokens(entry.text)))
                while len(self._parsed) > 4 * max(1, self.settings.history_max_entries):
                    self._parsed.popitem(last=False)
        with self._lock:
            return [self._parsed[k] for k in keys if k in self._parsed], self._vocabulary

    def _fetch(self, keys: list[tuple[str, float]]) -> dict[tuple[str, float], HistoryEntry]:
        """The entries of ``keys`` ((job id, score) pairs) from Redis in one MGET, in their
        order; expired ones (the index is pruned lazily) and unreadable ones left out."""
        if not keys:
            return {}
        raws = self.r.mget([HISTORY_ENTRY_KEY.format(job_id=j) for j, _ in keys])
        out = {}
        for key, raw in zip(keys, raws, strict=True):
            if raw:
                try:
                    out[key] = load_entry(raw)
                except ValueError:
                    log.warning("unreadable history entry skipped")
        return out

    def remember(self, carry: JobCarry, reply_ts: str) -> None:
        """Keep a posted job: its thread and archive for follow-ups, and, when its commentary
        was posted, its history entry. A job with no evidence (a failure note) is not kept."""
        job, review = carry.job, carry.review
        if not self.enabled or carry.evidence is None or carry.facts is None or review is None:
            return
        title = title_of(job, carry.evidence, carry.facts)
        archive = archive_of(job, carry.evidence, carry.facts, title)
        posted = review.message.outcome == Outcome.success
        entry = None
        if posted:
            link = self._permalink(job.channel_id, reply_ts or job.reply_thread_ts)
            entry = entry_for(job, carry.evidence, carry.facts, review.commentary, link)
        self.store(archive, entry)

    # --- writes ------------------------------------------------------------------------------
    def store(self, archive: ArchivedJob, entry: HistoryEntry | None) -> None:
        job, s = archive.job, self.settings
        window = max(1, s.followup_window_days) * DAY
        thread = THREAD_JOBS_KEY.format(channel_id=job.channel_id, thread_ts=job.reply_thread_ts)
        pipe = self.r.pipeline(transaction=False)
        if job.reply_thread_ts:
            pipe.sadd(thread, job.job_id)
            pipe.expire(thread, window)
        pipe.set(JOB_ARCHIVE_KEY.format(job_id=job.job_id), dump_archive(archive), ex=window)
        if entry is not None:
            ttl = s.history_ttl_days * DAY
            index = HISTORY_KEY.format(channel_id=entry.channel_id)
            pipe.set(HISTORY_ENTRY_KEY.format(job_id=entry.job_id), dump_entry(entry), ex=ttl)
            pipe.zadd(index, {entry.job_id: entry.shared_at.timestamp()})
            pipe.zremrangebyscore(index, "-inf", time.time() - ttl)
            pipe.zremrangebyrank(index, 0, -s.history_max_entries - 1)
            pipe.expire(index, ttl)
        pipe.execute()

    def _permalink(self, channel: str, ts: str) -> str | None:
        if self.permalink is None or not ts:
            return None
        try:
            return self.permalink(channel, ts)
        except Exception as exc:  # noqa: BLE001 - the entry is still worth keeping without it
            log.warning("no permalink for %s/%s: %s", channel, ts, exc)
            return None

    # --- reads -------------------------------------------------------------------------------
    def entries(self, channel: str, since: datetime | None = None) -> list[HistoryEntry]:
        """The channel's entries, newest first (since ``since`` when given)."""
        index = HISTORY_KEY.format(channel_id=channel)
        low = since.timestamp() if since else "-inf"
        ids = self.r.zrevrangebyscore(
            index, "+inf", low, start=0, num=self.settings.history_max_entries
        )
        if not ids:
            return []
        return list(self._fetch([(_text(i), 0.0) for i in ids]).values())  # newest first

    def thread_jobs(self, channel: str, thread_ts: str) -> list[str]:
        """The jobs that replied in this thread (oldest first by id), [] when none."""
        key = THREAD_JOBS_KEY.format(channel_id=channel, thread_ts=thread_ts)
        return sorted(_text(m) for m in self.r.smembers(key))

    def archives(self, job_ids: list[str]) -> list[ArchivedJob]:
        if not job_ids:
            return []
        raws = self.r.mget([JOB_ARCHIVE_KEY.format(job_id=j) for j in job_ids])
        return [load_archive(raw) for raw in raws if raw]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def since_days(days: float, now: datetime | None = None) -> datetime:
    return datetime.fromtimestamp((now or datetime.now(UTC)).timestamp() - days * DAY, tz=UTC)
