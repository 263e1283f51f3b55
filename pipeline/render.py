"""Slack rendering: models -> a Block Kit reply (and its plain-text fallback).

Every piece of model or source text goes through :mod:`pipeline.sanitize` (mentions stripped,
foreign links dropped, ``& < >`` escaped); only links we build ourselves use Slack's
``<url|label>`` syntax. Long sections are split so no section text exceeds
``slack_max_section_chars`` and the reply never exceeds ``slack_max_blocks``.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.models import (
    Commentary,
    Coverage,
    Evidence,
    Facts,
    GateReport,
    Job,
    Outcome,
    ReadKind,
    SlackMessage,
)
from pipeline.sanitize import (
    allowed_url_keys,
    escape_text,
    sanitize_text,
    slack_link,
    strip_mentions,
    url_key,
)
from pipeline.settings import Settings, get_settings

TEXT_FALLBACK_MAX = 39_000  # Slack truncates message text at 40,000 characters
TITLE_MAX = 200
EXTRACTIVE_NOTE = (
    "_Extractive summary made offline: every sentence was selected from the source; "
    "no model wrote new text._"
)
READ_LABELS = {
    ReadKind.full_text: "full text",
    ReadKind.abstract: "abstract",
    ReadKind.readme: "README",
    ReadKind.metadata_only: "metadata only",
}
# Plain words for each gate, for the gate_failed note. Gate details are NOT shown: they may
# quote the very URLs or mentions the gates rejected.
GATE_PLAIN_WORDS = {
    "schema": "the answer did not have the expected structure",
    "tldr": "the TL;DR was not exactly three one-sentence points",
    "summary_length": "the summary's length did not fit what could be read",
    "projects": "the notes for our themes were missing or not tied to a known theme",
    "citations": "some facts did not cite the source text",
    "urls": "it contained links that are in neither the source nor the message",
    "mentions": "it tried to mention people or channels",
    "similar_tech": "it listed similar technologies the source does not name, or too many",
    "slack_limits": "it was too long for one Slack message",
}


# --- small builders ---------------------------------------------------------------------------
def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(parts: list[str]) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": p} for p in parts[:10]]}


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    """The mrkdwn text of every section block (what the per-section limit applies to)."""
    return [b["text"]["text"] for b in blocks if b.get("type") == "section" and "text" in b]


def _md_bold_to_slack(text: str) -> str:
    """Models write Markdown ``**bold**``; Slack mrkdwn bold is ``*bold*``."""
    return re.sub(r"\*\*(\S(?:[^*]*?\S)?)\*\*", r"*\1*", text)


def _hard_split(text: str, limit: int) -> list[str]:
    """Cut a too-long piece at whitespace (or anywhere, if it has none)."""
    out = []
    while len(text) > limit:
        cut = text.rfind(" ", 0, limit)
        cut = cut if cut > limit // 2 else limit
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return [*out, text] if text else out


def _sections(heading: str, pieces: list[str], sep: str, limit: int) -> list[dict[str, Any]]:
    """One or more sections: ``heading`` then the pieces, packed greedily under ``limit``."""
    chunks: list[str] = []
    current = heading
    cont = f"{heading} (cont.)"
    for piece in (p for raw in pieces for p in _hard_split(raw, limit - len(cont) - 1)):
        candidate = current + (sep if current != heading else "\n") + piece
        if len(candidate) > limit and current != heading:
            chunks.append(current)
            current = f"{cont}\n{piece}"
        else:
            current = candidate
    chunks.append(current)
    return [_section(c) for c in chunks]


def _title(evidence: Evidence | None, facts: Facts | None, job: Job) -> str:
    title = (evidence.title if evidence else None) or (facts.title if facts else None)
    title = " ".join(strip_mentions(title or job.canonical_url or job.url).split())
    return title[: TITLE_MAX - 1] + "…" if len(title) > TITLE_MAX else title


def _read_label(evidence: Evidence) -> str:
    read = READ_LABELS.get(evidence.read, evidence.read.value)
    label = f"Read: {read} (coverage {evidence.coverage.value})"
    if evidence.coverage != Coverage.full and evidence.coverage_reason:
        label += f": {escape_text(strip_mentions(evidence.coverage_reason))}"
    return label


def _prompt_labels(names: str, versions: str) -> list[str]:
    """``"a,b"`` + ``"file:1,file:2"`` (one stage's templates) -> ``["a@file:1", "b@file:2"]``."""
    if not names:
        return []
    name_list, version_list = names.split(","), versions.split(",")
    if len(name_list) != len(version_list):
        return [f"{names}@{versions}"]
    return [f"{n.strip()}@{v.strip()}" for n, v in zip(name_list, version_list, strict=True)]


def _context_parts(
    job: Job, evidence: Evidence | None, facts: Facts | None, commentary: Commentary | None
) -> list[str]:
    parts = []
    if evidence is not None:
        url = evidence.canonical_url or evidence.url
        parts.append("Source: " + slack_link(url, _title(evidence, facts, job)))
        parts.append(_read_label(evidence))
    usages = [
        u for u in (facts.usage if facts else None, commentary.usage if commentary else None) if u
    ]
    models = sorted({u.model for u in usages if u.model})
    if models:
        parts.append("Model: " + escape_text(", ".join(models)))
    prompts = [p for u in usages for p in _prompt_labels(u.prompt_name, u.prompt_version)]
    if prompts:
        parts.append("Prompts: " + escape_text(", ".join(prompts)))
    parts.append(f"Job: `{escape_text(job.job_id)}`")
    return parts


def _bullets(items: list[str], allowed: set[str]) -> list[str]:
    return [f"• {_md_bold_to_slack(sanitize_text(i, allowed))}" for i in items]


def _similar_lines(commentary: Commentary, allowed: set[str]) -> list[str]:
    lines = []
    for tech in commentary.similar_tech:
        if tech.url and url_key(tech.url) in allowed:  # links kept only when allowed
            label = slack_link(tech.url, " ".join(strip_mentions(tech.name).split()))
        else:
            label = f"*{sanitize_text(tech.name, allowed)}*"
        note = sanitize_text(tech.note, allowed)
        lines.append(f"• {label}" + (f" — {note}" if note else ""))
    return lines


def shared_before_lines(commentary: Commentary, job: Job) -> list[str]:
    """ "Shared before: <thread|title> (N days ago)" for each close earlier link of the channel
    (from the team's history, so the thread link is one the bot itself was given by Slack)."""
    from pipeline.history import days_ago

    lines = []
    for item in commentary.shared_before:
        title = " ".join(strip_mentions(item.title).split()) or item.url
        label = slack_link(item.permalink, title) if item.permalink else f"*{escape_text(title)}*"
        lines.append(f"• Shared before: {label} ({days_ago(item.shared_at, job.created_at)})")
    return lines


# --- the three replies ------------------------------------------------------------------------
def commentary_blocks(
    job: Job,
    evidence: Evidence,
    facts: Facts,
    commentary: Commentary,
    report: GateReport,
    settings: Settings,
) -> list[dict[str, Any]]:
    """All blocks of the commentary reply, before the block-count cap (the gates check this)."""
    limit = settings.slack_max_section_chars
    allowed = allowed_url_keys(evidence, job.message_text, facts)
    summary = _md_bold_to_slack(sanitize_text(commentary.summary, allowed))
    from pipeline.text import split_sentences  # the retrieval module's splitter

    blocks = [_section(f"*{escape_text(_title(evidence, facts, job))}*")]
    blocks += _sections("*TL;DR*", _bullets(commentary.tldr, allowed), "\n", limit)
    blocks += _sections("*Summary*", split_sentences(summary) or [summary], " ", limit)
    blocks += _sections("*For our themes*", _bullets(commentary.projects, allowed), "\n", limit)
    similar = _similar_lines(commentary, allowed) + shared_before_lines(commentary, job)
    similar = similar or ["_none identified_"]
    blocks += _sections("*Similar tech*", similar, "\n", limit)
    parts = _context_parts(job, evidence, facts, commentary)
    if commentary.extractive:
        blocks.append(_context([EXTRACTIVE_NOTE]))
    blocks.append(_context(parts))
    return blocks


def _cap_blocks(blocks: list[dict[str, Any]], max_blocks: int) -> list[dict[str, Any]]:
    """Keep the title, as many body blocks as fit, a 'shortened' note and the context line."""
    if len(blocks) <= max_blocks:
        return blocks
    tail = [b for b in blocks[-2:] if b["type"] == "context"]
    body = blocks[: max_blocks - len(tail) - 1]
    return [*body, _context(["_Reply shortened to fit Slack's limits._"]), *tail]


def _fallback_text(blocks: list[dict[str, Any]]) -> str:
    """Readable plain text of the blocks (Slack's notification/screen-reader fallback)."""
    lines = []
    for block in blocks:
        if block["type"] == "section":
            lines.append(block["text"]["text"])
        elif block["type"] == "context":
            lines.append(" · ".join(e["text"] for e in block["elements"]))
    text = "\n\n".join(lines)
    return text if len(text) <= TEXT_FALLBACK_MAX else text[: TEXT_FALLBACK_MAX - 1] + "…"


def _message(job: Job, blocks: list[dict[str, Any]], outcome: Outcome) -> SlackMessage:
    return SlackMessage(
        channel=job.channel_id,
        thread_ts=job.reply_thread_ts or None,
        text=_fallback_text(blocks),
        blocks=blocks,
        outcome=outcome,
    )


def render_commentary(
    job: Job,
    evidence: Evidence,
    facts: Facts,
    commentary: Commentary,
    report: GateReport,
    settings: Settings | None = None,
) -> SlackMessage:
    settings = settings or get_settings()
    blocks = commentary_blocks(job, evidence, facts, commentary, report, settings)
    return _message(job, _cap_blocks(blocks, settings.slack_max_blocks), Outcome.success)


def render_gate_failed(job: Job, evidence: Evidence | None, report: GateReport) -> SlackMessage:
    """A short honest note: what was read, and in plain words what could not be said."""
    reasons = [
        GATE_PLAIN_WORDS.get(r.name, f"the check '{r.name}' failed") for r in report.failures
    ]
    body = (
        "I read this link but could not write a commentary that passes my quality checks"
        + (" even after one repair attempt" if report.repaired else "")
        + ", so I am not posting one."
    )
    if reasons:
        body += "\nWhat went wrong: " + escape_text("; ".join(reasons)) + "."
    blocks = [_section(f"*{escape_text(_title(evidence, None, job))}*"), _section(body)]
    blocks.append(_context(_context_parts(job, evidence, None, None)))
    return _message(job, blocks, Outcome.gate_failed)


def render_error(job: Job, reason: str) -> SlackMessage:
    """A short failure note. ``reason`` must be an error's ``user_message`` (safe to show)."""
    reason = escape_text(" ".join(strip_mentions(reason).split())) or "Something went wrong."
    blocks = [
        _section(f"Sorry, I could not comment on {slack_link(job.url)}: {reason}"),
        _context([f"Job: `{escape_text(job.job_id)}`"]),
    ]
    return _message(job, blocks, Outcome.error)
