"""The Slack handlers shared by the HTTP endpoint (services/ingest.py) and Socket Mode
(services/socket_mode.py): one event delivery or slash command -> one job per new link.

Payloads reach here already decoded but otherwise untrusted: every field is read through a
typed accessor, so a wrongly typed field is ignored instead of raising. Redis calls retry on a
connection or timeout error for ``INGEST_REDIS_RETRY_SECONDS`` (a blip costs latency, not the
message), then raise ``RedisUnavailable`` for the caller to answer 503 so Slack retries; the
claims are released first, so that retry is processed. Imports neither mlflow, litellm nor
the stage code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import kombu.exceptions
import redis

from pipeline.constants import START_JOB_TASK
from pipeline.links import canonical_url, extract_links
from pipeline.models import Job, JobKind
from pipeline.settings import Settings
from services.feedback import FEEDBACK_TASK, SendFeedback, reaction_feedback
from services.history_store import RedisHistory
from services.job_store import JobStore
from services.slack_client import EYES, SlackSink

log = logging.getLogger("technoshare.ingest")

MAX_MESSAGE_TEXT = 4000  # kept on the job: the gates allow links that appear in the message
ALLOWED_SUBTYPES = frozenset({"", "file_share", "thread_broadcast", "me_message"})
# Slack always sends these with a slash command; without a channel there is nowhere to answer.
COMMAND_FIELDS = ("command", "channel_id", "user_id")
Enqueue = Callable[[str], None]
T = TypeVar("T")

# Redis (job store) and the broker publish: errors of an outage, worth waiting out.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    kombu.exceptions.OperationalError,
    ConnectionError,
    TimeoutError,
)


class RedisUnavailable(Exception):
    """Redis (or the broker on it) stayed unreachable for the whole retry budget."""


class RedisRetry:
    """Retry one call on an outage error with growing pauses, for at most ``budget`` seconds."""

    FIRST_PAUSE, MAX_PAUSE = 0.05, 2.0

    def __init__(self, budget: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.budget = budget
        self.sleep = sleep

    def __call__(self, what: str, call: Callable[..., T], *args: Any) -> T:
        deadline = time.monotonic() + self.budget
        pause = self.FIRST_PAUSE
        while True:
            try:
                return call(*args)
            except OUTAGE_ERRORS as exc:
                if time.monotonic() + pause > deadline:
                    raise RedisUnavailable(f"{what}: {type(exc).__name__}: {exc}") from None
                if pause == self.FIRST_PAUSE:  # one line per outage seen, not per retry
                    log.warning("Redis unreachable (%s: %s): retrying up to %g s", what, exc,
                                self.budget)  # fmt: skip
                self.sleep(pause)
                pause = min(pause * 2, self.MAX_PAUSE)


def publish_retry_policy(budget: float) -> dict[str, float]:
    """kombu's publish retry (its reconnects included) spread over about ``budget`` seconds;
    Celery's default gives up after 3 retries 0.2 s apart, shorter than a Redis restart."""
    start, step, cap = 0.2, 0.5, 2.0
    total, retries, pause = 0.0, 0, start
    while total + pause <= budget:
        total, retries, pause = total + pause, retries + 1, min(pause + step, cap)
    return {"max_retries": retries, "interval_start": start, "interval_step": step,
            "interval_max": cap}  # fmt: skip


class CeleryPublisher:
    """Publishes tasks BY NAME (the stage code is never imported here), fire and forget:
    ``ignore_result`` spares a result-channel SUBSCRIBE per message nobody would read."""

    def __init__(self, settings: Settings) -> None:
        from tasks.app import create_app

        self.client = create_app(settings)
        self.policy = publish_retry_policy(settings.ingest_redis_retry_seconds)

    def _send(self, name: str, **kwargs: Any) -> None:
        self.client.send_task(
            name, ignore_result=True, retry=True, retry_policy=self.policy, **kwargs
        )

    def enqueue(self, job_id: str) -> None:
        self._send(START_JOB_TASK, args=[job_id])

    def send_feedback(self, kwargs: dict[str, Any]) -> None:
        self._send(FEEDBACK_TASK, kwargs=kwargs)


# --- typed reads of untrusted payloads -----------------------------------------------------
def text_field(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def dict_field(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def event_callback_problem(payload: dict[str, Any]) -> str | None:
    """Why an ``event_callback`` envelope is malformed (Slack never sends these), else None."""
    if not isinstance(payload.get("event"), dict):
        return f"event is {type(payload.get('event')).__name__}, not an object"
    if not isinstance(payload.get("event_id", ""), str):
        return "event_id is not a string"
    return None


class IngestService:
    """The handlers shared by the HTTP endpoint and Socket Mode."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        enqueue: Enqueue,
        sink: SlackSink,
        send_feedback: SendFeedback | None = None,
        retry: RedisRetry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.enqueue = enqueue
        self.sink = sink
        self.send_feedback = send_feedback
        self.retry = retry or RedisRetry(settings.ingest_redis_retry_seconds)
        self.threads = RedisHistory(store.r, settings)  # which jobs replied in which thread

    def _undo(self, what: str, call: Callable[..., Any], *args: Any) -> None:
        """Release a claim after a failure, best effort: the failure is what gets reported."""
        try:
            self.retry(what, call, *args)
        except (RedisUnavailable, redis.RedisError) as exc:
            log.error("could not %s (Slack's retry may be taken for a duplicate): %s", what, exc)

    def _publish(self, what: str, publish: Callable[..., None], *args: Any) -> None:
        try:
            publish(*args)  # the Celery publisher retries itself (kombu retry policy)
        except OUTAGE_ERRORS as exc:
            raise RedisUnavailable(f"{what}: {type(exc).__name__}: {exc}") from None

    # --- events -----------------------------------------------------------------------------
    def handle_event_callback(self, payload: dict[str, Any]) -> list[Job]:
        """Jobs enqueued for one event delivery ([] when filtered out or already seen)."""
        event_id = text_field(payload, "event_id")
        if event_id and not self.retry("claim event", self.store.claim_event, event_id):
            log.info("event %s already accepted (Slack retry or duplicate delivery)", event_id)
            return []
        try:
            event = dict_field(payload, "event")
            item = event.get("item")
            if item is None or isinstance(item, dict):  # reaction_feedback reads it as a dict
                feedback = reaction_feedback(event, self.settings.slack_bot_user_id)
                if feedback is not None:  # a 👍/👎 on one of our replies: MLflow feedback, no job
                    if self.send_feedback is not None:
                        self._publish("send feedback", self.send_feedback, feedback)
                    return []
            wanted = self._wanted(event)
            if wanted is not None and not wanted[2]:  # a mention with no link
                return self._mention(wanted[0], wanted[1])
            return self._enqueue_links(wanted)
        except Exception:
            if event_id:  # let Slack's retry of this event through
                self._undo("release event", self.store.release_event, event_id)
            raise

    def _ours(self, message: dict[str, Any]) -> bool:
        bot_user = self.settings.slack_bot_user_id
        return bool(
            message.get("bot_id")
            or message.get("subtype") == "bot_message"
            or (bot_user and message.get("user") == bot_user)
        )

    def _wanted(self, event: dict[str, Any]) -> tuple[dict[str, Any], str, list[str]] | None:
        """(message, channel, new links) of an event worth answering, else None."""
        kind, channel = event.get("type"), text_field(event, "channel")
        if not channel:
            return None
        if kind == "app_mention":  # an explicit request: any channel the bot is in, any thread
            if self._ours(event):
                return None
            return event, channel, self._links(event)
        if kind != "message":
            return None
        if self.settings.slack_channels and channel not in self.settings.slack_channels:
            return None
        subtype = text_field(event, "subtype")
        if subtype == "message_changed":
            message = dict_field(event, "message")
            before = {canonical_url(u) for u in self._links(dict_field(event, "previous_message"))}
            links = [u for u in self._links(message) if canonical_url(u) not in before]
        elif subtype in ALLOWED_SUBTYPES:
            message, links = event, self._links(event)
        else:
            return None
        if self._ours(message) or not links:
            return None
        thread_ts, ts = text_field(message, "thread_ts"), text_field(message, "ts")
        if thread_ts and thread_ts != ts and not self.settings.slack_process_thread_replies:
            return None
        return message, channel, links

    def _mention(self, event: dict[str, Any], channel: str) -> list[Job]:
        """A mention without a link: in the thread of one of our replies, a follow-up question
        answered from that job; anywhere else, the one-line help. Both are jobs of their own
        (claimed, stored, posted once), keyed by the mention's ts."""
        ts, thread_ts = text_field(event, "ts"), text_field(event, "thread_ts")
        if not ts:
            return []
        answered: list[str] = []
        if thread_ts and thread_ts != ts:
            answered = self.retry("find thread", self.threads.thread_jobs, channel, thread_ts)
        if answered:
            first = self.retry("read job", self.store.get, answered[0])
            url = first.job.url if first is not None else ""
            kind = JobKind.followup
        else:
            url, kind = "", JobKind.help
        job = self._job(channel, ts, event, url, message_ts=ts, thread_ts=thread_ts or ts,
                        kind=kind)  # fmt: skip
        return [job] if job is not None else []

    def _links(self, message: dict[str, Any]) -> list[str]:
        blocks = message.get("blocks")
        return extract_links(
            text_field(message, "text"),
            blocks if isinstance(blocks, list) else None,
            limit=self.settings.slack_max_links_per_message,
        )

    def _enqueue_links(self, wanted: tuple[dict[str, Any], str, list[str]] | None) -> list[Job]:
        if wanted is None:
            return []
        message, channel, links = wanted
        ts = text_field(message, "ts")
        thread_ts = text_field(message, "thread_ts")
        jobs = [
            self._job(channel, ts, message, url, message_ts=ts,
                      thread_ts=thread_ts if thread_ts and thread_ts != ts else None)
            for url in links
        ]  # fmt: skip
        return [j for j in jobs if j is not None]

    def _job(
        self,
        channel: str,
        key: str,
        message: dict[str, Any],
        url: str,
        *,
        message_ts: str,
        thread_ts: str | None,
        kind: JobKind = JobKind.link,
    ) -> Job | None:
        """Claim (channel, key, link) and enqueue its job; None when claimed before. A
        follow-up or help job claims its kind instead of a link (one per mention)."""
        canonical = canonical_url(url) if url else ""
        claimed = canonical if kind == JobKind.link else f"{kind}:"
        if not self.retry("claim link", self.store.claim_message_link, channel, key, claimed):
            return None  # this link of this message is queued already
        job = Job(
            job_id=Job.make_id(channel, key, claimed),
            channel_id=channel,
            message_ts=message_ts,
            thread_ts=thread_ts,
            user_id=text_field(message, "user") or None,
            message_text=text_field(message, "text")[:MAX_MESSAGE_TEXT],
            url=url,
            canonical_url=canonical,
            kind=kind,
        )
        try:
            if self.retry("create job", self.store.create, job):
                try:
                    self._publish("enqueue job", self.enqueue, job.job_id)
                except Exception:  # broker down: undo, so Slack's retry of the event gets through
                    self._undo("delete job", self.store.delete, job.job_id)
                    raise
                log.info("queued job %s for %s in %s/%s", job.job_id, claimed, channel, key)
        except Exception:
            self._undo("release link", self.store.release_message_link, channel, key, claimed)
            raise
        return job

    # --- slash command ----------------------------------------------------------------------
    def handle_command(self, form: dict[str, str]) -> dict[str, Any]:
        """``/technoshare <url>``: analyse links on demand; the answer is a new channel message."""
        missing = [name for name in COMMAND_FIELDS if not form.get(name)]
        if missing:
            log.warning("slash command without %s: ignored", ", ".join(missing))
            return {"response_type": "ephemeral", "text": "Malformed command."}
        text = form.get("text", "")
        links = extract_links(text, limit=self.settings.slack_max_links_per_message)
        if not links:
            return {"response_type": "ephemeral", "text": "Usage: /technoshare <link>"}
        channel = form["channel_id"]
        key = "cmd-" + (form.get("trigger_id") or f"{form['user_id']}-{text}")
        message = {"user": form["user_id"], "text": text}
        # No Slack message to thread under or react to: the reply is a new channel message.
        jobs = [self._job(channel, key, message, u, message_ts="", thread_ts=None) for u in links]
        queued = [j for j in jobs if j is not None]
        return {"response_type": "ephemeral", "text": f"Queued {len(queued)} link(s)."}

    # --- after the response -----------------------------------------------------------------
    def react_queued(self, jobs: list[Job]) -> None:
        """👀 on each message with new link jobs (a follow-up or help reply gets none: no chain
        will turn it into ✅). Best effort: never fails the request."""
        linked = {(j.channel_id, j.message_ts) for j in jobs if j.message_ts and j.kind == "link"}
        for channel, ts in linked:
            try:
                self.sink.add_reaction(channel, ts, EYES)
            except Exception as exc:  # noqa: BLE001 - cosmetic
                log.warning("could not add :eyes: to %s/%s: %s", channel, ts, exc)
