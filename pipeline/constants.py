"""Redis key prefixes, task header names, queue names and TTLs, in one place.

Every key the service writes to Redis starts with ``KEY_PREFIX`` so one Redis can be shared
and ``redis-cli --scan --pattern 'ts:*'`` shows everything of ours.
"""

from __future__ import annotations

KEY_PREFIX = "ts:"

# --- Redis keys ------------------------------------------------------------------------------
# Job record (hash). TTL: 30 days, so `technoshare reprocess` and the repeat-link lookup work
# for a month; longer history lives in MLflow.
JOB_KEY = KEY_PREFIX + "job:{job_id}"
JOB_TTL_SECONDS = 30 * 24 * 3600
# What each stage task of a job saw (hash: stage -> JSON of attempt, task, retries, headers), for
# diagnosing delivery. TTL: 1 day from the last stage; apart from the record because it is as
# large as the rest of it and is not needed once the job is done.
JOB_SEEN_KEY = KEY_PREFIX + "seen:{job_id}"
JOB_SEEN_TTL_SECONDS = 24 * 3600

# Slack event ids already accepted (SET NX). TTL: 1 hour; Slack retries an event for a few
# minutes at most (3 retries with backoff), so an hour is ample and keeps the set small.
EVENT_SEEN_KEY = KEY_PREFIX + "event:{event_id}"
EVENT_SEEN_TTL_SECONDS = 3600

# (channel, message ts, canonical url) already enqueued (SET NX). TTL: 1 day; covers Slack's
# duplicate deliveries without a retry header and message_changed edits of the same message.
MESSAGE_LINK_SEEN_KEY = KEY_PREFIX + "msglink:{channel_id}:{message_ts}:{url_hash}"
MESSAGE_LINK_SEEN_TTL_SECONDS = 24 * 3600

# Latest answered job for a canonical URL in a channel (string: job id). TTL: set per write to
# REPEAT_WINDOW_DAYS (a setting), after which the link is analysed afresh.
CHANNEL_URL_KEY = KEY_PREFIX + "chanurl:{channel_id}:{url_hash}"

# Posting lock for a job (SET NX with the worker id). TTL: 2 minutes, longer than one Slack
# call with its timeout, so a worker that died mid-post releases it.
POST_LOCK_KEY = KEY_PREFIX + "postlock:{job_id}"
POST_LOCK_TTL_SECONDS = 120
# Looking for a channel-level reply whose post answer was lost (conversations.history): from the
# time the post started less this margin, for clock skew between a worker and Slack.
POST_LOOKUP_MARGIN_SECONDS = 60

# A link being answered in a channel (SET NX: the job id), claimed when its job starts so a second
# message with the same link is answered as a duplicate instead of a second commentary. Replaced
# by CHANNEL_URL_KEY when the job is answered, released when it fails, honoured only while the
# holder is still in flight. TTL: 10 minutes, past a job's whole chain with retries, so a holder
# that vanished blocks nothing for long.
LINK_CLAIM_KEY = KEY_PREFIX + "linkclaim:{channel_id}:{url_hash}"
LINK_CLAIM_TTL_SECONDS = 600

# MLflow records made while MLflow was down (stream), replayed when it is back. No TTL:
# records must not be lost; the stream is trimmed to MAXLEN entries as a safety net.
MLFLOW_OUTBOX_STREAM = KEY_PREFIX + "mlflow:outbox"
MLFLOW_OUTBOX_MAXLEN = 100_000
# One replayer at a time (SET NX). TTL: 2 minutes, longer than one replay batch.
MLFLOW_OUTBOX_LOCK_KEY = KEY_PREFIX + "mlflow:outbox:lock"
MLFLOW_OUTBOX_LOCK_TTL_SECONDS = 120

# Per job attempt (hash, keyed by the attempt's trace id): the parent run id once created and the
# running totals every stage adds to (cost, tokens, tags, MLflow overhead), read by end_job to
# write the parent's totals whichever worker ran each stage. TTL: 2 days (a job takes minutes;
# the margin covers an MLflow outage replayed the next day).
MLFLOW_JOB_LEDGER_KEY = KEY_PREFIX + "mlflow:run:{run_key}"
MLFLOW_JOB_LEDGER_TTL_SECONDS = 2 * 24 * 3600

# Who creates an attempt's parent run (SET NX next to its ledger). TTL: 1 minute; a creator
# that died lets another process (a replay) create it after that.
MLFLOW_PARENT_CLAIM_TTL_SECONDS = 60
# In-process drivers (technoshare run, demo, eval) keep their outbox in a JSON-lines file
# under STATE_DIR instead: it survives the process, and the next run replays it.
MLFLOW_OUTBOX_FILE = "mlflow-outbox.jsonl"
# Each process that records drains the outbox while MLflow is up, checking this often.
MLFLOW_OUTBOX_DRAIN_SECONDS = 5.0

# LLM spend per UTC day in USD (float counter). TTL: 2 days, only today's value is read.
LLM_SPEND_KEY = KEY_PREFIX + "llm:spend:{day}"
LLM_SPEND_TTL_SECONDS = 2 * 24 * 3600

# The shared LLM rate-limit window of a model or provider (sorted set: one member per call let
# through, "<id>:<tokens>", scored by Redis time in ms). Expires with its window.
LLM_RATE_KEY = KEY_PREFIX + "llm:rate:{limit_key}"
# A validated LLM answer ({"model", "content"} JSON) by cache key. TTL: LLM_CACHE_TTL_SECONDS.
LLM_CACHE_KEY = KEY_PREFIX + "llm:cache:{key}"

# Alerts already sent for a breach (SET NX). TTL: 1 day, one alert per breach per day.
ALERT_SENT_KEY = KEY_PREFIX + "alert:{name}:{day}"
ALERT_SENT_TTL_SECONDS = 24 * 3600

# A 👍/👎 reaction already recorded as MLflow feedback (SET NX). TTL: 1 day; covers Celery's
# at-least-once redelivery and Slack's retries of the reaction event.
FEEDBACK_SEEN_KEY = KEY_PREFIX + "feedback:{channel_id}:{reply_ts}:{user_id}:{reaction}"
FEEDBACK_SEEN_TTL_SECONDS = 24 * 3600

# The team's history (services/history_store.py). Per channel, a sorted set of answered job ids
# scored by when they were posted (pruned past HISTORY_TTL_DAYS, a setting, and to
# HISTORY_MAX_ENTRIES), and one JSON entry per job with the same TTL: "Shared before" and the
# weekly digest read them.
HISTORY_KEY = KEY_PREFIX + "history:{channel_id}"
HISTORY_ENTRY_KEY = KEY_PREFIX + "history:entry:{job_id}"
# The jobs that replied in a thread (set of job ids) and each job's evidence and facts
# (zlib-compressed JSON): what a follow-up question in that thread is answered from. TTL:
# FOLLOWUP_WINDOW_DAYS, a setting.
THREAD_JOBS_KEY = KEY_PREFIX + "thread:{channel_id}:{thread_ts}"
JOB_ARCHIVE_KEY = KEY_PREFIX + "archive:{job_id}"

# Evidence read for a canonical URL (zlib-compressed JSON), reused by a job of the same link
# within EVIDENCE_CACHE_TTL_SECONDS (a setting).
EVIDENCE_CACHE_KEY = KEY_PREFIX + "evidence:{url_hash}"

# --- Celery task names that are published by name (the stages' come from pipeline.stages)
FEEDBACK_TASK = "technoshare.record_feedback"
START_JOB_TASK = "technoshare.start_job"
FOLLOWUP_TASK = "technoshare.answer_followup"  # a question to the bot in one of its threads
DIGEST_TASK = "technoshare.weekly_digest"

# --- Celery task headers (propagated to every task of a chain, its retries and spawned tasks)
HEADER_JOB_ID = "ts_job_id"
HEADER_PARENT_RUN_ID = "ts_parent_run_id"
HEADER_TRACEPARENT = "traceparent"
HEADER_TRACESTATE = "tracestate"
PROPAGATED_HEADERS = (HEADER_JOB_ID, HEADER_PARENT_RUN_ID, HEADER_TRACEPARENT, HEADER_TRACESTATE)

# --- queues ----------------------------------------------------------------------------------
QUEUE_IO = "io"  # fetch_evidence, feedback, alerts, the outbox replay (may be slow: remote sites)
QUEUE_LLM = "llm"  # stage_a, stage_b, quality_gates (sized on its own: LLM concurrency)
# slack_post, the failure note (job_failed), start_job and reprocess: short, bounded tasks that
# post to Slack. A queue of their own so a slow site holding every io process never delays a
# reply that is ready.
QUEUE_POST = "post"
QUEUES = (QUEUE_IO, QUEUE_LLM, QUEUE_POST)
