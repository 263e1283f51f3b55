"""Job records and the dedupe/idempotency keys, in Redis.

A job record is one Redis hash (``JOB_KEY``). Fields:

    job            the ``Job`` model as JSON (what reprocessing reuses)
    status         queued -> running -> posted | gate_failed | failed | duplicate
    attempt        processing attempt; 1 for the first run, +1 per reprocess
    created_at / updated_at   ISO 8601, UTC
    parent_run_id  MLflow parent run of the current attempt;  headers: its propagated headers
    reprocess_of   parent run id of the attempt this one re-runs
    reply_ts       ts of the latest reply posted;  reply_ts:<attempt>: the reply of that attempt
    post_started:<attempt>  when the first Slack call began (then a retry looks before posting)
    last_error     one-line reason of the last failure;  user_error: its safe-to-show sentence
    duplicate_of   the earlier job answered for the same link in the channel
    start:<task>   the attempt a start/reprocess task message began (redelivery-safe)

What each stage's task saw (``JOB_SEEN_KEY``, a hash of its own, stage -> JSON {"attempt",
"task_id", "task", "retries", "headers"}) is kept a day: read with ``get(..., with_seen=True)``.

Everything here is synchronous redis-py and imports neither mlflow nor litellm (ingest uses it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis

from pipeline.constants import (
    ALERT_SENT_KEY,
    ALERT_SENT_TTL_SECONDS,
    CHANNEL_URL_KEY,
    EVENT_SEEN_KEY,
    EVENT_SEEN_TTL_SECONDS,
    JOB_KEY,
    JOB_SEEN_KEY,
    JOB_SEEN_TTL_SECONDS,
    JOB_TTL_SECONDS,
    LINK_CLAIM_KEY,
    LINK_CLAIM_TTL_SECONDS,
    MESSAGE_LINK_SEEN_KEY,
    MESSAGE_LINK_SEEN_TTL_SECONDS,
    POST_LOCK_KEY,
    POST_LOCK_TTL_SECONDS,
)
from pipeline.errors import JobNotFoundError
from pipeline.models import Job
from pipeline.settings import Settings


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    posted = "posted"
    gate_failed = "gate_failed"
    failed = "failed"
    duplicate = "duplicate"


FINAL_STATUSES = frozenset(
    {JobStatus.posted, JobStatus.gate_failed, JobStatus.failed, JobStatus.duplicate}
)


# A new record in one step: the fields and the TTL only when the id was not there before.
_CREATE = (
    "if redis.call('hsetnx', KEYS[1], 'job', ARGV[1]) == 0 then return 0 end "
    "redis.call('hset', KEYS[1], 'status', ARGV[2], 'attempt', 0, 'created_at', ARGV[3], "
    "'updated_at', ARGV[3]) redis.call('expire', KEYS[1], ARGV[4]) return 1"
)
_HSET_IF_EXISTS = (
    "if redis.call('exists', KEYS[1]) == 1 then return redis.call('hset', KEYS[1], unpack(ARGV)) end "
    "return 0"
)


def url_hash(canonical_url: str) -> str:
    return hashlib.sha256(canonical_url.encode()).hexdigest()[:24]


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class JobRecord:
    job: Job
    status: JobStatus
    attempt: int = 0
    created_at: str = ""
    updated_at: str = ""
    parent_run_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reprocess_of: str | None = None
    reply_ts: str | None = None
    replies: dict[int, str] = field(default_factory=dict)  # attempt -> reply ts
    last_error: str | None = None
    user_error: str | None = None  # the safe-to-show sentence of the last error
    duplicate_of: str | None = None
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> what it saw

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @classmethod
    def from_hash(
        cls, data: Mapping[str, str], seen_data: Mapping[str, str] | None = None
    ) -> JobRecord:
        replies = {int(k.split(":", 1)[1]): v for k, v in data.items() if k.startswith("reply_ts:")}
        seen = {stage: json.loads(v) for stage, v in (seen_data or {}).items()}
        return cls(
            job=Job.model_validate_json(data["job"]),
            status=JobStatus(data.get("status", JobStatus.queued)),
            attempt=int(data.get("attempt", 0)),
            created_at=data.get("created_at", ""),
            updated_at=data.get("updated_at", ""),
            parent_run_id=data.get("parent_run_id") or None,
            headers=json.loads(data.get("headers") or "{}"),
            reprocess_of=data.get("reprocess_of") or None,
            reply_ts=data.get("reply_ts") or None,
            replies=replies,
            last_error=data.get("last_error") or None,
            user_error=data.get("user_error") or None,
            duplicate_of=data.get("duplicate_of") or None,
            seen=seen,
        )


class JobStore:
    def __init__(self, client: redis.Redis) -> None:
        self.r: Any = client  # decode_responses=True: every value read is a str
        # EVALSHA (EVAL once after a NOSCRIPT): the script's text is not resent on every call
        self._create = client.register_script(_CREATE)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        return cls(redis.Redis.from_url(settings.redis_url, decode_responses=True))

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        return cls(redis.Redis.from_url(url, decode_responses=True))

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False

    # --- records ----------------------------------------------------------------------------
    @staticmethod
    def _key(job_id: str) -> str:
        return JOB_KEY.format(job_id=job_id)

    def create(self, job: Job) -> bool:
        """Store a new queued job; False (and nothing written) when the id already exists.

        One round trip (a script: the record only when the id is new, with its TTL): the ingest
        calls this on the ack path, where three calls in sequence were a third of its Redis time.
        """
        now = _now()
        created = self._create(
            keys=[self._key(job.job_id)],
            args=[job.model_dump_json(), JobStatus.queued.value, now, JOB_TTL_SECONDS],
        )
        return bool(created)

    def delete(self, job_id: str) -> None:
        self.r.delete(self._key(job_id))

    def get(self, job_id: str, *, with_seen: bool = False) -> JobRecord | None:
        """The record; ``with_seen``: with what each stage's task saw (one more HGETALL in the
        same round trip)."""
        if with_seen:
            pipe = self.r.pipeline(transaction=False)
            pipe.hgetall(self._key(job_id))
            pipe.hgetall(JOB_SEEN_KEY.format(job_id=job_id))
            data, seen = pipe.execute()
        else:
            data, seen = self.r.hgetall(self._key(job_id)), None
        return JobRecord.from_hash(data, seen) if data and "job" in data else None

    def require(self, job_id: str, *, with_seen: bool = False) -> JobRecord:
        record = self.get(job_id, with_seen=with_seen)
        if record is None:
            raise JobNotFoundError(f"no job {job_id!r} in the job store (expired or never seen)")
        return record

    def _update(self, job_id: str, **fields: Any) -> None:
        """Update fields of an existing record; never creates a half record for an unknown id."""
        mapping = {k: ("" if v is None else str(v)) for k, v in fields.items()}
        mapping["updated_at"] = _now()
        args = [x for pair in mapping.items() for x in pair]
        self.r.eval(_HSET_IF_EXISTS, 1, self._key(job_id), *args)

    def set_status(self, job_id: str, status: JobStatus, *, error: str | None = None) -> None:
        fields: dict[str, Any] = {"status": status}
        if error is not None:
            fields["last_error"] = error[:500]
        self._update(job_id, **fields)

    def record_error(self, job_id: str, error: str, user_message: str | None = None) -> None:
        """``error`` is the one-line reason for operators; ``user_message`` may go to Slack."""
        fields = {"last_error": error[:500]}
        if user_message:
            fields["user_error"] = user_message[:300]
        self._update(job_id, **fields)

    def mark_duplicate(self, job_id: str, earlier_job_id: str) -> None:
        self._update(job_id, status=JobStatus.duplicate, duplicate_of=earlier_job_id)

    # --- attempts ---------------------------------------------------------------------------
    def begin_attempt(self, job_id: str, start_task_id: str) -> tuple[int, bool]:
        """The attempt number this start message owns, and whether it is new.

        A redelivered start message (same task id) gets its earlier attempt back instead of a
        new one, so it cannot make a job post twice.
        """
        key = self._key(job_id)
        marker = f"start:{start_task_id}"
        existing = self.r.hget(key, marker)
        if existing:
            return int(existing), False
        attempt = int(self.r.hincrby(key, "attempt", 1))
        self.r.hset(key, marker, attempt)
        self._update(job_id, status=JobStatus.running, last_error=None, user_error=None)
        return attempt, True

    def set_run(
        self, job_id: str, headers: Mapping[str, str], parent_run_id: str | None, reprocess_of=None
    ) -> None:
        fields: dict[str, Any] = {
            "headers": json.dumps(dict(headers)),
            "parent_run_id": parent_run_id,
        }
        if reprocess_of is not None:
            fields["reprocess_of"] = reprocess_of
        self._update(job_id, **fields)

    def record_seen(
        self,
        job_id: str,
        stage: str,
        headers: Mapping[str, str],
        *,
        attempt: int,
        task_id: str,
        retries: int = 0,
        task_name: str = "",
    ) -> None:
        """What one stage task saw (headers included): the e2e tests assert on these."""
        seen = {
            "attempt": attempt,
            "task_id": task_id,
            "task": task_name,
            "retries": retries,
            "headers": dict(headers),
        }
        key = JOB_SEEN_KEY.format(job_id=job_id)
        pipe = self.r.pipeline(transaction=False)  # one round trip
        pipe.hset(key, stage, json.dumps(seen))
        pipe.expire(key, JOB_SEEN_TTL_SECONDS)
        pipe.execute()

    # --- posting ----------------------------------------------------------------------------
    def reply_for(self, job_id: str, attempt: int) -> str | None:
        return self.r.hget(self._key(job_id), f"reply_ts:{attempt}") or None

    def record_reply(self, job_id: str, attempt: int, ts: str) -> None:
        self._update(job_id, **{f"reply_ts:{attempt}": ts, "reply_ts": ts})

    def mark_post_started(self, job_id: str, attempt: int) -> None:
        """Note when the first post of this attempt began; a later call keeps that time."""
        if self.r.exists(self._key(job_id)):
            self.r.hsetnx(self._key(job_id), f"post_started:{attempt}", _now())

    def post_started_at(self, job_id: str, attempt: int) -> float | None:
        """Unix time the first post of this attempt began, None when none began."""
        value = self.r.hget(self._key(job_id), f"post_started:{attempt}")
        return datetime.fromisoformat(value).timestamp() if value else None

    def post_started(self, job_id: str, attempt: int) -> bool:
        return self.post_started_at(job_id, attempt) is not None

    def acquire_post_lock(self, job_id: str, attempt: int, owner: str) -> bool:
        key = POST_LOCK_KEY.format(job_id=f"{job_id}:{attempt}")
        return bool(self.r.set(key, owner, nx=True, ex=POST_LOCK_TTL_SECONDS))

    def release_post_lock(self, job_id: str, attempt: int, owner: str) -> None:
        key = POST_LOCK_KEY.format(job_id=f"{job_id}:{attempt}")
        # Delete only our own lock: compare-and-delete in one step.
        self.r.eval(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
            "return 0",
            1,
            key,
            owner,
        )

    # --- repeat links -----------------------------------------------------------------------
    def remember_answer(self, channel_id: str, canonical_url: str, job_id: str, days: int) -> None:
        """The answer memory replaces this job's claim on the link (see :meth:`claim_link`)."""
        if days > 0:
            key = CHANNEL_URL_KEY.format(channel_id=channel_id, url_hash=url_hash(canonical_url))
            self.r.set(key, job_id, ex=days * 24 * 3600)
        self.release_link(channel_id, canonical_url, job_id)

    def earlier_answer(self, channel_id: str, canonical_url: str) -> str | None:
        key = CHANNEL_URL_KEY.format(channel_id=channel_id, url_hash=url_hash(canonical_url))
        return self.r.get(key) or None

    @staticmethod
    def _link_claim_key(channel_id: str, canonical_url: str) -> str:
        return LINK_CLAIM_KEY.format(channel_id=channel_id, url_hash=url_hash(canonical_url))

    def claim_link(self, channel_id: str, canonical_url: str, job_id: str) -> str:
        """Claim the link in the channel for ``job_id`` (SET NX with a short TTL, and the holder
        read in the same step); returns the holder: ``job_id`` when claimed now or before."""
        return str(
            self.r.eval(
                "if redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return ARGV[1] "
                "end return redis.call('get', KEYS[1])",
                1,
                self._link_claim_key(channel_id, canonical_url),
                job_id,
                LINK_CLAIM_TTL_SECONDS,
            )
        )

    def take_over_link(self, channel_id: str, canonical_url: str, stale: str, job_id: str) -> bool:
        """Replace the claim of ``stale`` (a holder that ended unanswered) by ``job_id``, in one
        step; False when someone else changed the claim first."""
        return bool(
            self.r.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then "
                "redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end return 0",
                1,
                self._link_claim_key(channel_id, canonical_url),
                stale,
                job_id,
                LINK_CLAIM_TTL_SECONDS,
            )
        )

    def release_link(self, channel_id: str, canonical_url: str, job_id: str) -> None:
        """Drop ``job_id``'s claim on the link (another job's claim is left alone)."""
        self.r.eval(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
            "return 0",
            1,
            self._link_claim_key(channel_id, canonical_url),
            job_id,
        )

    # --- alerts -----------------------------------------------------------------------------
    def claim_alert(self, name: str) -> bool:
        """True the first time the alert ``name`` is claimed today (UTC): send it once."""
        key = ALERT_SENT_KEY.format(name=name, day=datetime.now(UTC).date().isoformat())
        return bool(self.r.set(key, "1", nx=True, ex=ALERT_SENT_TTL_SECONDS))

    # --- ingest dedupe ----------------------------------------------------------------------
    def claim_event(self, event_id: str) -> bool:
        """True the first time an event id is seen (Slack retries and duplicate deliveries)."""
        key = EVENT_SEEN_KEY.format(event_id=event_id)
        return bool(self.r.set(key, "1", nx=True, ex=EVENT_SEEN_TTL_SECONDS))

    def release_event(self, event_id: str) -> None:
        """Forget an event whose handling failed, so Slack's retry is processed."""
        self.r.delete(EVENT_SEEN_KEY.format(event_id=event_id))

    @staticmethod
    def _message_link_key(channel_id: str, message_ts: str, canonical_url: str) -> str:
        return MESSAGE_LINK_SEEN_KEY.format(
            channel_id=channel_id, message_ts=message_ts, url_hash=url_hash(canonical_url)
        )

    def claim_message_link(self, channel_id: str, message_ts: str, canonical_url: str) -> bool:
        key = self._message_link_key(channel_id, message_ts, canonical_url)
        return bool(self.r.set(key, "1", nx=True, ex=MESSAGE_LINK_SEEN_TTL_SECONDS))

    def release_message_link(self, channel_id: str, message_ts: str, canonical_url: str) -> None:
        self.r.delete(self._message_link_key(channel_id, message_ts, canonical_url))
