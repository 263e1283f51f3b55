"""What the stages depend on besides their input models, each typed by a Protocol.

    StageDeps(settings, fetcher, prompts, context, poster, budget, history, evidence_cache,
              llm_factory)

A driver (the Celery worker, ``technoshare run``, ``technoshare eval``, a test) builds one
``StageDeps`` and hands it to every stage function of ``pipeline.stages``; a test swaps any
part for a double (a scripted LLM, a recording poster) without patching a module. The LLM
client is built on first use (``deps.llm``): an io worker that only fetches and posts never
imports litellm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.models import Evidence, Job, JobCarry, SharedBefore, SlackMessage, StageUsage
from pipeline.prompting import PromptSource
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.context import ProjectContext
    from pipeline.fetch import FetchResponse

OFFLINE_MODEL = "offline/extractive"
BUDGET_NOTE = (
    "The daily LLM budget is spent: this reply was written by the offline extractive model."
)


class Fetcher(Protocol):
    """The one SSRF-safe fetcher (``pipeline.fetch.SafeFetcher``) or a stand-in."""

    def get(self, url: str, *, accept: str = ...) -> FetchResponse: ...

    def close(self) -> None: ...


class LLM(Protocol):
    """A model client (``pipeline.llm.LLMClient``): a validated answer and what it cost."""

    def complete_model(
        self,
        stage: str,
        messages: list[dict[str, Any]],
        output_model: Any,
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_handler: Callable[[str, dict[str, Any]], str] | None = None,
        purpose: str = "answer",
        check: Callable[[Any], None] | None = None,
    ) -> tuple[Any, StageUsage]: ...


class ReplyPoster(Protocol):
    """Posts the reply of one job attempt (exactly once, for a real Slack); returns its ts."""

    def post(self, job: Job, attempt: int, message: SlackMessage) -> str: ...


class Budget(Protocol):
    """The daily LLM spend: is it used up, and add what a stage cost."""

    def spent(self) -> bool: ...

    def record(self, usage: StageUsage) -> None: ...


class History(Protocol):
    """The team's history of answered links (``pipeline.history``; Redis for the workers)."""

    def related(self, carry: JobCarry) -> list[SharedBefore]:
        """Earlier links of the channel close to this job (its evidence, facts and, once
        written, commentary)."""
        ...

    def remember(self, carry: JobCarry, reply_ts: str) -> None:
        """Keep a posted job: for "Shared before", follow-up questions and the digest."""
        ...


class NoHistory:
    """Remembers nothing (``technoshare run``, eval, unit tests)."""

    def related(self, carry: JobCarry) -> list[SharedBefore]:
        return []

    def remember(self, carry: JobCarry, reply_ts: str) -> None:
        return None


class EvidenceCache(Protocol):
    """Evidence already read for a canonical URL (Redis for the workers)."""

    def get(self, canonical_url: str) -> Evidence | None: ...

    def put(self, evidence: Evidence) -> None: ...


class NoEvidenceCache:
    """Every job reads its link (``technoshare run``, eval, unit tests)."""

    def get(self, canonical_url: str) -> Evidence | None:
        return None

    def put(self, evidence: Evidence) -> None:
        return None


class NoBudget:
    """No daily limit (``LLM_DAILY_BUDGET_USD`` unset, or an in-process run)."""

    def spent(self) -> bool:
        return False

    def record(self, usage: StageUsage) -> None:
        return None


class KeepReply:
    """Posts nothing: the reply stays in the carry (``technoshare run``, eval, tests)."""

    def post(self, job: Job, attempt: int, message: SlackMessage) -> str:
        return ""


def offline_settings(settings: Settings) -> Settings:
    """``settings`` with every stage on the offline model and no paid fallback."""
    return settings.model_copy(
        update={
            "llm_model": OFFLINE_MODEL,
            "llm_model_stage_a": None,
            "llm_model_stage_b": None,
            "llm_fallback_models": [],
        }
    )


def build_llm(settings: Settings) -> LLM:
    from pipeline.llm import LLMClient  # lazy: litellm takes seconds to import

    return LLMClient(settings)


@dataclass
class StageDeps:
    settings: Settings
    fetcher: Fetcher
    prompts: PromptSource
    context: ProjectContext
    poster: ReplyPoster = field(default_factory=KeepReply)
    budget: Budget = field(default_factory=NoBudget)
    history: History = field(default_factory=NoHistory)
    evidence_cache: EvidenceCache = field(default_factory=NoEvidenceCache)
    llm_factory: Callable[[Settings], LLM] = build_llm
    # stage name -> a function run instead of the stage (doubles in tests of the queue
    # machinery, which are about delivery, not about what a stage computes)
    overrides: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    _llm: LLM | None = field(default=None, repr=False)
    _offline: StageDeps | None = field(default=None, repr=False)

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            self._llm = self.llm_factory(self.settings)
        return self._llm

    def offline(self) -> StageDeps:
        """The same dependencies on the offline model (once the daily budget is spent)."""
        if self._offline is None:
            self._offline = replace(
                self, settings=offline_settings(self.settings), _llm=None, _offline=None
            )
        return self._offline

    def close(self) -> None:
        self.fetcher.close()
