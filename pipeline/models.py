"""Pydantic models for every stage boundary.

    Job -> Evidence -> Facts -> Commentary -> GateReport -> SlackMessage

Each stage is a pure function from one model to the next; the Celery tasks pass these
models between workers as JSON (``model_dump(mode="json")`` / ``model_validate``), so every
field must round-trip through JSON.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the job ---------------------------------------------------------------------------------
class JobKind(StrEnum):
    link = "link"  # a shared link: the stage chain, a commentary
    followup = "followup"  # a question in the thread of one of the bot's replies
    help = "help"  # a mention with nothing to act on: the one-line help


class Job(_Model):
    """One link from one Slack message: the unit of work (or, for ``kind`` followup/help, one
    mention of the bot to answer; ``url`` is then the link the thread is about, if any)."""

    job_id: str
    channel_id: str = "local"
    message_ts: str = ""
    thread_ts: str | None = None  # where to reply; the message ts when the message is top level
    user_id: str | None = None
    message_text: str = ""
    url: str
    canonical_url: str
    created_at: datetime = Field(default_factory=utcnow)
    kind: JobKind = JobKind.link

    @property
    def reply_thread_ts(self) -> str:
        return self.thread_ts or self.message_ts

    @staticmethod
    def make_id(channel_id: str, message_ts: str, canonical_url: str) -> str:
        """Deterministic id: the same link in the same message is the same job (dedupe)."""
        raw = f"{channel_id}|{message_ts}|{canonical_url}".encode()
        return hashlib.sha256(raw).hexdigest()[:16]


# --- evidence --------------------------------------------------------------------------------
class ReadKind(StrEnum):
    """What the adapter actually read: it bounds how much may be said."""

    full_text = "full_text"
    abstract = "abstract"
    readme = "readme"
    metadata_only = "metadata_only"


class Coverage(StrEnum):
    full = "full"
    partial = "partial"
    metadata_only = "metadata_only"
    failed = "failed"


class Source(_Model):
    url: str
    title: str | None = None
    authors: list[str] = Field(default_factory=list)
    published: str | None = None  # ISO 8601 date or datetime as given by the source
    updated: str | None = None
    site_name: str | None = None
    language: str | None = None
    kind: str = "page"  # page | paper | repository | pdf
    metadata: dict[str, Any] = Field(default_factory=dict)  # stars, categories, licence, ...


class Snippet(_Model):
    """A numbered passage of source text. Facts cite snippets by ``id`` (``S1``, ``S2``...)."""

    id: str
    text: str
    source_index: int = 0
    section: str | None = None


class SimilarCandidate(_Model):
    """A project the source itself names next to the thing it describes: an alternative, a
    comparison, an inspiration, a baseline. ``name`` appears verbatim in snippet ``snippet_id``;
    ``url`` is a link written right next to the name in that snippet, when there is one."""

    name: str
    snippet_id: str
    relation: str = "related"  # alternative | compared against | inspired by | based on | related
    url: str | None = None


class Evidence(_Model):
    url: str
    canonical_url: str
    adapter: str  # e.g. ArxivAdapter, GitHubAdapter, WebPageAdapter, PdfAdapter
    sources: list[Source] = Field(default_factory=list)
    snippets: list[Snippet] = Field(default_factory=list)
    read: ReadKind = ReadKind.metadata_only
    coverage: Coverage = Coverage.failed
    coverage_reason: str | None = None  # why coverage is not full (truncated, abstract only...)
    language: str | None = None
    truncated: bool = False
    char_count: int = 0
    fetched_at: datetime = Field(default_factory=utcnow)
    # Similar tech named by the source (``pipeline.similar``). None: the adapter did not look
    # (Stage B then finds them in the snippets); []: it looked and the source names none.
    similar_candidates: list[SimilarCandidate] | None = None
    cache_hit: bool = False  # reused from an earlier job's reading of the same link
    # distinct citable sentences (``pipeline.gates.citable_sentence_count``), counted once by
    # fetch_evidence on the io worker so the llm stages do not redo it; None: count on demand
    citable_sentences: int | None = None

    @property
    def title(self) -> str | None:
        return self.sources[0].title if self.sources else None

    def snippet_ids(self) -> set[str]:
        return {s.id for s in self.snippets}

    def text(self) -> str:
        return "\n".join(s.text for s in self.snippets)


# --- LLM accounting --------------------------------------------------------------------------
class LLMCall(_Model):
    """One model call, as recorded for spans and metrics."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_seconds: float = 0.0
    attempt: int = 1  # 2 = the re-ask after invalid output
    purpose: str = "answer"  # answer | reask | repair | tool


class StageUsage(_Model):
    model: str = ""
    prompt_name: str = ""
    prompt_version: str = ""  # "file:<hash>" when loaded from the file, else the registry version
    calls: list[LLMCall] = Field(default_factory=list)

    @property
    def input_tokens(self) -> int:
        return sum(c.input_tokens for c in self.calls)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for c in self.calls)

    @property
    def cost_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls)


# --- stage A: facts --------------------------------------------------------------------------
class Fact(_Model):
    text: str
    snippet_ids: list[str] = Field(min_length=1)


class Facts(_Model):
    title: str | None = None
    key_facts: list[Fact] = Field(default_factory=list)
    unknowns: list[str] = Field(default_factory=list)
    coverage_assessment: str = ""
    tool_calls: int = 0
    fetched_urls: list[str] = Field(default_factory=list)  # URLs read through the fetch_url tool
    # Text read through the fetch_url tool, numbered after the evidence's snippets (S7, S8...):
    # facts may cite these ids too, so citation checks use evidence ids + these ids.
    fetched_snippets: list[Snippet] = Field(default_factory=list)
    usage: StageUsage = Field(default_factory=StageUsage)


# --- stage B: commentary ---------------------------------------------------------------------
class SimilarTech(_Model):
    name: str
    note: str = ""
    url: str | None = None


class SharedBefore(_Model):
    """An earlier link answered in this channel whose content is close to this one (the
    team's history, ``pipeline.history``): shown as "Shared before", never written by a model."""

    job_id: str
    title: str
    url: str  # the link shared then
    permalink: str | None = None  # the bot's reply thread, when Slack gave one
    shared_at: datetime
    score: float = 0.0  # BM25, as a fraction of a perfect match


class Commentary(_Model):
    tldr: list[str]
    summary: str
    projects: list[str]  # bullets "**Theme** — ..." ("**General** — ..." when no theme fits)
    similar_tech: list[SimilarTech] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    extractive: bool = False  # True when written by the offline extractive model
    # filled by the stage from the team's history after the model answered (never by a model)
    shared_before: list[SharedBefore] = Field(default_factory=list)
    usage: StageUsage = Field(default_factory=StageUsage)

    @field_validator("tags")
    @classmethod
    def _lower_tags(cls, v: list[str]) -> list[str]:
        return [t.strip().lower() for t in v if t.strip()]


# --- gates -----------------------------------------------------------------------------------
class GateResult(_Model):
    name: str
    passed: bool
    detail: str = ""


class GateReport(_Model):
    results: list[GateResult] = Field(default_factory=list)
    repaired: bool = False  # True when Stage B was re-run once with the failures fed back

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]


# --- slack -----------------------------------------------------------------------------------
class Outcome(StrEnum):
    success = "success"
    gate_failed = "gate_failed"
    error = "error"
    duplicate = "duplicate"


class SlackMessage(_Model):
    channel: str
    thread_ts: str | None = None
    text: str  # plain-text fallback (notifications, screen readers)
    blocks: list[dict[str, Any]] = Field(default_factory=list)
    outcome: Outcome = Outcome.success


class Review(_Model):
    """What the quality gates decided: the final commentary (repaired once when the draft
    failed), the gate report and the reply to post (the commentary, or the honest short note)."""

    commentary: Commentary
    report: GateReport
    message: SlackMessage
    usage: StageUsage = Field(default_factory=StageUsage)  # the repair's own calls only


class PostedReply(_Model):
    """The reply as posted: its Slack ts ("" when the sink keeps no ts) and the message."""

    ts: str
    message: SlackMessage


class JobCarry(_Model):
    """What travels from one stage to the next (the Celery chain's argument, the in-process
    runner's state): the job, its attempt, and each stage's output once it ran. The stage table
    (``pipeline.stages.STAGES``) names the field each stage fills."""

    job: Job
    attempt: int = 1
    # once the daily LLM budget is spent, the job's remaining LLM stages use the offline model
    budget_offline: bool = False
    refresh: bool = False  # read the link afresh (a reprocess): no cached evidence
    evidence: Evidence | None = None
    facts: Facts | None = None
    commentary: Commentary | None = None
    review: Review | None = None
    reply: PostedReply | None = None

    def need(self, name: str) -> Any:
        """The output of an earlier stage; a missing one is a bug in the stage order."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"job {self.job.job_id}: no {name} in the carry (stage order?)")
        return value


class PipelineResult(_Model):
    """Everything one in-process run produced (``technoshare run --json``)."""

    job: Job
    outcome: Outcome
    evidence: Evidence | None = None
    facts: Facts | None = None
    commentary: Commentary | None = None
    gate_report: GateReport | None = None
    message: SlackMessage | None = None
    error: str | None = None
