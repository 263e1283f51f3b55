"""Running stages with their observability: the one path every driver takes.

    carry = run_stage(stage, carry, deps, headers, recorder)   # one stage, recorded
    result = run_job(job, deps, recorder)                      # every stage, in this process

``run_stage`` is what each Celery stage task does (``tasks/stages.py``) and what ``run_job``
does five times, so ``technoshare run``, demo and the workers record the same parent run, nested
runs and spans (eval runs its jobs with the null recorder: ``mlflow.genai.evaluate`` records
each example itself). ``run_job`` never raises a ``TechnoShareError``: it becomes the
``error`` outcome with the error's user message as the reply.
"""

from __future__ import annotations

from collections.abc import Mapping

from observability.recorder import Recorder, get_recorder
from pipeline.deps import StageDeps
from pipeline.errors import GateFailedError, TechnoShareError
from pipeline.models import Evidence, Job, JobCarry, Outcome, PipelineResult, SlackMessage
from pipeline.stages import STAGES, Stage, advance, one_line


def run_stage(
    stage: Stage,
    carry: JobCarry,
    deps: StageDeps,
    headers: Mapping[str, str],
    recorder: Recorder | None = None,
) -> JobCarry:
    with (recorder or get_recorder()).stage(stage, carry.job, headers) as obs:
        was_offline = carry.budget_offline
        carry = advance(stage, carry, deps)
        obs.output = getattr(carry, stage.output)
        if stage.uses_llm and carry.budget_offline:
            obs.tags["llm_budget"] = "spent" if not was_offline else "spent earlier"
    return carry


def result_of(carry: JobCarry) -> PipelineResult:
    """What one job produced, for ``technoshare run --json`` and eval."""
    review = carry.review
    message = carry.reply.message if carry.reply else (review.message if review else None)
    outcome = Outcome.success if review is None or review.report.passed else Outcome.gate_failed
    result = PipelineResult(
        job=carry.job,
        outcome=outcome,
        evidence=carry.evidence,
        facts=carry.facts,
        commentary=review.commentary if review else carry.commentary,
        gate_report=review.report if review else None,
        message=message,
    )
    if review is not None and not review.report.passed:
        failed = ", ".join(r.name for r in review.report.failures)
        result.error = GateFailedError(f"gates failed after one repair: {failed}").reason
    return result


def run_job(
    job: Job, deps: StageDeps, recorder: Recorder | None = None, *, attempt: int = 1
) -> PipelineResult:
    """Every stage on ``job`` in this process, recorded like a worker's job."""
    from pipeline.render import render_error

    recorder = recorder or get_recorder()
    headers = recorder.begin_job(job)
    carry = JobCarry(job=job, attempt=attempt)
    try:
        for stage in STAGES:
            carry = run_stage(stage, carry, deps, headers, recorder)
    except TechnoShareError as exc:
        if carry.evidence is None and isinstance(
            evidence := getattr(exc, "evidence", None), Evidence
        ):
            carry = carry.model_copy(update={"evidence": evidence})  # nothing readable in it
        message: SlackMessage = render_error(job, exc.user_message)
        result = result_of(carry).model_copy(
            update={"outcome": Outcome.error, "error": one_line(exc.reason), "message": message}
        )
        recorder.end_job(job, headers, Outcome.error, reply=message, error=result.error)
        return result
    except BaseException as exc:  # a bug or an interrupt: the job's record still ends
        recorder.end_job(job, headers, Outcome.error, error=f"{type(exc).__name__}: {exc}")
        raise
    result = result_of(carry)
    recorder.end_job(job, headers, result.outcome, reply=result.message)
    return result
