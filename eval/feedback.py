"""User reactions as MLflow feedback, and 👎 jobs back into the eval dataset.

The ``technoshare.record_feedback`` task records a reaction through the recorder
(``observability.mlflow_writes.apply_feedback``): it finds the job attempt whose reply is the
reacted message - the parent run of ``MLFLOW_EXPERIMENT`` tagged with that ``channel_id`` and
``reply_ts`` - and logs a ``user_reaction`` feedback (True for 👍, False for 👎, source HUMAN =
the Slack user id) on that attempt's trace. The run also gets the tag
``user_feedback=positive|negative`` (latest reaction), which is how ``add-from-feedback`` here
finds the 👎 jobs without scanning every trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from observability.mlflow_writes import FEEDBACK_NAME, FEEDBACK_TAG, trace_id_of
from pipeline.settings import Settings


def _clients(settings: Settings) -> tuple[Any, Any]:
    from mlflow.tracing.client import TracingClient
    from mlflow.tracking import MlflowClient

    uri = settings.effective_tracking_uri()
    return MlflowClient(tracking_uri=uri), TracingClient(tracking_uri=uri)


def _job_experiment(client: Any, settings: Settings) -> str | None:
    found = client.get_experiment_by_name(settings.mlflow_experiment)
    return str(found.experiment_id) if found is not None else None


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
