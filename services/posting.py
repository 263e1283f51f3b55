"""Posting exactly once per job attempt, and the status reactions.

Delivery is at least once (acks_late, redelivery after a lost worker, a chain duplicated by a
redelivered stage), so the post is guarded three ways: the reply ts recorded for the attempt (a
later copy returns it); a short Redis lock around the Slack call (a concurrent copy waits and
retries, then finds the recorded ts); and, once a post was started and no ts recorded, the post
is "maybe posted": the copy died after Slack accepted it, or its answer was lost (connection
dropped, timeout: the sink never re-sends a post itself). The next try first looks for a reply
carrying this job attempt's message metadata, in the thread or, for a channel-level reply
(slash command), in the channel's messages since the post started, before posting again.
"""

from __future__ import annotations

import logging
import os
import socket

from pipeline.constants import POST_LOCK_TTL_SECONDS
from pipeline.errors import RetryableError
from pipeline.models import Job, Outcome, SlackMessage
from services.job_store import JobStatus, JobStore
from services.slack_client import EYES, POSTED, WARNING, SlackSink

log = logging.getLogger(__name__)


class PostInProgress(RetryableError):
    """Another copy of this task holds the post lock: retry, then find its recorded reply."""

    user_message = "The reply is being posted."


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def post_once(
    store: JobStore, sink: SlackSink, job: Job, attempt: int, message: SlackMessage
) -> str:
    """Post ``message`` for this job attempt unless it was posted already; returns the reply ts."""
    done = store.reply_for(job.job_id, attempt)
    if done:
        return done
    owner = _owner()
    if not store.acquire_post_lock(job.job_id, attempt, owner):
        raise PostInProgress(
            f"job {job.job_id} attempt {attempt} is being posted by another worker",
            retry_after=POST_LOCK_TTL_SECONDS / 4,
        )
    try:
        done = store.reply_for(job.job_id, attempt)  # posted between our check and the lock
        if done:
            return done
        metadata = {"job_id": job.job_id, "attempt": attempt}
        started = store.post_started_at(job.job_id, attempt)
        if started is not None:
            # Maybe posted (a copy died, or the answer was lost): look before posting again.
            found = sink.find_reply(message.channel, message.thread_ts, metadata, since=started)
            if found:
                store.record_reply(job.job_id, attempt, found)
                return found
        # The first start is kept: a channel lookup must reach back to the earliest post.
        store.mark_post_started(job.job_id, attempt)
        ts = sink.post(message, metadata=metadata)
        store.record_reply(job.job_id, attempt, ts)
        return ts
    finally:
        store.release_post_lock(job.job_id, attempt, owner)


STATUS_FOR_OUTCOME = {
    Outcome.success: JobStatus.posted,
    Outcome.gate_failed: JobStatus.gate_failed,
    Outcome.error: JobStatus.failed,
    Outcome.duplicate: JobStatus.duplicate,
}


def set_reaction(sink: SlackSink, job: Job, outcome: Outcome | None) -> None:
    """👀 while queued (outcome None); ✅ once replied, ⚠️ when gated or failed.

    Best effort: a reaction that cannot be set never fails the job.
    """
    if not job.message_ts:  # slash commands have no message to react to
        return
    try:
        if outcome is None:
            sink.add_reaction(job.channel_id, job.message_ts, EYES)
            return
        final = POSTED if outcome in (Outcome.success, Outcome.duplicate) else WARNING
        sink.add_reaction(job.channel_id, job.message_ts, final)
        sink.remove_reaction(job.channel_id, job.message_ts, EYES)
    except Exception as exc:  # noqa: BLE001 - reactions are cosmetic
        log.warning("reaction on %s/%s failed: %s", job.channel_id, job.message_ts, exc)


class IdempotentPoster:
    """The ``pipeline.deps.ReplyPoster`` of the workers: :func:`post_once` on the job store."""

    def __init__(self, store: JobStore, sink: SlackSink) -> None:
        self.store = store
        self.sink = sink

    def post(self, job: Job, attempt: int, message: SlackMessage) -> str:
        return post_once(self.store, self.sink, job, attempt, message)
