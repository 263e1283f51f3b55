"""User reactions as MLflow feedback, and 👎 jobs back into the eval dataset.

``record_reaction`` (run by the ``technoshare.record_feedback`` task) finds the job attempt
whose reply is the reacted message - the parent run of ``MLFLOW_EXPERIMENT`` tagged with that
``channel_id`` and ``reply_ts`` - and logs a ``user_reaction`` feedback (True for 👍, False for
👎, source HUMAN = the Slack user id) on that attempt's trace (the trace id derives from the
run's ``ts_run_key``, the attempt's W3C trace id). The run also gets the tag
``user_feedback=positive|negative`` (latest reaction), which is how ``add-from-feedback`` finds
the 👎 jobs without scanning every trace.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.settings import Settings

FEEDBACK_NAME = "user_reaction"
FEEDBACK_TAG = "user_feedback"
RUN_KEY_TAG = "ts_run_key"  # observability/records.py: the attempt's trace id (hex)
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # Slack channel ids and message timestamps
_OTEL_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class ReplyNotFound(LookupError):
    """No job run records this reply yet (MLflow is behind, or it is not our reply)."""


@dataclass
class FeedbackRecord:
    trace_id: str
    run_id: str
    job_id: str


def _clients(settings: Settings) -> tuple[Any, Any]:
    from mlflow.tracing.client import TracingClient
    from mlflow.tracking import MlflowClient

    uri = settings.effective_tracking_uri()
    return MlflowClient(tracking_uri=uri), TracingClient(tracking_uri=uri)


def _job_experiment(client: Any, settings: Settings) -> str | None:
    found = client.get_experiment_by_name(settings.mlflow_experiment)
    return str(found.experiment_id) if found is not None else None


def find_reply_run(client: Any, experiment_id: str, channel: str, reply_ts: str) -> Any | None:
    if not (_SAFE.match(channel) and _SAFE.match(reply_ts)):
        return None
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.channel_id = '{channel}' and tags.reply_ts = '{reply_ts}'",
        max_results=10,
    )
    jobs = [
        r
        for r in runs
        if "mlflow.parentRunId" not in r.data.tags and r.data.tags.get("run_kind", "job") == "job"
    ]
    return jobs[0] if jobs else None


def trace_id_of(run: Any) -> str | None:
    from mlflow.tracing.utils import generate_mlflow_trace_id_from_otel_trace_id

    key = run.data.tags.get(RUN_KEY_TAG, "")
    if _OTEL_TRACE_ID.match(key):
        return str(generate_mlflow_trace_id_from_otel_trace_id(int(key, 16)))
    return None


def record_reaction(
    settings: Settings, *, channel: str, reply_ts: str, user: str, positive: bool, reaction: str
) -> FeedbackRecord:
    """Log the reaction on the right trace; ``ReplyNotFound`` when it cannot be placed yet."""
    from mlflow.entities import AssessmentSource, AssessmentSourceType, Feedback

    client, tracing = _clients(settings)
    experiment_id = _job_experiment(client, settings)
    run = find_reply_run(client, experiment_id, channel, reply_ts) if experiment_id else None
    if run is None:
        raise ReplyNotFound(f"no job run with reply {channel}/{reply_ts}")
    trace_id = trace_id_of(run)
    if trace_id is None:
        raise ReplyNotFound(f"job run {run.info.run_id} has no trace id")
    try:
        tracing.get_trace_info(trace_id)
    except Exception as exc:  # the trace export may lag the run's tags
        raise ReplyNotFound(f"trace {trace_id} of run {run.info.run_id} not found") from exc
    job_id = run.data.tags.get("job_id", "")
    tracing.log_assessment(
        trace_id,
        Feedback(
            name=FEEDBACK_NAME,
            value=positive,
            source=AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id=user),
            rationale=f":{reaction}: on the bot's reply in Slack",
            metadata={"channel": channel, "reply_ts": reply_ts, "job_id": job_id},
        ),
    )
    client.set_tag(run.info.run_id, FEEDBACK_TAG, "positive" if positive else "negative")
    return FeedbackRecord(trace_id=trace_id, run_id=run.info.run_id, job_id=job_id)


@dataclass
class DislikedJob:
    job_id: str
    run_id: str
    url: str
    message_text: str
    user: str | None


def disliked_jobs(settings: Settings, *, days: int = 30) -> list[DislikedJob]:
    """Job runs whose latest reaction was 👎, newest first."""
    client, tracing = _clients(settings)
    experiment_id = _job_experiment(client, settings)
    if experiment_id is None:
        return []
    since = int((datetime.now(UTC) - timedelta(days=days)).timestamp() * 1000)
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{FEEDBACK_TAG} = 'negative' and attributes.start_time >= {since}",
        order_by=["attributes.start_time DESC"],
        max_results=500,
    )
    found = []
    for run in runs:
        tags = run.data.tags
        message, user = "", None
        trace_id = trace_id_of(run)
        if trace_id:
            try:  # the message as the job saw it: the trace's root inputs
                info = tracing.get_trace_info(trace_id)
                inputs = info.request_metadata.get("mlflow.traceInputs") or "{}"
                request = json.loads(inputs)
                message = str(request.get("message") or "")
            except Exception:  # no trace: fall back to the bare link
                message = ""
            user = _first_dislike_user(tracing, trace_id)
        url = tags.get("target_url", "")
        found.append(
            DislikedJob(
                job_id=tags.get("job_id", ""),
                run_id=run.info.run_id,
                url=url,
                message_text=message or f"<{url}>",
                user=user,
            )
        )
    return found


def _first_dislike_user(tracing: Any, trace_id: str) -> str | None:
    try:
        trace = tracing.get_trace(trace_id)
    except Exception:
        return None
    for a in trace.info.assessments:
        if a.name == FEEDBACK_NAME and getattr(a, "value", None) is False:
            return str(a.source.source_id)
    return None
