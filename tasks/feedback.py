"""``technoshare.record_feedback``: a 👍/👎 on a bot reply becomes MLflow feedback on the trace
of the job attempt that reply belongs to.

Published by name by the ingest (``services/feedback.py``). Idempotent: ``FEEDBACK_SEEN_KEY``
(SET NX) records each (reply, user, reaction) once, whatever Celery redelivers or Slack retries.
Recorded through the process's recorder: with MLflow down the reaction waits in the outbox like
any run record. When MLflow has not caught up with the reply yet (the job's records are still
in flight), the task retries with a backoff, then gives up with a log line.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from observability.recorder import Feedback, get_recorder
from pipeline.constants import (
    FEEDBACK_SEEN_KEY,
    FEEDBACK_SEEN_TTL_SECONDS,
    FEEDBACK_TASK,
    QUEUE_IO,
)

log = logging.getLogger(__name__)

ROUTES = {FEEDBACK_TASK: QUEUE_IO}
MAX_RETRIES = 8  # backoff 5, 10, 20, 40, 60, ... s: about six minutes in all


@shared_task(bind=True, name=FEEDBACK_TASK, max_retries=MAX_RETRIES)
def record_feedback(
    self: Any, channel: str, reply_ts: str, user: str, positive: bool, reaction: str
) -> dict[str, Any]:
    from observability.mlflow_writes import ReplyNotFound
    from tasks import runtime

    redis = runtime.store().r
    key = FEEDBACK_SEEN_KEY.format(
        channel_id=channel, reply_ts=reply_ts, user_id=user, reaction=reaction
    )
    if not redis.set(key, "1", nx=True, ex=FEEDBACK_SEEN_TTL_SECONDS):
        return {"recorded": False, "reason": "already recorded"}
    feedback = Feedback(channel, reply_ts, user, positive, reaction)
    try:
        get_recorder().record_feedback(feedback)
    except ReplyNotFound as exc:
        redis.delete(key)
        if self.request.retries >= MAX_RETRIES:
            log.warning("feedback %s by %s dropped: %s", reaction, user, exc)
            return {"recorded": False, "reason": str(exc)}
        raise self.retry(countdown=min(60, 5 * 2**self.request.retries), exc=exc) from exc
    except Exception:
        redis.delete(key)
        raise
    log.info("feedback %s by %s on reply %s/%s recorded", reaction, user, channel, reply_ts)
    return {"recorded": True, "channel": channel, "reply_ts": reply_ts}
