"""The team's history: links answered before, found again when a new link is close in content.

    remember:  a posted job -> HistoryEntry (title, link, thread permalink, themes, the text its
               facts and TL;DR say)             -> the store (``services.history_store``)
    related:   a new job's title + facts + TL;DR -> TF-IDF cosine with the channel's entries
               -> "Shared before: <thread|title> (N days ago)"

Everything shown comes from an entry the bot stored itself when it answered that link: nothing
is a model's memory. Pure functions; the store behind the ``History`` protocol
(``pipeline.deps``) is Redis for the workers and nothing for in-process runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from pipeline.models import (
    Commentary,
    Evidence,
    Facts,
    Job,
    JobCarry,
    Outcome,
    SharedBefore,
    utcnow,
)
from pipeline.ranking import TermWeights, Vocabulary, tfidf_ranked
from pipeline.text import content_tokens

# An entry is "close" at this TF-IDF cosine or more. Measured on the recorded corpus (its 11
# repos and 14 papers shared one after another in one channel, offline model:
# tests/unit/pipeline/test_history.py): NumPy -> SciPy 0.25, redis-py -> fakeredis 0.18, two
# theory papers read from their abstracts 0.18; every other pair 0.144 or less (fastapi ->
# httpx 0.136, llm -> llama.cpp 0.127).
MIN_RELATED_SCORE = 0.15
MAX_SHARED_BEFORE = 3
ENTRY_TEXT_CHARS = 2000  # the title and first facts say what a link is about; keeps an entry ~2 KB
_THEME = re.compile(r"^\s*\*\*(.+?)\*\*")
GENERAL_THEME = "General"


class HistoryEntry(BaseModel):
    """One answered link, as the history keeps it (JSON in the store)."""

    job_id: str
    channel_id: str
    url: str
    canonical_url: str
    title: str
    permalink: str | None = None
    shared_at: datetime = Field(default_factory=utcnow)
    themes: list[str] = Field(default_factory=list)
    tldr: str = ""  # the first TL;DR item (the weekly digest's line)
    text: str = ""  # what retrieval matches: the title, the facts, the TL;DR, the tags


def themes_of(commentary: Commentary) -> list[str]:
    """The team themes a commentary's "For our themes" bullets name (``**Theme** — ...``)."""
    names = []
    for bullet in commentary.projects:
        match = _THEME.match(bullet)
        if match and match.group(1).strip() not in names:
            names.append(match.group(1).strip())
    return names or [GENERAL_THEME]


def title_of(job: Job, evidence: Evidence | None, facts: Facts | None) -> str:
    title = (facts.title if facts else None) or (evidence.title if evidence else None)
    return " ".join((title or job.canonical_url).split())[:200]


def entry_for(
    job: Job,
    evidence: Evidence,
    facts: Facts,
    commentary: Commentary,
    permalink: str | None,
    shared_at: datetime | None = None,
) -> HistoryEntry:
    title = title_of(job, evidence, facts)
    return HistoryEntry(
        job_id=job.job_id,
        channel_id=job.channel_id,
        url=job.url,
        canonical_url=job.canonical_url,
        title=title,
        permalink=permalink,
        shared_at=shared_at or utcnow(),
        themes=themes_of(commentary),
        tldr=commentary.tldr[0] if commentary.tldr else "",
        text=entry_text(title, facts, commentary),
    )


def entry_text(title: str, facts: Facts, commentary: Commentary | None) -> str:
    """What retrieval matches for one link: its title, facts, TL;DR and tags."""
    parts = [title, *(f.text for f in facts.key_facts)]
    if commentary is not None:
        parts += [*commentary.tldr, *commentary.tags]
    return " ".join(parts)[:ENTRY_TEXT_CHARS]


def related(
    job: Job,
    evidence: Evidence,
    facts: Facts,
    commentary: Commentary | None,
    entries: Sequence[HistoryEntry],
    *,
    limit: int = MAX_SHARED_BEFORE,
    min_score: float = MIN_RELATED_SCORE,
    weights: Sequence[TermWeights] | None = None,
    vocabulary: Vocabulary | None = None,
) -> list[SharedBefore]:
    """The entries closest to this job, best first; never the same link or the same job. The
    job is described the way its own entry will be (title, facts, TL;DR, tags). ``weights``:
    each entry's terms weighed with ``vocabulary``, when the caller kept them."""
    if weights is None or vocabulary is None:
        vocabulary = Vocabulary()
        weights = [vocabulary.weigh(content_tokens(e.text)) for e in entries]
    kept = [
        (e, w)
        for e, w in zip(entries, weights, strict=True)
        if e.canonical_url != job.canonical_url and e.job_id != job.job_id
    ]
    if not kept:
        return []
    others = [e for e, _ in kept]
    query = content_tokens(entry_text(title_of(job, evidence, facts), facts, commentary))
    ranked = tfidf_ranked(query, [w for _, w in kept], vocabulary, min_score=min_score)
    found = []
    for i, score in ranked[:limit]:
        e = others[i]
        found.append(
            SharedBefore(
                job_id=e.job_id,
                title=e.title,
                url=e.url,
                permalink=e.permalink,
                shared_at=e.shared_at,
                score=round(score, 3),
            )
        )
    return found


def days_ago(then: datetime, now: datetime) -> str:
    days = max(0, (now - then).days)
    return "today" if days == 0 else ("yesterday" if days == 1 else f"{days} days ago")


class MemoryHistory:
    """The ``History`` protocol in memory (tests, a whole-corpus measure): the same entries and
    the same ranking as the Redis store, no expiry."""

    def __init__(self, entries: Sequence[HistoryEntry] = ()) -> None:
        self.entries: list[HistoryEntry] = list(entries)

    def related(self, carry: JobCarry) -> list[SharedBefore]:
        if carry.evidence is None or carry.facts is None:
            return []
        channel = [e for e in self.entries if e.channel_id == carry.job.channel_id]
        return related(carry.job, carry.evidence, carry.facts, carry.commentary, channel)

    def remember(self, carry: JobCarry, reply_ts: str) -> None:
        review = carry.review
        if carry.evidence is None or carry.facts is None or review is None:
            return
        if review.message.outcome != Outcome.success:
            return
        entry = entry_for(carry.job, carry.evidence, carry.facts, review.commentary, None)
        self.entries = [e for e in self.entries if e.job_id != entry.job_id] + [entry]
