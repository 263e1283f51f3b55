"""One task per stage: fetch_evidence -> stage_a -> stage_b -> quality_gates -> slack_post.

Each task takes ``carry`` (a dict of the models produced so far, as JSON, plus the attempt
number) and the job id, runs its pure stage inside ``observability.hooks.stage_run`` and returns
``carry`` with its own model added. ``stage_context`` does the rest the same way for all:
load the job, record the headers the task saw, retry only ``RetryableError`` (capped, with
backoff or the server's Retry-After), record the last error for the failure note. The LLM
stages (stage_a, stage_b and the repair in quality_gates) first check the daily LLM budget and
record their cost after (``tasks/llm_budget.py``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from observability import hooks
from observability.hooks import StageRecorder
from pipeline.errors import RetryableError, TechnoShareError
from pipeline.models import (
    Commentary,
    Evidence,
    Facts,
    GateReport,
    Job,
    SlackMessage,
    StageUsage,
)
from pipeline.settings import Settings
from tasks import llm_budget, runtime
from tasks import pipeline_calls as calls
from tasks.app import app
from tasks.headers import current_headers
from tasks.llm_budget import BUDGET_OFFLINE
from tasks.posting import STATUS_FOR_OUTCOME, post_once, set_reaction


@dataclass
class StageContext:
    job: Job
    attempt: int
    headers: dict[str, str]
    settings: Settings
    rec: StageRecorder


def retry_countdown(exc: RetryableError, retries: int, settings: Settings) -> float:
    """Retry-After when the server gave one, else exponential backoff with jitter; capped."""
    if exc.retry_after is not None:
        wanted = exc.retry_after
    else:
        wanted = min(2.0**retries, 60.0) * (1 + random.random() / 2)
    return max(0.5, min(float(settings.task_retry_max_countdown), wanted))


def user_reason(exc: BaseException) -> str:
    if isinstance(exc, TechnoShareError):
        return exc.user_message
    return TechnoShareError.user_message


def error_line(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, TechnoShareError) else f"{type(exc).__name__}: {exc}"


@contextmanager
def retry_transient(task: Any, job_id: str) -> Iterator[None]:
    """Retry ``RetryableError`` with a capped countdown; record every error on the job."""
    settings, store = runtime.settings(), runtime.store()
    try:
        yield
    except RetryableError as exc:
        store.record_error(job_id, error_line(exc), user_reason(exc))
        raise task.retry(
            exc=exc,
            countdown=retry_countdown(exc, task.request.retries, settings),
            max_retries=settings.task_max_retries,
        ) from None
    except Exception as exc:
        store.record_error(job_id, error_line(exc), user_reason(exc))
        raise


@contextmanager
def stage_context(
    task: Any, stage: str, job_id: str, carry: dict[str, Any]
) -> Iterator[StageContext]:
    store = runtime.store()
    record = store.require(job_id)
    attempt = int(carry.get("attempt") or record.attempt)
    seen = current_headers(task)
    store.record_seen(
        job_id, stage, seen, attempt=attempt, task_id=task.request.id, retries=task.request.retries
    )
    headers = {**record.headers, **seen}  # what the message carried wins over the record
    with (
        retry_transient(task, job_id),
        hooks.stage_run(stage, record.job, headers) as rec,
    ):
        yield StageContext(record.job, attempt, headers, runtime.settings(), rec)


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json")


@app.task(bind=True, name="technoshare.fetch_evidence")
def fetch_evidence(self: Any, carry: dict[str, Any], job_id: str) -> dict[str, Any]:
    with stage_context(self, "fetch_evidence", job_id, carry) as ctx:
        evidence = calls.fetch_evidence(ctx.job, ctx.settings)
        ctx.rec.metrics["snippet_count"] = len(evidence.snippets)
        ctx.rec.metrics["evidence_chars"] = evidence.char_count
        ctx.rec.tags["coverage"] = str(evidence.coverage)
        ctx.rec.artifacts["evidence.json"] = evidence
        return {**carry, "evidence": _dump(evidence)}


@app.task(bind=True, name="technoshare.stage_a")
def stage_a(self: Any, carry: dict[str, Any], job_id: str) -> dict[str, Any]:
    with stage_context(self, "stage_a", job_id, carry) as ctx:
        settings, offline = llm_stage_settings(ctx, carry)
        facts = calls.stage_a(Evidence.model_validate(carry["evidence"]), settings)
        llm_budget.record_cost(facts.usage)
        ctx.rec.metrics["fact_count"] = len(facts.key_facts)
        ctx.rec.metrics["tool_call_count"] = facts.tool_calls
        ctx.rec.usage = facts.usage
        ctx.rec.artifacts["stage_a_facts.json"] = facts
        return {**carry, "facts": _dump(facts), BUDGET_OFFLINE: offline}


@app.task(bind=True, name="technoshare.stage_b")
def stage_b(self: Any, carry: dict[str, Any], job_id: str) -> dict[str, Any]:
    with stage_context(self, "stage_b", job_id, carry) as ctx:
        settings, offline = llm_stage_settings(ctx, carry)
        evidence = Evidence.model_validate(carry["evidence"])
        commentary = calls.stage_b(Facts.model_validate(carry["facts"]), evidence, settings)
        llm_budget.record_cost(commentary.usage)
        ctx.rec.usage = commentary.usage
        ctx.rec.artifacts["stage_b_commentary.json"] = commentary
        return {**carry, "commentary": _dump(commentary), BUDGET_OFFLINE: offline}


@app.task(bind=True, name="technoshare.quality_gates")
def quality_gates(self: Any, carry: dict[str, Any], job_id: str) -> dict[str, Any]:
    with stage_context(self, "quality_gates", job_id, carry) as ctx:
        settings, offline = llm_stage_settings(ctx, carry)  # the repair re-runs Stage B
        evidence = Evidence.model_validate(carry["evidence"])
        facts = Facts.model_validate(carry["facts"])
        draft = Commentary.model_validate(carry["commentary"])
        commentary, report = calls.quality_gates(ctx.job, evidence, facts, draft, settings)
        if report.repaired:  # the repair's own calls (the commentary keeps the draft's too)
            ctx.rec.usage = repair_usage(draft, commentary)
            llm_budget.record_cost(ctx.rec.usage)
        message = calls.render_reply(ctx.job, evidence, facts, commentary, report, settings)
        if offline:
            message = llm_budget.with_budget_note(message, settings.slack_max_blocks)
        ctx.rec.metrics["gates_passed"] = float(report.passed)
        ctx.rec.metrics["repaired"] = float(report.repaired)
        ctx.rec.artifacts["gate_report.json"] = report
        out = {"commentary": _dump(commentary), "gate_report": _dump(report)}
        return {**carry, **out, "message": _dump(message), BUDGET_OFFLINE: offline}


def llm_stage_settings(ctx: StageContext, carry: dict[str, Any]) -> tuple[Settings, bool]:
    """The settings of an LLM stage: the offline model once the daily budget is spent."""
    settings, offline = llm_budget.stage_settings(ctx.settings, carry)
    if offline:
        ctx.rec.tags["llm_budget"] = "spent"  # this stage ran on the offline model because of it
    return settings, offline


def repair_usage(draft: Commentary, repaired: Commentary) -> StageUsage:
    calls_before = len(draft.usage.calls)
    return repaired.usage.model_copy(update={"calls": repaired.usage.calls[calls_before:]})


@app.task(bind=True, name="technoshare.slack_post")
def slack_post(self: Any, carry: dict[str, Any], job_id: str) -> dict[str, Any]:
    with stage_context(self, "slack_post", job_id, carry) as ctx:
        message = SlackMessage.model_validate(carry["message"])
        ts = post_once(runtime.store(), runtime.sink(), ctx.job, ctx.attempt, message)
        ctx.rec.tags["reply_ts"] = ts
        ctx.rec.artifacts["slack_payload.json"] = message
    finish(ctx.job, ctx.headers, message, GateReport.model_validate(carry["gate_report"]))
    return {**carry, "reply_ts": ts}


def finish(job: Job, headers: dict[str, str], message: SlackMessage, report: GateReport) -> None:
    """After the reply: final status, reaction, repeat-link memory, the parent run's outcome."""
    store, settings = runtime.store(), runtime.settings()
    if report.passed:
        store.remember_answer(
            job.channel_id, job.canonical_url, job.job_id, settings.repeat_window_days
        )
    set_reaction(runtime.sink(), job, message.outcome)
    hooks.end_job(job, headers, message.outcome, reply=message)
    store.set_status(job.job_id, STATUS_FOR_OUTCOME[message.outcome])  # last: all is done
