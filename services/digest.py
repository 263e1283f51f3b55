"""The weekly digest: a channel's links of the last N days, grouped by the team's themes, one
line each (title linked to the bot's thread, the first TL;DR item).

    technoshare digest --channel C123 [--days 7] [--post]

prints it (``--post``: posts it too, where the weekly beat task would). The beat task
(``technoshare.weekly_digest``, Mondays 07:00 UTC) runs only with ``DIGEST_ENABLED=true``, for
each of ``DIGEST_CHANNELS``, posting to the channel itself or, with ``DIGEST_POST_TO=ops``, to
``SLACK_OPS_CHANNEL``; once per channel per day, whatever the redeliveries. Read from the
team's history (``services.history_store``): links whose commentary was posted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pipeline.history import GENERAL_THEME, HistoryEntry
from pipeline.models import SlackMessage
from pipeline.sanitize import escape_text, slack_link, strip_mentions
from pipeline.settings import Settings
from services.history_store import RedisHistory, since_days

SECTION_MAX_CHARS = 2900  # under Slack's 3000 per section
MAX_BLOCKS = 48


def _line(entry: HistoryEntry) -> str:
    title = " ".join(strip_mentions(entry.title).split()) or entry.url
    label = slack_link(entry.permalink or entry.url, title)
    tldr = " ".join(strip_mentions(entry.tldr).split())
    return f"• {label}" + (f" — {escape_text(tldr)}" if tldr else "")


def grouped(
    entries: Sequence[HistoryEntry], themes: Sequence[str]
) -> list[tuple[str, list[HistoryEntry]]]:
    """(theme, entries) in the team context's order, then any other theme, General last; an
    entry with several themes is listed under its first."""
    groups: dict[str, list[HistoryEntry]] = {}
    for entry in sorted(entries, key=lambda e: e.shared_at):
        groups.setdefault((entry.themes or [GENERAL_THEME])[0], []).append(entry)
    order = [t for t in themes if t in groups]
    order += sorted(t for t in groups if t not in order and t != GENERAL_THEME)
    order += [GENERAL_THEME] if GENERAL_THEME in groups else []
    return [(t, groups[t]) for t in order]


def digest_message(
    channel: str, target: str, entries: Sequence[HistoryEntry], themes: Sequence[str], days: int
) -> SlackMessage:
    head = f"*This {'week' if days == 7 else f'{days} days'} in <#{channel}>*: {len(entries)} links"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": head}}]
    lines_text = [head]
    for theme, items in grouped(entries, themes):
        text = f"*{escape_text(theme)}*"
        for entry in items:
            line = _line(entry)
            if len(text) + len(line) + 1 > SECTION_MAX_CHARS:
                blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
                text = ""
            text = f"{text}\n{line}" if text else line
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        lines_text.append(text)
    if len(blocks) > MAX_BLOCKS:
        blocks = blocks[: MAX_BLOCKS - 1]
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "_Cut to fit Slack's limits._"}]})  # fmt: skip
    return SlackMessage(channel=target, text="\n\n".join(lines_text)[:39_000], blocks=blocks)


def channel_digest(
    settings: Settings, history: RedisHistory, channel: str, days: int
) -> SlackMessage | None:
    from pipeline.context import load_project_context

    entries = history.entries(channel, since=since_days(days))
    if not entries:
        return None
    target = channel
    if settings.digest_post_to == "ops" and settings.slack_ops_channel:
        target = settings.slack_ops_channel
    themes = load_project_context(settings=settings).theme_names()
    return digest_message(channel, target, entries, themes, days)


def post_digests(
    settings: Settings, history: RedisHistory, sink: Any, store: Any, *, days: int
) -> int:
    """Post each configured channel's digest once today; returns how many were posted."""
    posted = 0
    for channel in settings.digest_channels:
        message = channel_digest(settings, history, channel, days)
        if message is None or not store.claim_alert(f"digest:{channel}"):
            continue  # nothing shared, or today's digest was posted already
        sink.post(message)
        posted += 1
    return posted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channel", required=True, help="the Slack channel id (C...)")
    parser.add_argument("--days", type=int, default=7, help="how far back (default 7)")
    parser.add_argument("--post", action="store_true", help="post it as the weekly task would")


def main(args: argparse.Namespace) -> int:
    from pipeline.settings import get_settings

    settings = get_settings()
    history = RedisHistory.from_settings(settings)
    message = channel_digest(settings, history, args.channel, args.days)
    if message is None:
        print(f"no links answered in {args.channel} in the last {args.days} days", file=sys.stderr)
        return 0
    print(message.text)
    if args.post:
        from services.slack_client import make_sink

        make_sink(settings).post(message)
        print(f"posted to {message.channel} at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    return 0
