"""Building the stages' dependencies (``pipeline.deps.StageDeps``) for a driver.

Every driver gets the same wiring: the one safe fetcher (or the recorded web, offline), prompts
from MLflow's Prompt Registry under the configured alias when tracking is on (the files when
MLflow is unreachable or a template is not registered), the team context, and the LLM client
built on first use. Workers add the idempotent Slack poster and the daily budget; the
in-process drivers keep the reply (``KeepReply``) and have no budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.deps import (
    Budget,
    EvidenceCache,
    History,
    NoBudget,
    NoEvidenceCache,
    NoHistory,
    ReplyPoster,
    StageDeps,
)
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.fetch import SafeFetcher


def build_fetcher(settings: Settings, *, recorded: bool = False) -> SafeFetcher:
    """The safe fetcher; with ``recorded`` (or ``FETCH_RECORDED=true``) served from the
    recorded web data, fully offline, the SSRF checks still running."""
    from pipeline.fetch import SafeFetcher

    if recorded or settings.fetch_recorded:
        from services.recorded_web import RecordedWeb

        web = RecordedWeb()
        return SafeFetcher(settings, transport=web.transport, resolver=web.resolver)
    return SafeFetcher(settings)


def build_deps(
    settings: Settings,
    *,
    recorded: bool = False,
    fetcher: SafeFetcher | None = None,
    poster: ReplyPoster | None = None,
    budget: Budget | None = None,
    history: History | None = None,
    evidence_cache: EvidenceCache | None = None,
) -> StageDeps:
    from pipeline.context import load_project_context
    from pipeline.deps import KeepReply
    from pipeline.prompting import FilePromptSource, PromptSource

    prompts: PromptSource = FilePromptSource()
    if settings.mlflow_enable_tracking:
        from prompts.registry_source import RegistryPromptSource

        prompts = RegistryPromptSource(settings, fallback=prompts)
    return StageDeps(
        settings=settings,
        fetcher=fetcher or build_fetcher(settings, recorded=recorded),
        prompts=prompts,
        context=load_project_context(settings=settings),
        poster=poster or KeepReply(),
        budget=budget or NoBudget(),
        history=history or NoHistory(),
        evidence_cache=evidence_cache or NoEvidenceCache(),
    )
