"""Slack rendering of the bot's answers in a conversation: a follow-up answer in one of its
threads, and the one-line help for a mention with nothing to act on.

Like ``pipeline.render``, every piece of source or model text goes through
``pipeline.sanitize``: mentions stripped, links outside the evidence dropped, ``& < >``
escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.followup import ArchivedJob, FollowupAnswer
from pipeline.models import Job, Outcome, SlackMessage
from pipeline.sanitize import allowed_url_keys, escape_text, sanitize_text, slack_link

EXTRACTIVE_ANSWER_NOTE = (
    "_Extractive answer made offline: the passages of the source that best match the "
    "question, quoted; no model wrote new text._"
)
HELP_TEXT = (
    "Hi! I read the tech links shared here (papers, repos, posts) and reply in the thread with a "
    "TL;DR, a summary, what it means for our themes and similar tech. Share a link, or use "
    "`/technoshare <link>`; mention me in one of my threads to ask about that link."
)


def _context(parts: list[str]) -> dict[str, object]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(parts)}]}


def render_followup(
    job: Job, answer: FollowupAnswer, archives: Sequence[ArchivedJob]
) -> SlackMessage:
    """The answer, in the question's thread, with the sources it used and how it was made."""
    allowed: set[str] = set()
    for a in archives:
        allowed |= allowed_url_keys(a.evidence(), answer.question)
    body = sanitize_text(answer.text, allowed)
    titles = {p.job_id: p.title for p in answer.cited}
    if not titles and len(archives) == 1:
        titles = {archives[0].job.job_id: archives[0].title}
    by_job = {a.job.job_id: a.job for a in archives}
    sources = [
        slack_link(by_job[j].url, t) if j in by_job else escape_text(t) for j, t in titles.items()
    ]
    blocks: list[dict[str, object]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": body}}
    ]
    if answer.extractive:
        blocks.append(_context([EXTRACTIVE_ANSWER_NOTE]))
    parts = [f"From: {', '.join(sources)}"] if sources else []
    parts.append(f"Follow-up `{escape_text(job.job_id)}`")
    blocks.append(_context(parts))
    text = body if len(body) < 3000 else body[:2999] + "…"
    return SlackMessage(
        channel=job.channel_id, thread_ts=job.reply_thread_ts or None, text=text, blocks=blocks,
        outcome=Outcome.success,
    )  # fmt: skip


def render_help(channel: str, thread_ts: str | None) -> SlackMessage:
    return SlackMessage(
        channel=channel,
        thread_ts=thread_ts or None,
        text=HELP_TEXT,
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": HELP_TEXT}}],
    )
