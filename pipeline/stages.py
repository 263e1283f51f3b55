"""The stage table and the five stages: one pure function each, ``stage(carry, deps) -> model``.

    fetch_evidence[io] -> stage_a[llm] -> stage_b[llm] -> quality_gates[post|llm] -> slack_post[post]
       Evidence            Facts          Commentary       Review                   PostedReply

``STAGES`` is the single declaration of each stage: its name (also the Celery task's
``technoshare.<name>``, the nested MLflow run's name and the span's name), its queue, span
type, artifact, and the ``JobCarry`` field its output fills. The Celery chain, task routes,
span and run names, docs and tests all derive from it.

Every driver calls :func:`advance` for each stage: the Celery tasks (``tasks/stages.py``), the
in-process runner behind ``technoshare run`` and ``technoshare eval`` (``services/runner.py``)
and the tests. ``advance`` also applies the daily LLM budget: once it is spent, the job's
remaining LLM stages run on the offline model and the reply says so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from pipeline.constants import QUEUE_IO, QUEUE_LLM, QUEUE_POST
from pipeline.deps import BUDGET_NOTE, StageDeps
from pipeline.errors import SourceUnavailableError
from pipeline.models import (
    Commentary,
    Coverage,
    Evidence,
    Facts,
    GateReport,
    JobCarry,
    PostedReply,
    Review,
    SlackMessage,
    StageUsage,
)

if TYPE_CHECKING:
    from pipeline.fetch import SafeFetcher

TASK_PREFIX = "technoshare."


def one_line(text: str) -> str:
    return " ".join(text.split())


# --- the stages ------------------------------------------------------------------------------
def fetch_evidence(carry: JobCarry, deps: StageDeps) -> Evidence:
    """The adapter for the link reads it through the safe fetcher, unless the same link was
    read moments ago (``deps.evidence_cache``; a reprocess always reads afresh). Nothing
    readable (``coverage=failed``) is a terminal, user-visible error, and is not cached."""
    from pipeline.adapters import fetch_evidence as read_source

    job = carry.job
    cached = None if carry.refresh else deps.evidence_cache.get(job.canonical_url)
    if cached is not None:
        return cached.model_copy(update={"url": job.url, "cache_hit": True})
    fetcher = cast("SafeFetcher", deps.fetcher)  # adapters call only the Fetcher protocol
    evidence = read_source(job.url, deps.settings, fetcher)
    if evidence.coverage != Coverage.failed:
        from pipeline.gates import citable_sentence_count

        count = citable_sentence_count(evidence)  # once here, not in each llm stage
        evidence = evidence.model_copy(update={"citable_sentences": count})
        deps.evidence_cache.put(evidence)
    if evidence.coverage == Coverage.failed:
        reason = evidence.coverage_reason or "nothing could be read"
        error = SourceUnavailableError(
            f"no evidence for {evidence.url}: {reason}",
            user_message=f"Nothing could be read from this link ({one_line(reason)}).",
        )
        error.evidence = evidence  # the job's result still shows what was read
        raise error
    return evidence


def stage_a(carry: JobCarry, deps: StageDeps) -> Facts:
    """Facts grounded in the evidence; the ``fetch_url`` tool reads through the safe fetcher."""
    from pipeline.stage_a import run_stage_a

    return run_stage_a(
        carry.need("evidence"),
        llm=deps.llm,
        prompts=deps.prompts,
        fetcher=deps.fetcher,
        settings=deps.settings,
    )


def _commentary(carry: JobCarry, deps: StageDeps, feedback: list[str] | None) -> Commentary:
    from pipeline.stage_b import run_stage_b

    return run_stage_b(
        carry.need("facts"),
        carry.need("evidence"),
        context=deps.context,
        llm=deps.llm,
        prompts=deps.prompts,
        settings=deps.settings,
        feedback=feedback,
    )


def stage_b(carry: JobCarry, deps: StageDeps) -> Commentary:
    """The commentary, written from the facts and the team context (never the raw text), and
    the channel's earlier links close to this one ("Shared before", from the team's history)."""
    commentary = _commentary(carry, deps, None)
    shared = deps.history.related(carry.model_copy(update={"commentary": commentary}))
    return commentary.model_copy(update={"shared_before": shared})


def quality_gates(carry: JobCarry, deps: StageDeps) -> Review:
    """The gates; on failure one Stage B repair with the failures fed back; then the reply:
    the commentary when the gates pass, else the short honest ``gate_failed`` note."""
    from pipeline.gates import review_and_repair
    from pipeline.render import render_commentary, render_gate_failed

    job, evidence, facts = carry.job, carry.need("evidence"), carry.need("facts")
    draft: Commentary = carry.need("commentary")
    commentary, report = review_and_repair(
        job,
        evidence,
        facts,
        draft,
        rerun_stage_b=lambda feedback: _commentary(carry, deps, feedback),
        settings=deps.settings,
        context=deps.context,
        first_report=_report_checked_before(carry, deps),
    )
    if report.repaired:  # the repair re-ran the model only: the history found stays
        commentary = commentary.model_copy(update={"shared_before": draft.shared_before})
    if report.passed:
        message = render_commentary(job, evidence, facts, commentary, report, deps.settings)
    else:
        message = render_gate_failed(job, evidence, report)
    if carry.budget_offline:
        message = with_budget_note(message, deps.settings.slack_max_blocks)
    usage = StageUsage()
    if report.repaired:  # the repair's own calls (the commentary keeps the draft's too)
        usage = commentary.usage.model_copy(
            update={"calls": commentary.usage.calls[len(draft.usage.calls) :]}
        )
    return Review(commentary=commentary, report=report, message=message, usage=usage)


# The report ``gates_need_repair`` made, for the ``quality_gates`` run that follows it on the
# same thread with the same draft: the gates are then checked once, not twice (the evidence's
# link scan is most of their CPU). Matched by identity and used once.
_checked = threading.local()


def gates_need_repair(carry: JobCarry, deps: StageDeps) -> bool:
    """Whether ``quality_gates`` will call the model: the draft fails a gate, so it is repaired."""
    from pipeline.gates import check_gates

    inputs = (carry.need("commentary"), carry.need("facts"), carry.need("evidence"), carry.job)
    report = check_gates(*inputs, deps.settings, deps.context)
    _checked.last = (inputs, deps, report)
    return not report.passed


def _report_checked_before(carry: JobCarry, deps: StageDeps) -> GateReport | None:
    last = getattr(_checked, "last", None)
    _checked.last = None
    if last is None:
        return None
    inputs, checked_deps, report = last
    now = (carry.commentary, carry.facts, carry.evidence, carry.job)
    same = checked_deps is deps and all(a is b for a, b in zip(inputs, now, strict=True))
    return cast(GateReport, report) if same else None


def slack_post(carry: JobCarry, deps: StageDeps) -> PostedReply:
    """Post the reply (exactly once per job attempt, whatever the redeliveries), then keep the
    job in the team's history (for "Shared before", follow-up questions and the digest)."""
    message = carry.need("review").message
    ts = deps.poster.post(carry.job, carry.attempt, message)
    deps.history.remember(carry, ts)
    return PostedReply(ts=ts, message=message)


def with_budget_note(message: SlackMessage, max_blocks: int) -> SlackMessage:
    """The reply with ``BUDGET_NOTE`` as a context line, just above the closing context line
    (source, model, job); body blocks give way when the reply is at Slack's block limit."""
    note = {"type": "context", "elements": [{"type": "mrkdwn", "text": f"_{BUDGET_NOTE}_"}]}
    blocks = list(message.blocks)
    at = len(blocks) - 1 if blocks and blocks[-1].get("type") == "context" else len(blocks)
    blocks.insert(at, note)
    while len(blocks) > max_blocks and at > 1:  # keep the title (block 0)
        del blocks[at - 1]
        at -= 1
    text = f"{message.text}\n\n{BUDGET_NOTE}" if message.text else BUDGET_NOTE
    return message.model_copy(update={"blocks": blocks, "text": text})


# --- the table -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    name: str  # stage, Celery task suffix, nested run name and span name
    queue: str  # QUEUE_IO: network-bound and cheap; QUEUE_LLM: model calls
    span_type: str  # MLflow span type
    artifact: str  # JSON artifact of the stage's output on its nested run
    output: str  # the JobCarry field the output fills
    run: Callable[[JobCarry, StageDeps], BaseModel]
    uses_llm: bool = False  # checks the daily budget first and records its cost after
    # A stage that calls the model only sometimes runs on ``queue`` and hands the carry to
    # ``model_queue`` (task ``model_task_name``) when ``calls_model`` says this one will.
    model_queue: str | None = None
    calls_model: Callable[[JobCarry, StageDeps], bool] | None = None

    @property
    def task_name(self) -> str:
        return TASK_PREFIX + self.name

    @property
    def model_task_name(self) -> str | None:
        """The task that runs the stage on ``model_queue`` (its name: ``<task_name>.model``)."""
        return f"{self.task_name}.model" if self.model_queue else None

    @property
    def run_name(self) -> str:
        return self.name

    @property
    def span_name(self) -> str:
        return self.name


STAGES: tuple[Stage, ...] = (
    Stage("fetch_evidence", QUEUE_IO, "RETRIEVER", "evidence.json", "evidence", fetch_evidence),
    Stage("stage_a", QUEUE_LLM, "AGENT", "stage_a_facts.json", "facts", stage_a, True),
    Stage("stage_b", QUEUE_LLM, "CHAIN", "stage_b_result.json", "commentary", stage_b, True),
    # quality_gates checks on the post queue (a few ms of CPU, no model call) and goes on to the
    # llm queue only when the draft fails a gate: its one repair re-runs Stage B
    Stage(
        "quality_gates",
        QUEUE_POST,
        "CHAIN",
        "gate_report.json",
        "review",
        quality_gates,
        True,
        model_queue=QUEUE_LLM,
        calls_model=gates_need_repair,
    ),
    Stage("slack_post", QUEUE_POST, "TOOL", "slack_payload.json", "reply", slack_post),
)
STAGE_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
STAGE_NAMES: tuple[str, ...] = tuple(STAGE_BY_NAME)


def needs_model_queue(stage: Stage, carry: JobCarry, deps: StageDeps) -> bool:
    """Whether this run of ``stage`` belongs on its ``model_queue`` (it will call the model).
    A stage whose function is overridden (stand-ins, doubles) runs where it is, unless the
    override carries a ``calls_model`` predicate of its own."""
    if stage.model_queue is None:
        return False
    override = deps.overrides.get(stage.name)
    check = stage.calls_model if override is None else getattr(override, "calls_model", None)
    return bool(check is not None and check(carry, deps))


def usage_of(output: Any) -> StageUsage | None:
    usage = getattr(output, "usage", None)
    return usage if isinstance(usage, StageUsage) else None


def advance(stage: Stage, carry: JobCarry, deps: StageDeps) -> JobCarry:
    """Run one stage on the carry and return the carry with its output added.

    An LLM stage first checks the daily budget: spent (now, or by an earlier stage of this
    job), it runs on the offline model, and the carry remembers it for the rest of the job.
    After it, what its calls cost is added to today's spend."""
    if stage.uses_llm and (carry.budget_offline or deps.budget.spent()):
        carry = carry.model_copy(update={"budget_offline": True})
        deps = deps.offline()
    output = deps.overrides.get(stage.name, stage.run)(carry, deps)
    if stage.uses_llm and (usage := usage_of(output)) is not None and usage.cost_usd > 0:
        deps.budget.record(usage)
    return carry.model_copy(update={stage.output: output})
