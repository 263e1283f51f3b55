"""The calls from tasks into the pure pipeline, in one place: the functions of
``pipeline.runner`` (the in-process path), one per task.

Imports are lazy: the io worker never imports the LLM stack, and `celery -A tasks ...` commands
that only publish stay fast. Dependencies (fetcher, LLM client, prompts, team context) are built
once per process and settings object by ``pipeline.runner.default_deps``, the same wiring as
``technoshare run``, except the prompts: here they come from MLflow's Prompt Registry under the
configured alias (``prompts.registry_source.RegistryPromptSource``: cached, and the files when
MLflow is unreachable or a template is not registered). With ``FETCH_RECORDED=true`` the
fetcher is served from the recorded web data (offline).
"""

from __future__ import annotations

from typing import Any

from pipeline.models import Commentary, Evidence, Facts, GateReport, Job, SlackMessage
from pipeline.settings import Settings

# Built by settings object (settings are not hashable): the worker's settings and, once the
# daily LLM budget is spent, their offline copy (tasks/llm_budget.py).
_fetchers: list[tuple[Settings, Any]] = []
_built: list[tuple[Settings, Any]] = []
MAX_BUILT = 2


def _cached(cache: list[tuple[Settings, Any]], settings: Settings, build: Any) -> Any:
    for built_for, value in cache:
        if built_for is settings:
            return value
    if len(cache) >= MAX_BUILT:  # new worker settings (tests): start over
        cache.clear()
    value = build()
    cache.append((settings, value))
    return value


def _fetcher(settings: Settings) -> Any:
    """The safe fetcher alone (the io worker's fetch_evidence needs nothing else)."""

    def build() -> Any:
        from pipeline.fetch import SafeFetcher

        if settings.fetch_recorded:
            from services.recorded_web import RecordedWeb

            web = RecordedWeb()
            return SafeFetcher(settings, transport=web.transport, resolver=web.resolver)
        return SafeFetcher(settings)

    return _cached(_fetchers, settings, build)


def _deps(settings: Settings) -> Any:
    def build() -> Any:
        from pipeline.runner import default_deps
        from prompts.registry_source import RegistryPromptSource

        deps = default_deps(settings, fetcher=_fetcher(settings))
        deps.prompts = RegistryPromptSource(settings, fallback=deps.prompts)
        return deps

    return _cached(_built, settings, build)


def reset() -> None:
    """Forget what was built (not closed: a thread of a threads pool may still use it)."""
    _fetchers.clear()
    _built.clear()


def fetch_evidence(job: Job, settings: Settings) -> Evidence:
    from pipeline.runner import require_readable, retrieve

    evidence = retrieve(job, settings, _fetcher(settings))
    require_readable(evidence)  # nothing read: a terminal, user-visible error
    return evidence


def stage_a(evidence: Evidence, settings: Settings) -> Facts:
    from pipeline.runner import stage_a as run

    return run(evidence, _deps(settings))


def stage_b(
    facts: Facts, evidence: Evidence, settings: Settings, feedback: list[str] | None = None
) -> Commentary:
    from pipeline.runner import stage_b as run

    return run(facts, evidence, _deps(settings), feedback)


def quality_gates(
    job: Job, evidence: Evidence, facts: Facts, commentary: Commentary, settings: Settings
) -> tuple[Commentary, GateReport]:
    from pipeline.runner import gates

    return gates(job, evidence, facts, commentary, _deps(settings))


def render_reply(
    job: Job,
    evidence: Evidence,
    facts: Facts,
    commentary: Commentary,
    report: GateReport,
    settings: Settings,
) -> SlackMessage:
    from pipeline.runner import render_reply as render

    return render(job, evidence, facts, commentary, report, settings)


def render_error(job: Job, reason: str) -> SlackMessage:
    from pipeline.render import render_error as render

    return render(job, reason)
