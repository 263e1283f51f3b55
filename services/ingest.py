"""Slack ingest: the Events API over HTTP (and Socket Mode, same handlers) -> one job per link.

Answers well under Slack's 3 s: verify the signature on the raw body, dedupe in Redis, write the
job record, enqueue ``technoshare.start_job`` BY NAME, respond; the 👀 reaction is added after
the response. This process imports neither mlflow nor litellm nor the stage code (a test
checks): it needs only redis, celery's client side, slack_sdk and ``pipeline.links``.

Routes: POST /slack/events, POST /slack/commands (``/technoshare <url>``), GET /healthz,
GET /readyz (Redis reachable).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from slack_sdk.signature import Clock, SignatureVerifier
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from pipeline.errors import ConfigError
from pipeline.links import canonical_url, extract_links
from pipeline.models import Job
from pipeline.settings import Settings, get_settings
from services.feedback import SendFeedback, celery_feedback_sender, reaction_feedback
from services.job_store import JobStore
from services.slack_client import EYES, SlackSink, make_sink

log = logging.getLogger("technoshare.ingest")

MAX_MESSAGE_TEXT = 4000  # kept on the job: the gates allow links that appear in the message
ALLOWED_SUBTYPES = frozenset({"", "file_share", "thread_broadcast", "me_message"})
Enqueue = Callable[[str], None]


def celery_enqueue(settings: Settings) -> Enqueue:
    """Publish ``technoshare.start_job`` by name: the stage code is never imported here."""
    from tasks.app import create_app

    client = create_app(settings)

    def enqueue(job_id: str) -> None:
        client.send_task("technoshare.start_job", args=[job_id])

    return enqueue


class IngestService:
    """The handlers shared by the HTTP endpoint and Socket Mode."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        enqueue: Enqueue,
        sink: SlackSink,
        send_feedback: SendFeedback | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.enqueue = enqueue
        self.sink = sink
        self.send_feedback = send_feedback

    # --- events -----------------------------------------------------------------------------
    def handle_event_callback(self, payload: dict[str, Any]) -> list[Job]:
        """Jobs enqueued for one event delivery ([] when filtered out or already seen)."""
        event_id = str(payload.get("event_id") or "")
        if event_id and not self.store.claim_event(event_id):
            log.info("event %s already accepted (Slack retry or duplicate delivery)", event_id)
            return []
        try:
            event = payload.get("event") or {}
            feedback = reaction_feedback(event, self.settings.slack_bot_user_id)
            if feedback is not None:  # a 👍/👎 on one of our replies: MLflow feedback, no job
                if self.send_feedback is not None:
                    self.send_feedback(feedback)
                return []
            return self._enqueue_links(self._wanted(event))
        except Exception:
            if event_id:  # let Slack's retry of this event through
                self.store.release_event(event_id)
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
        kind, channel = event.get("type"), str(event.get("channel") or "")
        if kind == "app_mention":  # an explicit request: any channel the bot is in, any thread
            if self._ours(event):
                return None
            return event, channel, self._links(event)
        if kind != "message":
            return None
        if self.settings.slack_channels and channel not in self.settings.slack_channels:
            return None
        subtype = str(event.get("subtype") or "")
        if subtype == "message_changed":
            message = event.get("message") or {}
            before = {canonical_url(u) for u in self._links(event.get("previous_message") or {})}
            links = [u for u in self._links(message) if canonical_url(u) not in before]
        elif subtype in ALLOWED_SUBTYPES:
            message, links = event, self._links(event)
        else:
            return None
        if self._ours(message) or not links:
            return None
        thread_ts, ts = message.get("thread_ts"), message.get("ts")
        if thread_ts and thread_ts != ts and not self.settings.slack_process_thread_replies:
            return None
        return message, channel, links

    def _links(self, message: dict[str, Any]) -> list[str]:
        limit = self.settings.slack_max_links_per_message
        return extract_links(message.get("text") or "", message.get("blocks"), limit=limit)

    def _enqueue_links(self, wanted: tuple[dict[str, Any], str, list[str]] | None) -> list[Job]:
        if wanted is None:
            return []
        message, channel, links = wanted
        ts = str(message.get("ts") or "")
        thread_ts = message.get("thread_ts") if message.get("thread_ts") != ts else None
        jobs = [
            self._job(channel, ts, message, url, message_ts=ts, thread_ts=thread_ts)
            for url in links
        ]
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
    ) -> Job | None:
        """Claim (channel, key, link) and enqueue its job; None when claimed before."""
        canonical = canonical_url(url)
        if not self.store.claim_message_link(channel, key, canonical):
            return None  # this link of this message is queued already
        job = Job(
            job_id=Job.make_id(channel, key, canonical),
            channel_id=channel,
            message_ts=message_ts,
            thread_ts=thread_ts,
            user_id=message.get("user"),
            message_text=str(message.get("text") or "")[:MAX_MESSAGE_TEXT],
            url=url,
            canonical_url=canonical,
        )
        if self.store.create(job):
            try:
                self.enqueue(job.job_id)
            except Exception:  # broker down: undo, so Slack's retry of the event gets through
                self.store.delete(job.job_id)
                self.store.release_message_link(channel, key, canonical)
                raise
            log.info("queued job %s for %s in %s/%s", job.job_id, canonical, channel, key)
        return job

    # --- slash command ----------------------------------------------------------------------
    def handle_command(self, form: dict[str, str]) -> dict[str, Any]:
        """``/technoshare <url>``: analyse links on demand; the answer is a new channel message."""
        links = extract_links(form.get("text", ""), limit=self.settings.slack_max_links_per_message)
        if not links:
            return {"response_type": "ephemeral", "text": "Usage: /technoshare <link>"}
        channel = form.get("channel_id", "")
        key = "cmd-" + (form.get("trigger_id") or f"{form.get('user_id')}-{form.get('text')}")
        message = {"user": form.get("user_id"), "text": form.get("text", "")}
        # No Slack message to thread under or react to: the reply is a new channel message.
        jobs = [self._job(channel, key, message, u, message_ts="", thread_ts=None) for u in links]
        queued = [j for j in jobs if j is not None]
        return {"response_type": "ephemeral", "text": f"Queued {len(queued)} link(s)."}

    # --- after the response -----------------------------------------------------------------
    def react_queued(self, jobs: list[Job]) -> None:
        """👀 on each message with new jobs. Best effort: never fails the request."""
        for channel, ts in {(j.channel_id, j.message_ts) for j in jobs if j.message_ts}:
            try:
                self.sink.add_reaction(channel, ts, EYES)
            except Exception as exc:  # noqa: BLE001 - cosmetic
                log.warning("could not add :eyes: to %s/%s: %s", channel, ts, exc)


# --- HTTP --------------------------------------------------------------------------------
def create_app(
    settings: Settings | None = None,
    *,
    service: IngestService | None = None,
    clock: Clock | None = None,
) -> Starlette:
    settings = settings or get_settings()
    svc = service or IngestService(
        settings,
        JobStore.from_settings(settings),
        celery_enqueue(settings),
        make_sink(settings),
        celery_feedback_sender(settings),
    )
    secret = (
        settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    )
    verifier = SignatureVerifier(secret, clock=clock or Clock()) if secret else None

    def verified(request: Request, body: bytes) -> bool:
        if verifier is None:
            log.error("SLACK_SIGNING_SECRET is not set: refusing every Events API request")
            return False
        return verifier.is_valid(
            body,
            request.headers.get("X-Slack-Request-Timestamp"),
            request.headers.get("X-Slack-Signature"),
        )

    async def events(request: Request) -> Response:
        body = await request.body()
        if not verified(request, body):
            return PlainTextResponse("invalid signature", status_code=401)
        try:
            payload = json.loads(body)
        except ValueError:
            return PlainTextResponse("malformed JSON", status_code=400)
        if not isinstance(payload, dict):
            return PlainTextResponse("malformed payload", status_code=400)
        if payload.get("type") == "url_verification":
            return JSONResponse({"challenge": payload.get("challenge", "")})
        if payload.get("type") != "event_callback":
            return JSONResponse({"ok": True, "ignored": True})
        jobs = await run_in_threadpool(svc.handle_event_callback, payload)
        background = BackgroundTask(svc.react_queued, jobs) if jobs else None
        return JSONResponse({"ok": True, "jobs": [j.job_id for j in jobs]}, background=background)

    async def commands(request: Request) -> Response:
        body = await request.body()
        if not verified(request, body):
            return PlainTextResponse("invalid signature", status_code=401)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(errors="replace")).items()}
        return JSONResponse(await run_in_threadpool(svc.handle_command, form))

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        ok = await run_in_threadpool(svc.store.ping)
        return PlainTextResponse(
            "ready" if ok else "redis unreachable", status_code=200 if ok else 503
        )

    app = Starlette(
        routes=[
            Route("/slack/events", events, methods=["POST"]),
            Route("/slack/commands", commands, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )
    app.state.service = svc
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument(
        "--socket-mode",
        choices=("auto", "on", "off"),
        default="auto",
        help="Socket Mode with SLACK_APP_TOKEN (auto: when the token is set)",
    )


def main(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app = create_app(settings)
    socket_client = None
    if args.socket_mode == "on" or (args.socket_mode == "auto" and settings.slack_app_token):
        from services.socket_mode import start_socket_mode

        try:
            socket_client = start_socket_mode(settings, app.state.service)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        if socket_client is not None:
            socket_client.close()
    return 0
