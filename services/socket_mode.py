"""Socket Mode (``SLACK_APP_TOKEN``, no public URL): the same handlers as the HTTP endpoint.

Slack has already authenticated the WebSocket, so there is no request signature to verify;
each envelope is acknowledged first (Slack wants the ack within 3 s), then handled. Slack does
not redeliver an acknowledged envelope, so a handling failure (Redis down past the retry
budget, a malformed payload) is logged in one line and the envelope is dropped.
"""

from __future__ import annotations

import errno
import logging
import select
import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from pipeline.errors import ConfigError
from pipeline.settings import Settings
from services.slack_events import IngestService, RedisUnavailable, event_callback_problem

log = logging.getLogger("technoshare.socket_mode")


class _Socket:
    """The WebSocket's socket as slack_sdk's built-in client reads it, with two fixes.

    - End of stream raises. The client takes ``recv() == b""`` (the peer closed the TCP
      connection without a close frame: a load balancer restart, a network cut) for "no data
      yet": it spins on the dead socket and reconnects only after 5 failed pings, about 30 s,
      while Slack holds the events. An ``OSError`` makes it drop the connection at once, and
      its monitor reconnects within ``ping_interval`` (5 s).
    - A replaced connection stops reading at once (``retiring``). On a ``disconnect`` envelope
      the client opens the new connection, then closes the old one under the old one's receive
      lock, held by a ``recv`` blocked up to its 3 s timeout: envelopes already waiting on the
      new connection were acked after more than Slack's 3 s.
    """

    SLICE = 0.1  # seconds: how soon a blocked read notices ``retiring``

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.retiring = False

    def _readable(self) -> bool:
        pending = getattr(self._sock, "pending", None)  # TLS: bytes decrypted, not yet read
        return bool(pending and pending()) or bool(
            select.select([self._sock], [], [], self.SLICE)[0]
        )

    def recv(self, size: int, *args: Any) -> bytes:
        timeout = self._sock.gettimeout()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._readable():
            if self.retiring or (deadline is not None and time.monotonic() >= deadline):
                raise TimeoutError("timed out")  # what the client expects of an idle socket
        data: bytes = self._sock.recv(size, *args)
        if not data and size > 0:
            raise ConnectionAbortedError(
                errno.ECONNABORTED, "Socket Mode peer closed the connection"
            )
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _SocketModeClient(SocketModeClient):
    def connect(self) -> None:
        old = self.current_session
        if old is not None and isinstance(old.sock, _Socket):
            old.sock.retiring = True
        super().connect()
        session = self.current_session
        if session is not None and session.sock is not None:
            session.sock = _Socket(session.sock)  # type: ignore[assignment]


def handle_request(service: IngestService, client: Any, req: SocketModeRequest) -> None:
    """Listener for ``SocketModeClient.socket_mode_request_listeners``: never raises (the SDK
    would log a traceback per envelope)."""
    try:
        _handle(service, client, req)
    except RedisUnavailable as exc:
        log.error(
            "Socket Mode %s %s dropped, Redis unreachable: %s", req.type, req.envelope_id, exc
        )
    except Exception as exc:  # noqa: BLE001 - last resort: one line, the next envelope goes on
        log.error("Socket Mode %s %s failed: %s: %s", req.type, req.envelope_id,
                  type(exc).__name__, exc)  # fmt: skip


def _handle(service: IngestService, client: Any, req: SocketModeRequest) -> None:
    payload = req.payload if isinstance(req.payload, dict) else {}
    if req.type == "events_api":
        client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        if payload.get("type") != "event_callback":
            return
        problem = event_callback_problem(payload)
        if problem:
            log.warning("Socket Mode event %s ignored: %s", req.envelope_id, problem)
            return
        service.react_queued(service.handle_event_callback(payload))
    elif req.type == "slash_commands":
        form = {k: v for k, v in payload.items() if isinstance(k, str) and isinstance(v, str)}
        try:
            answer = service.handle_command(form)
        except RedisUnavailable as exc:  # Slack shows this to the user instead of a timeout
            log.error("Socket Mode command %s not queued: %s", req.envelope_id, exc)
            answer = {"response_type": "ephemeral", "text": "Busy: please try again shortly."}
        client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload=answer)
        )
    else:  # interactive, hello, ...: acknowledge and ignore
        client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


def start_socket_mode(settings: Settings, service: IngestService) -> SocketModeClient:
    if not settings.slack_app_token:
        raise ConfigError("Socket Mode needs SLACK_APP_TOKEN (xapp-..., connections:write)")
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    client = _SocketModeClient(
        app_token=settings.slack_app_token.get_secret_value(),
        web_client=WebClient(token=token, base_url=settings.slack_api_url),
    )
    client.socket_mode_request_listeners.append(
        lambda c, req: handle_request(service, c, req)  # type: ignore[arg-type, misc]
    )
    client.connect()
    log.info("Socket Mode connected")
    return client
