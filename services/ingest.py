"""Slack ingest: the Events API over HTTP (and Socket Mode, same handlers) -> one job per link.

Answers well under Slack's 3 s: verify the signature on the raw body, dedupe in Redis, write the
job record, enqueue ``technoshare.start_job`` BY NAME, respond; the 👀 reaction is added after
the response. This process imports neither mlflow nor litellm nor the stage code (a test
checks): it needs only redis, celery's client side, slack_sdk and ``pipeline.links``.

Routes: POST /slack/events, POST /slack/commands (``/technoshare <url>``), GET /healthz,
GET /readyz (Redis reachable).

Hostile or malformed requests get a 4xx and one log line, never a traceback: the body is
bounded in size (``INGEST_MAX_BODY_BYTES``: 413, checked on ``Content-Length`` before reading)
and time (``INGEST_READ_TIMEOUT_SECONDS``: 408), see services/slack_request.py. Redis down past
the retry budget (``INGEST_REDIS_RETRY_SECONDS``) is a 503 with ``Retry-After``: Slack retries
and the dedupe keys make the retry safe. The handlers live in services/slack_events.py.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from slack_sdk.signature import Clock
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.errors import ConfigError
from pipeline.models import Job
from pipeline.redact import install_log_redaction
from pipeline.settings import Settings, get_settings
from services.job_store import JobStore
from services.slack_client import make_sink
from services.slack_events import (  # IngestService: public here too (tests, callers)
    COMMAND_FIELDS,
    CeleryPublisher,
    IngestService,
    RedisUnavailable,
    event_callback_problem,
)
from services.slack_request import (
    RequestRefused,
    SlackSignature,
    check_declared_length,
    parse_form,
    parse_json,
    read_body,
)

log = logging.getLogger("technoshare.ingest")

RETRY_AFTER_SECONDS = 30  # Slack retries on its own schedule (about 1 and 5 min); a hint only
REDIS_SOCKET_TIMEOUT = 2.0  # per Redis call: a hung Redis is an outage, not a hung request
Endpoint = Callable[[Request], Awaitable[Response]]
# The 👀 reactions run on threads of their own: on the request thread pool a slow Slack call held
# threads the next acks were waiting for (p99 381-516 ms at 200 events/s). Two threads keep up
# with hundreds of events/s; past REACTION_BACKLOG waiting, a reaction is dropped (cosmetic),
# so a Slack outage costs neither memory nor acks.
REACTION_THREADS = 2
REACTION_BACKLOG = 1000


class Reactions:
    """Adds the 👀 reactions off the ack path: ``submit`` never blocks."""

    def __init__(self, react: Callable[[list[Job]], None], *, threads: int = REACTION_THREADS,
                 backlog: int = REACTION_BACKLOG) -> None:  # fmt: skip
        self.react = react
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ingest-reactions")
        self._slots = threading.BoundedSemaphore(backlog)
        self._idle = threading.Condition()
        self._pending = 0

    def submit(self, jobs: list[Job]) -> bool:
        """Queue the reactions of ``jobs``; False (logged) when the backlog is full."""
        if not self._slots.acquire(blocking=False):
            log.warning("%d reactions waiting: :eyes: skipped for %d job(s)", REACTION_BACKLOG,
                        len(jobs))  # fmt: skip
            return False
        with self._idle:
            self._pending += 1
        self._pool.submit(self._run, jobs)
        return True

    def _run(self, jobs: list[Job]) -> None:
        try:
            self.react(jobs)  # best effort: react_queued logs its own failures
        except Exception as exc:  # noqa: BLE001 - a reaction never takes the thread down
            log.warning("reaction failed: %s: %s", type(exc).__name__, exc)
        finally:
            self._slots.release()
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once every submitted reaction has run (tests, shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        self.wait_idle(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)


def celery_enqueue(settings: Settings) -> Callable[[str], None]:
    """Publish ``technoshare.start_job`` by name: the stage code is never imported here."""
    return CeleryPublisher(settings).enqueue


def ingest_job_store(settings: Settings) -> JobStore:
    """Bounded Redis calls with no retries inside redis-py: ``RedisRetry`` owns the backoff."""
    client = redis.Redis.from_url(
        settings.redis_url, decode_responses=True, socket_timeout=REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT, retry=Retry(NoBackoff(), 0),
    )  # fmt: skip
    return JobStore(client)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"


def guarded(endpoint: Endpoint) -> Endpoint:
    """Map every failure of an endpoint to a status and ONE log line (no traceback)."""

    async def guarded_endpoint(request: Request) -> Response:
        where = f"{request.method} {request.url.path}"
        try:
            return await endpoint(request)
        except RequestRefused as refusal:
            log.warning("%s refused %d: %s", where, refusal.status, refusal.reason)
            headers = {"Connection": "close"} if refusal.close else None
            return PlainTextResponse(refusal.public, refusal.status, headers=headers)
        except RedisUnavailable as exc:
            log.error("%s answered 503, Redis unreachable: %s", where, exc)
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            return PlainTextResponse("redis unavailable, retry later", 503, headers=headers)
        except ClientDisconnect:
            log.info("%s: client went away before the body was complete", where)
            return Response(status_code=400)  # nobody is left to read it
        except Exception as exc:  # noqa: BLE001 - last resort: a bug, not the request's fault
            log.error("%s internal error at %s: %s: %s", where, _where(exc), type(exc).__name__,
                      exc)  # fmt: skip
            return PlainTextResponse("internal error", 500)

    return guarded_endpoint


class OneLineErrors:
    """Outermost safety net: anything escaping the app (a background task, the router) is one
    log line, and a 500 only when no response was started; uvicorn never logs a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last resort
            log.error("unhandled %s at %s: %s", type(exc).__name__, _where(exc), exc)
            if scope["type"] == "http" and not started:
                await PlainTextResponse("internal error", 500)(scope, receive, send)


def closing(reactions: Reactions) -> Callable[[Starlette], Any]:
    """The app's lifespan: the reactions still queued are given a few seconds at shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(reactions.close)

    return lifespan


# --- HTTP --------------------------------------------------------------------------------
def create_app(
    settings: Settings | None = None,
    *,
    service: IngestService | None = None,
    clock: Clock | None = None,
) -> Starlette:
    settings = settings or get_settings()
    if service is None:
        publisher = CeleryPublisher(settings)
        service = IngestService(
            settings, ingest_job_store(settings), publisher.enqueue, make_sink(settings),
            publisher.send_feedback,
        )  # fmt: skip
    svc = service
    secret = (
        settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    )
    signature = SlackSignature(secret, clock) if secret else None
    max_bytes, read_timeout = settings.ingest_max_body_bytes, settings.ingest_read_timeout_seconds
    reactions = Reactions(svc.react_queued)

    async def signed_body(request: Request) -> bytes:
        """The raw body, read only when its signature headers pass, and verified."""
        if signature is None:
            log.error("SLACK_SIGNING_SECRET is not set: refusing every Events API request")
            raise RequestRefused(401, "no signing secret configured", "invalid signature")
        check_declared_length(request.headers, max_bytes)  # 413 even for an unsigned one
        timestamp, claimed = signature.check_headers(request.headers)
        body = await read_body(request, max_bytes=max_bytes, timeout=read_timeout)
        signature.verify(timestamp, claimed, body)
        return body

    async def events(request: Request) -> Response:
        payload = parse_json(await signed_body(request))
        if not isinstance(payload, dict):
            raise RequestRefused(400, f"payload is {type(payload).__name__}, not an object")
        if payload.get("type") == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str):
                raise RequestRefused(400, "url_verification without a string challenge")
            return JSONResponse({"challenge": challenge})
        if payload.get("type") != "event_callback":
            return JSONResponse({"ok": True, "ignored": True})
        problem = event_callback_problem(payload)
        if problem:
            raise RequestRefused(400, f"malformed event_callback: {problem}")
        jobs = await run_in_threadpool(svc.handle_event_callback, payload)
        background = BackgroundTask(react_later, jobs) if jobs else None
        return JSONResponse({"ok": True, "jobs": [j.job_id for j in jobs]}, background=background)

    async def react_later(jobs: list[Job]) -> None:
        reactions.submit(jobs)  # after the response, on the event loop: no pool thread taken

    async def commands(request: Request) -> Response:
        form = parse_form(await signed_body(request), required=COMMAND_FIELDS)
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
            Route("/slack/events", guarded(events), methods=["POST"]),
            Route("/slack/commands", guarded(commands), methods=["POST"]),
            Route("/healthz", guarded(healthz), methods=["GET"]),
            Route("/readyz", guarded(readyz), methods=["GET"]),
        ],
        middleware=[Middleware(OneLineErrors)],
        lifespan=closing(reactions),
    )
    app.state.service = svc
    app.state.reactions = reactions
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
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("INGEST_WORKERS", "1") or 1),
        help="HTTP processes on the one port (INGEST_WORKERS): each has its own GIL and keeps "
        "up with about 250 events/s; one per core past that",
    )


def _configure_process(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    install_log_redaction(settings)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # no line per request


def _freeze_startup_objects() -> None:
    """Everything built so far (the Celery app, settings, pydantic schemas) lives as long as the
    process: out of the collector's sight, so a full collection under load scans only what
    requests make, and the ack path's tail does not carry its pauses."""
    gc.collect()
    gc.freeze()


def worker_app() -> Starlette:
    """The app of one ingest process among ``--workers`` (uvicorn imports and calls this in
    each): its own Redis and broker connections, reaction threads and log set-up."""
    settings = get_settings()
    _configure_process(settings)
    app = create_app(settings)
    _freeze_startup_objects()
    return app


def main(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    _configure_process(settings)
    workers = max(1, int(getattr(args, "workers", 1) or 1))
    app = create_app(settings) if workers == 1 else None
    socket_client = None
    if args.socket_mode == "on" or (args.socket_mode == "auto" and settings.slack_app_token):
        from services.socket_mode import start_socket_mode

        try:  # one Socket Mode connection, in this process, whatever the HTTP workers
            service = (app or create_app(settings)).state.service
            socket_client = start_socket_mode(settings, service)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    _freeze_startup_objects()
    try:
        # log_config=None: uvicorn's records go through the root handlers (and their redaction)
        if app is not None:
            uvicorn.run(app, host=args.host, port=args.port, log_level="warning", log_config=None)
        else:  # several processes on one socket: each event is served by one of them
            uvicorn.run(
                "services.ingest:worker_app", factory=True, workers=workers, host=args.host,
                port=args.port, log_level="warning", log_config=None,
            )  # fmt: skip
    finally:
        if socket_client is not None:
            socket_client.close()
    return 0
