"""Entry points and the error callback.

``technoshare.start_job(job_id)``   what ingest enqueues (by name) for each new link.
``technoshare.reprocess(job_id)``   re-run a job: same record, new attempt, new parent run linked to
                                    the old one, reply in the same thread. Works from the shell:
                                    ``celery -A tasks call technoshare.reprocess --args='["ID"]'``.
``technoshare.job_failed``          the chain's error callback: the job's terminal end (status
                                    failed, parent run ended, ⚠️, an ops alert, one short note).

A start first claims the link in the channel (``JobStore.claim_link``): a second message with
the same link while the first job is in flight, or answered within the repeat window, is
answered as a duplicate pointing to the first thread instead of a second commentary. Then it
begins the parent run (``Recorder.begin_job``) and publishes the stage chain (derived from the
stage table) with its headers; from there ``tasks.app.propagate_headers`` carries them to every
task.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import chain

from eval.health import ops_message
from observability.recorder import get_recorder
from pipeline.constants import FOLLOWUP_TASK, HEADER_PARENT_RUN_ID, START_JOB_TASK
from pipeline.errors import RetryableError, TerminalError
from pipeline.models import Job, JobCarry, JobKind, Outcome, SlackMessage
from pipeline.render import render_error
from pipeline.stages import STAGES, one_line
from services.job_store import FINAL_STATUSES, JobRecord, JobStatus, JobStore
from services.posting import post_once, set_reaction
from tasks import runtime
from tasks.app import app
from tasks.headers import current_headers
from tasks.stages import retry_countdown, retry_transient

log = logging.getLogger(__name__)

LINK_CLAIM_TRIES = 3  # claim, or take over a stale one; another job racing us gets us this many


def stage_chain(job: Job, attempt: int, *, refresh: bool = False) -> Any:
    """The job's chain; ``refresh`` (a reprocess): the link is read again, not reused."""
    carry = JobCarry(job=job, attempt=attempt, refresh=refresh).model_dump(mode="json")
    first = app.signature(STAGES[0].task_name, args=(carry,))
    rest = [app.signature(stage.task_name) for stage in STAGES[1:]]
    errback = app.signature("technoshare.job_failed", args=(job.job_id, attempt))
    return chain(first, *rest).on_error(errback)


def start(task: Any, job_id: str, *, reprocess: bool) -> dict[str, Any]:
    store = runtime.store()
    record = store.require(job_id)
    job = record.job
    if job.kind != JobKind.link:  # a mention to answer: no chain (tasks/conversation.py)
        from tasks.conversation import start_conversation

        return start_conversation(task, job)
    if not reprocess:  # a reprocess re-runs the job whatever the link's memory says
        other = link_answered_by(store, job)
        if other:
            return answer_duplicate(task, record, other)
    attempt, new = store.begin_attempt(job_id, task.request.id)
    if new:
        reprocess_of = None
        if reprocess:  # the earlier attempt's parent run (found by its trace when never known)
            found = get_recorder().parent_run_id(job, record.headers)
            reprocess_of = record.parent_run_id or found or None
        headers = get_recorder().begin_job(job, reprocess_of=reprocess_of)
        store.set_run(job_id, headers, headers.get(HEADER_PARENT_RUN_ID), reprocess_of)
        if reprocess:
            set_reaction(runtime.sink(), job, None)
    else:  # this start message was delivered before: same attempt, same parent run
        headers = store.require(job_id).headers
    stage_chain(job, attempt, refresh=reprocess).apply_async(headers=headers)
    return {"job_id": job_id, "attempt": attempt, "reprocess": reprocess}


def link_answered_by(store: JobStore, job: Job) -> str | None:
    """The other job answering this link in the channel (answered within the repeat window, or
    in flight now), or None once this job holds the link's claim."""
    if runtime.settings().repeat_window_days <= 0:
        return None  # repeat links are answered afresh: no memory, no claim
    channel, url, holder = job.channel_id, job.canonical_url, job.job_id
    for _ in range(LINK_CLAIM_TRIES):
        earlier = store.earlier_answer(channel, url)
        if earlier and earlier != job.job_id:
            return earlier
        holder = store.claim_link(channel, url, job.job_id)
        if holder == job.job_id:
            earlier = store.earlier_answer(channel, url)  # answered just before our claim?
            if earlier and earlier != job.job_id:
                store.release_link(channel, url, job.job_id)
                return earlier
            return None
        other = store.get(holder)
        if other is not None and other.status not in FINAL_STATUSES:
            return holder  # in flight
        # The holder ended with no answer to point to (gate_failed, expired): the link is ours.
        if store.take_over_link(channel, url, holder, job.job_id):
            return None
    return holder  # another job took the stale claim over first: it is answering the link


@app.task(bind=True, name=START_JOB_TASK)
def start_job(self: Any, job_id: str) -> dict[str, Any]:
    with retry_transient(self, job_id):
        return start(self, job_id, reprocess=False)


@app.task(bind=True, name="technoshare.reprocess")
def reprocess(self: Any, job_id: str) -> dict[str, Any]:
    runtime.store().require(job_id)  # unknown id: fail before touching anything
    with retry_transient(self, job_id):
        return start(self, job_id, reprocess=True)


def duplicate_message(job: Job, earlier: JobRecord | None, permalink: str | None) -> SlackMessage:
    where = f"<{permalink}|the earlier thread>" if permalink else "an earlier thread"
    if earlier is not None and not permalink:
        where += f" (message {earlier.job.reply_thread_ts})"
    in_flight = earlier is not None and earlier.status not in FINAL_STATUSES
    said = (
        "is being discussed in this channel right now"
        if in_flight
        else ("was already discussed in this channel recently")
    )
    return SlackMessage(
        channel=job.channel_id,
        thread_ts=job.reply_thread_ts or None,
        text=f"This link {said}: see {where}.",
        outcome=Outcome.duplicate,
    )


def answer_duplicate(task: Any, record: JobRecord, earlier_id: str) -> dict[str, Any]:
    store, sink, job = runtime.store(), runtime.sink(), record.job
    attempt, new = store.begin_attempt(job.job_id, task.request.id)
    earlier = store.get(earlier_id)
    permalink = None
    if earlier is not None:  # its reply, or while it is in flight the thread it will reply in
        target = earlier.reply_ts or earlier.job.reply_thread_ts
        permalink = sink.permalink(earlier.job.channel_id, target) if target else None
    message = duplicate_message(job, earlier, permalink)
    post_once(store, sink, job, attempt, message)
    set_reaction(sink, job, Outcome.duplicate)
    if new:  # a redelivered start message must not record the job twice
        get_recorder().end_job(job, {}, Outcome.duplicate, reply=message)  # a parent, no stages
    store.mark_duplicate(job.job_id, earlier_id)
    return {"job_id": job.job_id, "attempt": attempt, "duplicate_of": earlier_id}


@app.task(bind=True, name="technoshare.job_failed")
def job_failed(self: Any, failed_task_id: str, job_id: str, attempt: int) -> None:
    """Error callback of the chain: the job's terminal end, whatever Slack does.

    One short note in the thread, retried like any post while retries last (its errors are
    not recorded on the job: the job's own error stays). Then, posted or not (retries spent,
    invalid_auth...): :func:`end_failed_job`. Never re-raises the note's error: a job whose
    chain failed always ends ``failed``.
    """
    store, sink = runtime.store(), runtime.sink()
    record = store.get(job_id)
    if record is None or record.attempt > attempt or record.status in FINAL_STATUSES:
        return  # unknown, superseded by a reprocess, or this attempt has ended already
    job = record.job
    error = record.last_error or f"task {failed_task_id} failed"
    message = render_error(job, record.user_error or TerminalError.user_message)
    settings = runtime.settings()
    try:
        post_once(store, sink, job, attempt, message)
    except RetryableError as exc:  # retried like any post; not recorded: the job's error stays
        if self.request.retries < settings.task_max_retries:
            countdown = retry_countdown(exc, self.request.retries, settings)
            raise self.retry(
                exc=exc, countdown=countdown, max_retries=settings.task_max_retries
            ) from None
        note_not_posted(job_id, error, exc)
    except Exception as exc:  # noqa: BLE001 - terminal (invalid_auth...): the job ends anyway
        note_not_posted(job_id, error, exc)
    end_failed_job(self, record, attempt, error, message)


def note_not_posted(job_id: str, error: str, exc: BaseException) -> None:
    reason = one_line(str(exc)) or type(exc).__name__
    log.error(
        "job %s failed (%s); the failure note was not posted: %s", job_id, one_line(error), reason
    )


def end_failed_job(
    task: Any, record: JobRecord, attempt: int, error: str, message: SlackMessage
) -> None:
    """Release the link (it may be tried again), ⚠️ and the ops alert (best effort), the parent
    run ended with the error outcome, and status ``failed`` last: "failed" means all is done."""
    store, sink, job = runtime.store(), runtime.sink(), record.job
    store.release_link(job.channel_id, job.canonical_url, job.job_id)
    set_reaction(sink, job, Outcome.error)
    alert_ops(store, job, attempt, error)
    headers = {**record.headers, **current_headers(task)}
    try:
        get_recorder().end_job(job, headers, Outcome.error, reply=message, error=error)
    except Exception as exc:  # noqa: BLE001 - a recorder failure must not keep the job running
        log.error("job %s: the parent run was not ended: %s", job.job_id, one_line(str(exc)))
    store.set_status(job.job_id, JobStatus.failed, error=error)


def alert_ops(store: JobStore, job: Job, attempt: int, error: str) -> None:
    """One line to ``SLACK_OPS_CHANNEL`` when set (job id, link, error), once per job attempt.
    Best effort: a failed alert is logged, never retried (the job must end)."""
    settings, sink = runtime.settings(), runtime.sink()
    if not settings.slack_ops_channel or not store.claim_alert(
        f"job_failed:{job.job_id}:{attempt}"
    ):
        return  # no ops channel, or this attempt's alert was sent (a redelivered callback)
    permalink = sink.permalink(job.channel_id, job.message_ts) if job.message_ts else None
    where = f"<{permalink}|message>" if permalink else job.channel_id
    text = f":warning: TechnoShare job {job.job_id} failed ({job.url}, {where}): {error}"
    message = ops_message(settings, one_line(text))
    try:
        if message is not None:
            sink.post(message)
    except Exception as exc:  # noqa: BLE001 - the alert is best effort
        log.error("job %s: the ops alert was not posted: %s", job.job_id, one_line(str(exc)))


@app.task(bind=True, name=FOLLOWUP_TASK)
def answer_followup(self: Any, job_id: str) -> dict[str, Any]:
    """A question in one of the bot's threads (``tasks/conversation.py``)."""
    from tasks.conversation import run_followup

    with retry_transient(self, job_id):
        return run_followup(self, job_id)
