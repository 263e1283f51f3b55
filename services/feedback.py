"""👍/👎 reactions on the bot's replies, as the ingest sees them (no mlflow, no litellm here).

Slack sends ``reaction_added`` events (scope ``reactions:read``, event subscription
``reaction_added``)::

    {"type": "reaction_added", "user": "U123", "reaction": "-1",
     "item": {"type": "message", "channel": "C1", "ts": "1700000000.000200"},
     "item_user": "UBOT", "event_ts": "..."}

``reaction_feedback`` keeps only thumbs up/down (any skin tone) on messages written by the bot
(``item_user`` = ``SLACK_BOT_USER_ID`` when that is set) and returns the kwargs of the
``technoshare.record_feedback`` task, which the ingest publishes by name; the worker turns it
into MLflow feedback on the trace of the job that reply belongs to (``tasks/feedback.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.constants import FEEDBACK_TASK
from pipeline.settings import Settings

THUMBS_UP = frozenset({"+1", "thumbsup"})
THUMBS_DOWN = frozenset({"-1", "thumbsdown"})

SendFeedback = Callable[[dict[str, Any]], None]


def reaction_feedback(event: dict[str, Any], bot_user_id: str | None) -> dict[str, Any] | None:
    """Task kwargs for a 👍/👎 on one of the bot's messages, else None."""
    if event.get("type") != "reaction_added":
        return None
    item = event.get("item") or {}
    if item.get("type") != "message" or not item.get("channel") or not item.get("ts"):
        return None
    if bot_user_id and event.get("item_user") and event["item_user"] != bot_user_id:
        return None  # a reaction on somebody else's message
    name = str(event.get("reaction") or "").split("::", 1)[0]  # "+1::skin-tone-3" -> "+1"
    if name in THUMBS_UP:
        positive = True
    elif name in THUMBS_DOWN:
        positive = False
    else:
        return None
    user = str(event.get("user") or "")
    if not user or user == bot_user_id:
        return None
    return {
        "channel": str(item["channel"]),
        "reply_ts": str(item["ts"]),
        "user": user,
        "positive": positive,
        "reaction": name,
    }


def celery_feedback_sender(settings: Settings) -> SendFeedback:
    """Publish ``technoshare.record_feedback`` by name (the task code is never imported here)."""
    from tasks.app import create_app

    client = create_app(settings)

    def send(kwargs: dict[str, Any]) -> None:
        client.send_task(FEEDBACK_TASK, kwargs=kwargs)

    return send
