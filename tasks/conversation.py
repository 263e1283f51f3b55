"""The bot in conversation: follow-up questions in its threads, help for a bare mention, and the
weekly digest.

Ingest turns a mention without a link into a job of its own (``Job.kind``), started like any
job by ``technoshare.start_job``, which hands it here:

``help``      a mention outside the bot's threads: the one-line help, posted by the start task.
``followup``  a question in the thread of one of the bot's replies: sent on to
    ``technoshare.answer_followup(job_id)`` [llm] (registered in ``tasks/entry.py``, next to
    ``retry_transient``'s other users), which answers from the archived evidence and
    facts of the jobs that replied there (``pipeline.followup``) and records it as a small job:
    a parent run tagged ``followup_of`` = the original job's parent run, one nested run and
    span ``followup_answer``.

Both are posted at most once (attempt 1, whatever the redeliveries: a mention is never
reprocessed). ``technoshare.weekly_digest()`` [io] is the opt-in beat task (``DIGEST_ENABLED``):
each of ``DIGEST_CHANNELS`` gets the week's links grouped by theme (``services.digest``).

Import-light like ``tasks.scheduled`` (which imports this module so the app registers these):
shared tasks, bodies import the pipeline, stores and recorder lazily.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from pipeline.constants import DIGEST_TASK, FOLLOWUP_TASK, QUEUE_IO, QUEUE_LLM

log = logging.getLogger(__name__)

ROUTES = {FOLLOWUP_TASK: QUEUE_LLM, DIGEST_TASK: QUEUE_IO}
ATTEMPT = 1  # a mention is answered once: never reprocessed, redeliveries post nothing more
FOLLOWUP_STAGE_NAME = "followup_answer"
NO_ARCHIVE_TEXT = (
    "I no longer have what I read for this thread (it is kept {days} days), so I cannot answer "
    "from it. Share the link again for a fresh commentary."
)


def _followup_stage() -> Any:
    """The follow-up's one recorded step, shaped like a chain stage for the recorder (nested
    run, span, artifact); it is not in the chain's table."""
    from pipeline.stages import Stage

    def not_in_the_chain(carry: Any, deps: Any) -> Any:
        raise RuntimeError("the follow-up step is run by technoshare.answer_followup only")

    return Stage(FOLLOWUP_STAGE_NAME, QUEUE_LLM, "CHAIN", "followup_answer.json", "review",
                 not_in_the_chain, uses_llm=True)  # fmt: skip


def run_followup(task: Any, job_id: str) -> dict[str, Any]:
    from observability.recorder import get_recorder
    from pipeline.constants import HEADER_PARENT_RUN_ID
    from pipeline.followup import answer_followup
    from pipeline.models import Outcome, SlackMessage
    from pipeline.offline_model import is_offline_model
    from pipeline.render_thread import render_followup
    from services.job_store import JobStatus
    from services.posting import post_once
    from tasks import runtime

    store, sink, history, settings = (
        runtime.store(), runtime.sink(), runtime.history(), runtime.settings()
    )  # fmt: skip
    record = store.require(job_id)
    job = record.job
    new = not record.headers  # no run yet: this delivery records the follow-up
    thread_jobs = history.thread_jobs(job.channel_id, job.reply_thread_ts)
    archives = history.archives(thread_jobs)
    original = store.get(thread_jobs[0]) if thread_jobs else None
    recorder = get_recorder()
    if new:
        followup_of = original.parent_run_id if original is not None else None
        headers = recorder.begin_job(job, followup_of=followup_of)
        store.set_run(job_id, headers, headers.get(HEADER_PARENT_RUN_ID))
    else:  # a redelivered message: the same runs
        headers = record.headers
    if not archives:
        text = NO_ARCHIVE_TEXT.format(days=settings.followup_window_days)
        message = SlackMessage(channel=job.channel_id, thread_ts=job.reply_thread_ts, text=text)
    else:
        deps = runtime.deps()
        offline = is_offline_model(settings.model_for("followup")) or deps.budget.spent()
        with recorder.stage(_followup_stage(), job, headers) as obs:
            answer = answer_followup(
                job.message_text, archives, llm=None if offline else deps.llm, prompts=deps.prompts
            )
            obs.output = answer
            obs.tags.update({"followup_of_job": ",".join(thread_jobs)})
            obs.metrics.update({"cited_passages": len(answer.cited),
                                "source_does_not_say": float(answer.source_does_not_say)})  # fmt: skip
        if answer.usage.cost_usd > 0:
            deps.budget.record(answer.usage)
        message = render_followup(job, answer, archives)
    ts = post_once(store, sink, job, ATTEMPT, message)
    if new:
        recorder.end_job(job, headers, Outcome.success, reply=message)
    store.set_status(job_id, JobStatus.posted)
    return {"job_id": job_id, "reply_ts": ts, "answered_from": thread_jobs}


def start_conversation(task: Any, job: Any) -> dict[str, Any]:
    """What ``technoshare.start_job`` does with a follow-up or help job."""
    from pipeline.models import JobKind
    from pipeline.render_thread import render_help
    from services.job_store import JobStatus
    from services.posting import post_once
    from tasks import runtime

    store = runtime.store()
    if job.kind == JobKind.followup:
        store.set_status(job.job_id, JobStatus.running)
        task.app.send_task(FOLLOWUP_TASK, args=[job.job_id])
        return {"job_id": job.job_id, "followup": True}
    message = render_help(job.channel_id, job.reply_thread_ts)
    ts = post_once(store, runtime.sink(), job, ATTEMPT, message)
    store.set_status(job.job_id, JobStatus.posted)
    return {"job_id": job.job_id, "reply_ts": ts}


@shared_task(bind=True, name=DIGEST_TASK)
def weekly_digest(self: Any, days: int = 7) -> dict[str, Any]:
    from services.digest import post_digests
    from tasks import runtime

    settings = runtime.settings()
    if not settings.digest_enabled:
        return {"skipped": "DIGEST_ENABLED is false"}
    posted = post_digests(settings, runtime.history(), runtime.sink(), runtime.store(), days=days)
    return {"posted": posted}
