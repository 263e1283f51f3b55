"""The calls from tasks into the pure pipeline, in one place.

Imports are lazy: the io worker never imports the LLM stack, and `celery -A tasks ...` commands
that only publish stay fast. Dependencies (fetcher, LLM client, prompts, team context) are built
once per process by ``pipeline.runner.default_deps``, the same wiring as ``technoshare run``;
with ``FETCH_RECORDED=true`` the fetcher is served from the recorded web data (offline).
"""

from __future__ import annotations

from typing import Any

from pipeline.models import Commentary, Evidence, Facts, GateReport, Job, SlackMessage
from pipeline.settings import Settings

_built: list[tuple[Settings, Any]] = []  # (settings, deps): settings are not hashable


def _deps(settings: Settings) -> Any:
    if not _built or _built[0][0] is not settings:
        from pipeline.runner import default_deps

        if settings.fetch_recorded:
            from services.recorded_web import RecordedWeb

            web = RecordedWeb()
            deps = default_deps(settings, transport=web.transport, resolver=web.resolver)
        else:
            deps = default_deps(settings)
        _built[:] = [(settings, deps)]
    return _built[0][1]


def reset() -> None:
    _built.clear()


def fetch_evidence(job: Job, settings: Settings) -> Evidence:
    from pipeline import runner
    from pipeline.adapters import fetch_evidence as fetch

    evidence = fetch(job.url, settings, _deps(settings).fetcher)
    runner._require_readable(evidence)  # nothing read: a terminal, user-visible error
    return evidence


def stage_a(evidence: Evidence, settings: Settings) -> Facts:
    from pipeline import runner

    return runner._stage_a(evidence, _deps(settings))


def stage_b(
    facts: Facts, evidence: Evidence, settings: Settings, feedback: list[str] | None = None
) -> Commentary:
    from pipeline import runner

    return runner._stage_b(facts, evidence, _deps(settings), feedback)


def quality_gates(
    job: Job, evidence: Evidence, facts: Facts, commentary: Commentary, settings: Settings
) -> tuple[Commentary, GateReport]:
    from pipeline.gates import review_and_repair

    return review_and_repair(
        job,
        evidence,
        facts,
        commentary,
        rerun_stage_b=lambda feedback: stage_b(facts, evidence, settings, feedback),
        settings=settings,
        context=_deps(settings).context,
    )


def render_reply(
    job: Job,
    evidence: Evidence,
    facts: Facts,
    commentary: Commentary,
    report: GateReport,
    settings: Settings,
) -> SlackMessage:
    from pipeline.render import render_commentary, render_gate_failed

    if report.passed:
        return render_commentary(job, evidence, facts, commentary, report, settings)
    return render_gate_failed(job, evidence, report)


def render_error(job: Job, reason: str) -> SlackMessage:
    from pipeline.render import render_error as render

    return render(job, reason)
