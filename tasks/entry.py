"""Entry points and the error callback.

``technoshare.start_job(job_id)``   what ingest enqueues (by name) for each new link.
``technoshare.reprocess(job_id)``   re-run a job: same record, new attempt, new parent run linked to
                                    the old one, reply in the same thread. Works from the shell:
                                    ``celery -A tasks call technoshare.reprocess --args='["ID"]'``.
``technoshare.job_failed``          the chain's error callback: status failed, one short note.

A start begins the parent run (``Recorder.begin_job``) and publishes the stage chain (derived
from the stage table) with its headers; from there ``tasks.app.propagate_headers`` carries
them to every task.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import chain

from observability.recorder import get_recorder
from pipeline.constants import HEADER_PARENT_RUN_ID, START_JOB_TASK
from pipeline.errors import TerminalError
from pipeline.models import Job, JobCarry, Outcome, SlackMessage
from pipeline.render import render_error
from pipeline.stages import STAGES
from services.job_store import FINAL_STATUSES, JobRecord, JobStatus
from services.posting import post_once, set_reaction
from tasks import runtime
from tasks.app import app
from tasks.headers import current_headers
from tasks.stages import retry_transient

log = logging.getLogger(__name__)


def stage_chain(job: Job, attempt: int) -> Any:
    carry = JobCarry(job=job, attempt=attempt).model_dump(mode="json")
    first = app.signature(STAGES[0].task_name, args=(carry,))
    rest = [app.signature(stage.task_name) for stage in STAGES[1:]]
    errback = app.signature("technoshare.job_failed", args=(job.job_id, attempt))
    return chain(first, *rest).on_error(errback)


def start(task: Any, job_id: str, *, reprocess: bool) -> dict[str, Any]:
    store = runtime.store()
    record = store.require(job_id)
    job = record.job
    if not reprocess:
        earlier = store.earlier_answer(job.channel_id, job.canonical_url)
        if earlier and earlier != job_id:
            return answer_duplicate(task, record, earlier)
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
    stage_chain(job, attempt).apply_async(headers=headers)
    return {"job_id": job_id, "attempt": attempt, "reprocess": reprocess}


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
    return SlackMessage(
        channel=job.channel_id,
        thread_ts=job.reply_thread_ts or None,
        text=f"This link was already discussed in this channel recently: see {where}.",
        outcome=Outcome.duplicate,
    )


def answer_duplicate(task: Any, record: JobRecord, earlier_id: str) -> dict[str, Any]:
    store, sink, job = runtime.store(), runtime.sink(), record.job
    attempt, new = store.begin_attempt(job.job_id, task.request.id)
    earlier = store.get(earlier_id)
    permalink = None
    if earlier is not None and earlier.reply_ts:
        permalink = sink.permalink(earlier.job.channel_id, earlier.reply_ts)
    message = duplicate_message(job, earlier, permalink)
    post_once(store, sink, job, attempt, message)
    set_reaction(sink, job, Outcome.duplicate)
    if new:  # a redelivered start message must not record the job twice
        get_recorder().end_job(job, {}, Outcome.duplicate, reply=message)  # a parent, no stages
    store.mark_duplicate(job.job_id, earlier_id)
    return {"job_id": job.job_id, "attempt": attempt, "duplicate_of": earlier_id}


@app.task(bind=True, name="technoshare.job_failed")
def job_failed(self: Any, failed_task_id: str, job_id: str, attempt: int) -> None:
    """Error callback of the chain: mark the job failed and post one short note."""
    store, sink = runtime.store(), runtime.sink()
    record = store.get(job_id)
    if record is None or (record.status in FINAL_STATUSES and store.reply_for(job_id, attempt)):
        return  # nothing to do, or this attempt has its reply already
    job = record.job
    error = record.last_error or f"task {failed_task_id} failed"
    message = render_error(job, record.user_error or TerminalError.user_message)
    try:
        with retry_transient(self, job_id):
            post_once(store, sink, job, attempt, message)
    except TerminalError as exc:  # e.g. invalid_auth: the note cannot be posted either
        log.error("job %s failed (%s); the failure note was not posted: %s", job_id, error, exc)
    set_reaction(sink, job, Outcome.error)
    headers = {**record.headers, **current_headers(self)}
    get_recorder().end_job(job, headers, Outcome.error, reply=message, error=error)
    store.set_status(job_id, JobStatus.failed, error=error)  # last: "failed" means all is done
