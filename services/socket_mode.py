"""Socket Mode (``SLACK_APP_TOKEN``, no public URL): the same handlers as the HTTP endpoint.

Slack has already authenticated the WebSocket, so there is no request signature to verify;
each envelope is acknowledged first (Slack wants the ack within 3 s), then handled.
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
from services.ingest import IngestService

log = logging.getLogger("technoshare.socket_mode")


def handle_request(service: IngestService, client: Any, req: SocketModeRequest) -> None:
    """Listener for ``SocketModeClient.socket_mode_request_listeners``."""
    if req.type == "events_api":
        client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        payload = req.payload if isinstance(req.payload, dict) else {}
        if payload.get("type") == "event_callback":
            service.react_queued(service.handle_event_callback(payload))
    elif req.type == "slash_commands":
        payload = req.payload if isinstance(req.payload, dict) else {}
        answer = service.handle_command({k: str(v) for k, v in payload.items()})
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
