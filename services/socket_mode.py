"""Socket Mode (``SLACK_APP_TOKEN``, no public URL): the same handlers as the HTTP endpoint.

Slack has already authenticated the WebSocket, so there is no request signature to verify;
each envelope is acknowledged first (Slack wants the ack within 3 s), then handled. Slack does
not redeliver an acknowledged envelope, so a handling failure (Redis down past the retry
budget, a malformed payload) is logged in one line and the envelope is dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from pipeline.errors import ConfigError
from pipeline.settings import Settings
from services.slack_events import IngestService, RedisUnavailable, event_callback_problem

log = logging.getLogger("technoshare.socket_mode")


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
    client = SocketModeClient(
        app_token=settings.slack_app_token.get_secret_value(),
        web_client=WebClient(token=token, base_url=settings.slack_api_url),
    )
    client.socket_mode_request_listeners.append(
        lambda c, req: handle_request(service, c, req)  # type: ignore[arg-type, misc]
    )
    client.connect()
    log.info("Socket Mode connected")
    return client
