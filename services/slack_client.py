"""Where replies and reactions go: Slack's Web API, the console, or a JSON-lines file.

``make_sink(settings)`` picks one by ``SLACK_SINK``. The Slack sink is slack_sdk's ``WebClient``
with ``base_url=settings.slack_api_url`` (tests point it at a local stub) and maps Slack's
failures onto the error tree: 429 -> ``SlackRateLimited(retry_after)``, 5xx and network errors
-> ``SlackServerError`` (both retryable), invalid_auth & co -> ``SlackAuthError``,
channel_not_found & co -> ``SlackChannelError`` (both terminal, with a clear message).

Posts are never re-sent by the transport: slack_sdk's default retry handler re-sends a request
whose connection failed, and a ``chat.postMessage`` whose answer was lost may well have been
posted. So posts go through a client without retry handlers, and a failure comes back to
``services.posting.post_once``, which looks for the reply before posting again. Reads and
reactions (idempotent) keep slack_sdk's connection retry.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import urllib.error
from pathlib import Path
from typing import Any, Protocol, TextIO

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from pipeline.constants import POST_LOOKUP_MARGIN_SECONDS
from pipeline.errors import (
    SlackAuthError,
    SlackChannelError,
    SlackRateLimited,
    SlackServerError,
    TerminalError,
)
from pipeline.models import SlackMessage
from pipeline.settings import Settings

AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
CHANNEL_ERRORS = frozenset(
    {"channel_not_found", "not_in_channel", "is_archived", "restricted_action"}
)
# Reaction calls that mean "already in the state you asked for".
REACTION_NOOPS = frozenset({"already_reacted", "no_reaction"})

EYES, POSTED, WARNING = "eyes", "white_check_mark", "warning"
REPLY_EVENT_TYPE = "technoshare_reply"  # message metadata of our replies: {job_id, attempt}
LOOKUP_LIMIT = 200  # messages read when looking for a reply (a thread, or the channel since)
# What a call whose answer was lost raises: the request may have reached Slack.
NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


class SlackSink(Protocol):
    def post(self, message: SlackMessage, *, metadata: dict[str, Any] | None = None) -> str:
        """Post a message; returns its ts."""
        ...

    def add_reaction(self, channel: str, ts: str, name: str) -> None: ...

    def remove_reaction(self, channel: str, ts: str, name: str) -> None: ...

    def permalink(self, channel: str, ts: str) -> str | None: ...

    def find_reply(
        self, channel: str, thread_ts: str | None, metadata: dict[str, Any], *, since: float
    ) -> str | None:
        """The ts of our reply posted with this metadata, if the sink can tell: in the thread
        ``thread_ts``, or at channel level (``thread_ts`` None) since ``since`` (Unix time)."""
        ...


def _response_parts(exc: SlackApiError) -> tuple[int, dict[str, Any], str]:
    """(status, headers, error code) of a failed call, whatever shape slack_sdk gave it."""
    resp = exc.response
    if isinstance(resp, dict):  # slack_sdk raises with a dict when the body is not JSON
        status = int(resp.get("status", 0) or 0)
        headers = resp.get("headers") or {}
        return status, dict(headers), ""
    status = int(getattr(resp, "status_code", 0) or 0)
    headers = dict(getattr(resp, "headers", {}) or {})
    data = getattr(resp, "data", None)
    code = data.get("error", "") if isinstance(data, dict) else ""
    return status, headers, str(code)


def _retry_after(headers: dict[str, Any]) -> float:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            value = value[0] if isinstance(value, list) else value
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                break
    return 1.0


def map_slack_error(method: str, exc: SlackApiError) -> Exception:
    status, headers, code = _response_parts(exc)
    if status == 429 or code == "ratelimited":
        return SlackRateLimited(f"{method}: rate limited", retry_after=_retry_after(headers))
    if status >= 500 or code in {"internal_error", "fatal_error", "service_unavailable"}:
        return SlackServerError(f"{method}: Slack answered HTTP {status} {code}".strip())
    if code in AUTH_ERRORS:
        return SlackAuthError(f"{method}: {code} (check SLACK_BOT_TOKEN)")
    if code in CHANNEL_ERRORS:
        return SlackChannelError(f"{method}: {code} (invite the bot or check SLACK_CHANNELS)")
    return TerminalError(f"{method}: Slack error {code or status}")


class WebApiSink:
    """The real thing, through slack_sdk's WebClient."""

    def __init__(self, settings: Settings, client: WebClient | None = None) -> None:
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
        options: dict[str, Any] = {
            "token": token,
            "base_url": settings.slack_api_url,
            "timeout": int(settings.slack_timeout),
        }
        # Reads and reactions: slack_sdk's default retry of a failed connection is harmless.
        self.client = client or WebClient(**options)
        # Posts: no transport retry at all (see the module docstring); a 429 is retried by the
        # task with Slack's Retry-After, through post_once.
        self.post_client = client or WebClient(**options, retry_handlers=[])

    def _call(
        self, method: str, *, as_json: bool = False, client: WebClient | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        client = client or self.client
        try:
            if as_json:  # chat.postMessage: blocks and metadata are nested objects
                response = client.api_call(method, json=kwargs)
            else:  # form-encoded, as slack_sdk's own reactions_add / chat_getPermalink send
                response = client.api_call(method, params=kwargs)
        except SlackApiError as exc:
            raise map_slack_error(method, exc) from None
        except NETWORK_ERRORS as exc:
            raise SlackServerError(f"{method}: {type(exc).__name__}: {exc}") from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    def post(self, message: SlackMessage, *, metadata: dict[str, Any] | None = None) -> str:
        kwargs: dict[str, Any] = {
            "channel": message.channel,
            "text": message.text,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if message.thread_ts:
            kwargs["thread_ts"] = message.thread_ts
        if message.blocks:
            kwargs["blocks"] = message.blocks
        if metadata:
            kwargs["metadata"] = {"event_type": REPLY_EVENT_TYPE, "event_payload": metadata}
        data = self._call("chat.postMessage", as_json=True, client=self.post_client, **kwargs)
        return str(data.get("ts", ""))

    def _reaction(self, method: str, channel: str, ts: str, name: str) -> None:
        try:
            self._call(method, channel=channel, timestamp=ts, name=name)
        except TerminalError as exc:
            if not any(code in str(exc) for code in REACTION_NOOPS):
                raise

    def add_reaction(self, channel: str, ts: str, name: str) -> None:
        self._reaction("reactions.add", channel, ts, name)

    def remove_reaction(self, channel: str, ts: str, name: str) -> None:
        self._reaction("reactions.remove", channel, ts, name)

    def permalink(self, channel: str, ts: str) -> str | None:
        try:
            data = self._call("chat.getPermalink", channel=channel, message_ts=ts)
        except (TerminalError, SlackServerError, SlackRateLimited):
            return None
        return data.get("permalink")

    def find_reply(
        self, channel: str, thread_ts: str | None, metadata: dict[str, Any], *, since: float
    ) -> str | None:
        """Our reply carrying ``metadata`` (needs the channels:history scope): in the thread
        (conversations.replies), or for a channel-level reply among the channel's messages
        since ``since`` less a margin for clock skew (conversations.history).

        Retryable errors propagate (the caller retries later rather than risk a second post);
        a terminal one (e.g. missing_scope) answers None: the caller then posts.
        """
        where: dict[str, Any] = {"channel": channel, "include_all_metadata": "true"}
        if thread_ts:
            method, where["ts"] = "conversations.replies", thread_ts
        else:
            method = "conversations.history"
            where["oldest"] = f"{max(0.0, since - POST_LOOKUP_MARGIN_SECONDS):.6f}"
        try:
            data = self._call(method, limit=LOOKUP_LIMIT, **where)
        except TerminalError:
            return None
        for message in data.get("messages") or []:
            meta = message.get("metadata") or {}
            if meta.get("event_type") == REPLY_EVENT_TYPE and meta.get("event_payload") == metadata:
                return str(message.get("ts"))
        return None


class ConsoleSink:
    """Prints replies: the default in dev and in ``technoshare demo``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream or sys.stdout, flush=True)

    def post(self, message: SlackMessage, *, metadata: dict[str, Any] | None = None) -> str:
        ts = f"{time.time():.6f}"
        where = f"#{message.channel}" + (
            f" thread {message.thread_ts}" if message.thread_ts else ""
        )
        self._print(f"\n--- reply in {where} ({message.outcome}) ---\n{message.text}\n---")
        return ts

    def add_reaction(self, channel: str, ts: str, name: str) -> None:
        self._print(f"[reaction :{name}: on {channel}/{ts}]")

    def remove_reaction(self, channel: str, ts: str, name: str) -> None:
        return None

    def permalink(self, channel: str, ts: str) -> str | None:
        return None

    def find_reply(
        self, channel: str, thread_ts: str | None, metadata: dict[str, Any], *, since: float
    ) -> str | None:
        return None


class FileSink:
    """Appends every call as one JSON line to ``<state_dir>/slack_sink.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _write(self, method: str, **payload: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"method": method, "at": time.time(), **payload}, default=str)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def post(self, message: SlackMessage, *, metadata: dict[str, Any] | None = None) -> str:
        ts = f"{time.time():.6f}"
        self._write("chat.postMessage", ts=ts, metadata=metadata, **message.model_dump(mode="json"))
        return ts

    def add_reaction(self, channel: str, ts: str, name: str) -> None:
        self._write("reactions.add", channel=channel, timestamp=ts, name=name)

    def remove_reaction(self, channel: str, ts: str, name: str) -> None:
        self._write("reactions.remove", channel=channel, timestamp=ts, name=name)

    def permalink(self, channel: str, ts: str) -> str | None:
        return None

    def find_reply(
        self, channel: str, thread_ts: str | None, metadata: dict[str, Any], *, since: float
    ) -> str | None:
        return None


def sink_file(settings: Settings) -> Path:
    return settings.state_dir / "slack_sink.jsonl"


def make_sink(settings: Settings) -> SlackSink:
    if settings.slack_sink == "slack":
        return WebApiSink(settings)
    if settings.slack_sink == "file":
        return FileSink(sink_file(settings))
    return ConsoleSink()
