"""The job attempt's running totals in Redis, written by each stage, read by ``end_job``.

Stages of one job run in different worker processes; the parent run's totals (cost, tokens,
adapter, model and prompt version of each stage, MLflow overhead) must not depend on which
stage runs were already written to MLflow when the job ends. Each stage adds its values here
in one pipelined round trip on its own thread; ``end_job`` reads the hash once. The parent run
id lands here as soon as the writer has created the run, so stages that started before that
(or during an outage) still find their parent.

Fields: ``parent_run_id``, ``started_at``, ``sum:<metric>`` (added across stages and attempts),
``tag:<name>`` and ``metric:<name>`` (last value wins), ``overhead_seconds``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.constants import MLFLOW_JOB_LEDGER_KEY, MLFLOW_JOB_LEDGER_TTL_SECONDS

log = logging.getLogger("observability")

SUMMED_METRICS = ("cost_usd", "input_tokens", "output_tokens", "llm_call_count")
# stage metrics copied to the parent under the same name (last value wins)
PARENT_METRICS = ("gate_failures", "snippet_count", "source_count", "tool_call_count")
# stage tags copied to the parent: name on the parent <- (stage, name on the stage run)
PARENT_TAGS = {
    "adapter_name": ("retrieval", "adapter_name"),
    "coverage": ("retrieval", "coverage"),
    "failed_gates": ("quality_gates", "failed_gates"),
    "reply_ts": ("slack_post", "reply_ts"),
}
PER_STAGE_TAGS = ("model", "prompt_name", "prompt_version")  # -> "<stage>.<tag>" on the parent


def ledger_key(run_key: str) -> str:
    return MLFLOW_JOB_LEDGER_KEY.format(run_key=run_key)


@dataclass
class LedgerTotals:
    parent_run_id: str = ""
    started_at: float | None = None
    overhead_seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def queue_start(pipe: Any, run_key: str, job_id: str, started_at: float) -> None:
    """Add the ledger's creation to ``pipe`` (a Redis pipeline the caller executes)."""
    key = ledger_key(run_key)
    pipe.hset(key, mapping={"job_id": job_id, "started_at": repr(started_at)})
    pipe.expire(key, MLFLOW_JOB_LEDGER_TTL_SECONDS)


def set_parent(redis: Any, run_key: str, parent_run_id: str) -> None:
    key = ledger_key(run_key)
    pipe = redis.pipeline(transaction=False)
    pipe.hset(key, "parent_run_id", parent_run_id)
    pipe.expire(key, MLFLOW_JOB_LEDGER_TTL_SECONDS)
    pipe.execute()


def get_parent(redis: Any, run_key: str) -> str:
    return str(redis.hget(ledger_key(run_key), "parent_run_id") or "")


def queue_stage(
    pipe: Any,
    run_key: str,
    stage: str,
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    overhead_seconds: float,
) -> None:
    """Add a stage's values (and the hook's overhead) to ``pipe``; the caller executes it, in
    the same round trip as its other Redis writes."""
    key = ledger_key(run_key)
    for name in SUMMED_METRICS:
        if name in metrics:
            pipe.hincrbyfloat(key, f"sum:{name}", float(metrics[name]))
    values: dict[str, str] = {}
    for name in PARENT_METRICS:
        if name in metrics:
            values[f"metric:{name}"] = repr(float(metrics[name]))
    for parent_tag, (tag_stage, name) in PARENT_TAGS.items():
        if tag_stage == stage and tags.get(name):
            values[f"tag:{parent_tag}"] = tags[name]
    for name in PER_STAGE_TAGS:
        if tags.get(name):
            values[f"tag:{stage}.{name}"] = tags[name]
    if values:
        pipe.hset(key, mapping=values)
    pipe.hincrbyfloat(key, "overhead_seconds", overhead_seconds)
    pipe.expire(key, MLFLOW_JOB_LEDGER_TTL_SECONDS)


def read(redis: Any, run_key: str) -> LedgerTotals:
    raw: dict[str, str] = redis.hgetall(ledger_key(run_key)) or {}
    out = LedgerTotals(parent_run_id=raw.get("parent_run_id", ""))
    if raw.get("started_at"):
        out.started_at = float(raw["started_at"])
    out.overhead_seconds = float(raw.get("overhead_seconds") or 0.0)
    for field_name, value in raw.items():
        if field_name.startswith("sum:"):
            out.metrics[field_name[4:]] = float(value)
        elif field_name.startswith("metric:"):
            out.metrics[field_name[7:]] = float(value)
        elif field_name.startswith("tag:"):
            out.tags[field_name[4:]] = value
    return out
