"""The whole pipeline in one process: ``technoshare run``, the evaluation runner and tests.

    retrieve + require_readable -> stage_a -> stage_b -> gates (review_and_repair) -> render_reply

The Celery chain runs these same functions, one task each (``tasks/pipeline_calls.py``), with
dependencies built by :func:`default_deps` too, so both paths share one wiring. (The Celery
path swaps in the MLflow Prompt Registry as prompt source; ``technoshare run`` reads the files.)

Outcomes: ``success`` (the commentary reply), ``gate_failed`` (the gates still failed after
one Stage B repair: an honest short note, ``GateFailedError`` semantics), ``error`` (any
:class:`TechnoShareError`: the error's ``user_message`` in the reply, its one-line reason in
``PipelineResult.error``). Errors that are not ours propagate: they are bugs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from pipeline.errors import GateFailedError, SourceUnavailableError, TechnoShareError
from pipeline.fetch import Resolver, SafeFetcher
from pipeline.gates import review_and_repair
from pipeline.models import (
    Commentary,
    Coverage,
    Evidence,
    Facts,
    GateReport,
    Job,
    Outcome,
    PipelineResult,
    SlackMessage,
)
from pipeline.render import render_commentary, render_error, render_gate_failed
from pipeline.settings import Settings


@dataclass
class PipelineDeps:
    """What the stages need besides their input models."""

    settings: Settings
    fetcher: SafeFetcher
    llm: Any  # pipeline.llm.LLMClient
    prompts: Any  # pipeline.prompting.PromptSource
    context: Any  # pipeline.context.ProjectContext

    def close(self) -> None:
        self.fetcher.close()


def default_deps(
    settings: Settings,
    transport: httpx.BaseTransport | None = None,
    resolver: Resolver | None = None,
    *,
    fetcher: SafeFetcher | None = None,
) -> PipelineDeps:
    """Production wiring; ``transport``/``resolver`` are the fetcher's seams (recorded web), or
    pass a ``fetcher`` built already."""
    from pipeline.context import load_project_context
    from pipeline.llm import LLMClient  # lazy: litellm takes seconds to import
    from pipeline.prompting import FilePromptSource

    return PipelineDeps(
        settings=settings,
        fetcher=fetcher or SafeFetcher(settings, transport=transport, resolver=resolver),
        llm=LLMClient(settings),
        prompts=FilePromptSource(),
        context=load_project_context(settings=settings),
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


def stage_a(evidence: Evidence, deps: PipelineDeps) -> Facts:
    """Stage A with its dependencies: the ``fetch_url`` tool reads through the safe fetcher."""
    from pipeline.stage_a import run_stage_a

    return run_stage_a(
        evidence, llm=deps.llm, prompts=deps.prompts, fetcher=deps.fetcher, settings=deps.settings
    )


def stage_b(
    facts: Facts, evidence: Evidence, deps: PipelineDeps, feedback: list[str] | None = None
) -> Commentary:
    """Stage B with its dependencies; ``feedback`` is the gates' repair request."""
    from pipeline.stage_b import run_stage_b

    return run_stage_b(
        facts,
        evidence,
        context=deps.context,
        llm=deps.llm,
        prompts=deps.prompts,
        settings=deps.settings,
        feedback=feedback,
    )


def require_readable(evidence: Evidence) -> None:
    """``coverage=failed`` (the source answered but nothing could be read) is a terminal,
    user-visible error."""
    if evidence.coverage == Coverage.failed:
        reason = evidence.coverage_reason or "nothing could be read"
        raise SourceUnavailableError(
            f"no evidence for {evidence.url}: {reason}",
            user_message=f"Nothing could be read from this link ({one_line(reason)}).",
        )


def retrieve(job: Job, settings: Settings, fetcher: SafeFetcher) -> Evidence:
    """Retrieval: the adapter for the link reads it (check it with :func:`require_readable`).
    Needs only the fetcher: the io worker that runs it never builds the LLM client."""
    from pipeline.adapters import fetch_evidence

    return fetch_evidence(job.url, settings, fetcher)


def gates(
    job: Job, evidence: Evidence, facts: Facts, draft: Commentary, deps: PipelineDeps
) -> tuple[Commentary, GateReport]:
    """The gates, and on failure one Stage B repair (:func:`stage_b` with the feedback)."""
    return review_and_repair(
        job,
        evidence,
        facts,
        draft,
        rerun_stage_b=lambda feedback: stage_b(facts, evidence, deps, feedback),
        settings=deps.settings,
        context=deps.context,
    )


def render_reply(
    job: Job,
    evidence: Evidence,
    facts: Facts,
    commentary: Commentary,
    report: GateReport,
    settings: Settings,
) -> SlackMessage:
    """The commentary when the gates passed, else the short honest ``gate_failed`` note."""
    if report.passed:
        return render_commentary(job, evidence, facts, commentary, report, settings)
    return render_gate_failed(job, evidence, report)


def run_pipeline(job: Job, deps: PipelineDeps) -> PipelineResult:
    """Run every stage on ``job``; never raises a :class:`TechnoShareError` (it becomes the
    ``error`` outcome)."""
    result = PipelineResult(job=job, outcome=Outcome.error)
    try:
        result.evidence = evidence = retrieve(job, deps.settings, deps.fetcher)
        require_readable(evidence)
        result.facts = facts = stage_a(evidence, deps)
        draft = stage_b(facts, evidence, deps)
        commentary, report = gates(job, evidence, facts, draft, deps)
        result.commentary, result.gate_report = commentary, report
        result.message = render_reply(job, evidence, facts, commentary, report, deps.settings)
        if not report.passed:
            failed = ", ".join(r.name for r in report.failures)
            result.outcome = Outcome.gate_failed
            result.error = GateFailedError(f"gates failed after one repair: {failed}").reason
            return result
        result.outcome = Outcome.success
    except TechnoShareError as exc:
        result.outcome = Outcome.error
        result.error = one_line(exc.reason)
        result.message = render_error(job, exc.user_message)
    return result
