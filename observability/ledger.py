"""The job attempt's running totals, written by each stage, read by ``end_job``.

Stages of one job may run in different worker processes; the parent run's totals (cost,
tokens, adapter, model and prompt version of each stage, MLflow overhead) must not depend on
which stage runs were already written to MLflow when the job ends. Each stage adds its values
here; ``end_job`` reads them once. The parent run id lands here as soon as it exists, so stages
that started before that (or during an outage) still find their parent, and the right to create
a parent is claimed here, so a parent is created once whoever races for it (a claimer whose
create failed gives it back when that create cannot have made a run of its own:
``observability.mlflow_parent``).

Two stores with one interface: ``RedisLedger`` (a hash per attempt; workers on several
machines) and ``MemoryLedger`` (one process: ``technoshare run``, demo).
Fields: ``parent_run_id``, ``started_at``, ``sum:<metric>`` (added across stages),
``tag:<name>`` and ``metric:<name>`` (last value wins), ``overhead_seconds``. Beside the hash,
a list ``<key>:spans`` holds the finished spans of each stage (JSON, as MLflow's ``Span.to_dict``
gives them): ``end_job`` takes them (read and delete, one round trip) and exports them with the
root span in one call, so a job costs one trace export however many processes ran it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.constants import (
    MLFLOW_JOB_LEDGER_KEY,
    MLFLOW_JOB_LEDGER_TTL_SECONDS,
    MLFLOW_PARENT_CLAIM_TTL_SECONDS,
)

SUMMED_METRICS = ("cost_usd", "input_tokens", "output_tokens", "llm_call_count")
# stage metrics copied to the parent under the same name (last value wins)
PARENT_METRICS = ("gate_failures", "snippet_count", "source_count", "tool_call_count")
# stage tags copied to the parent: name on the parent <- (stage, name on the stage run)
PARENT_TAGS = {
    "adapter_name": ("fetch_evidence", "adapter_name"),
    "coverage": ("fetch_evidence", "coverage"),
    "failed_gates": ("quality_gates", "failed_gates"),
    "reply_ts": ("slack_post", "reply_ts"),
}
PER_STAGE_TAGS = ("model", "prompt_name", "prompt_version")  # -> "<stage>.<tag>" on the parent
SPANS_SUFFIX = ":spans"  # the list of the attempt's finished stage spans, beside its hash
# Delete a claim only if it is still the caller's (it may have expired and been taken since).
_DELETE_IF_OWNER = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


@dataclass
class LedgerTotals:
    parent_run_id: str = ""
    started_at: float | None = None
    overhead_seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    spans: list[str] = field(default_factory=list)  # JSON of the stages' finished spans


def stage_fields(
    stage: str, metrics: Mapping[str, float], tags: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, str]]:
    """(fields to add, fields to set) for one stage's values."""
    sums = {f"sum:{n}": float(metrics[n]) for n in SUMMED_METRICS if n in metrics}
    values = {f"metric:{n}": repr(float(metrics[n])) for n in PARENT_METRICS if n in metrics}
    for parent_tag, (tag_stage, name) in PARENT_TAGS.items():
        if tag_stage == stage and tags.get(name):
            values[f"tag:{parent_tag}"] = tags[name]
    for name in PER_STAGE_TAGS:
        if tags.get(name):
            values[f"tag:{stage}.{name}"] = tags[name]
    return sums, values


def totals_from(raw: Mapping[str, str]) -> LedgerTotals:
    out = LedgerTotals(parent_run_id=raw.get("parent_run_id", ""))
    if raw.get("started_at"):
        out.started_at = float(raw["started_at"])
    out.overhead_seconds = float(raw.get("overhead_seconds") or 0.0)
    for name, value in raw.items():
        if name.startswith("sum:"):
            out.metrics[name[4:]] = float(value)
        elif name.startswith("metric:"):
            out.metrics[name[7:]] = float(value)
        elif name.startswith("tag:"):
            out.tags[name[4:]] = value
    return out


class Ledger(Protocol):
    def start(self, run_key: str, job_id: str, started_at: float) -> None: ...

    def add_stage(
        self,
        run_key: str,
        stage: str,
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        overhead_seconds: float,
        spans: Sequence[str] = (),
    ) -> None: ...

    def set_parent(self, run_key: str, parent_run_id: str) -> None: ...

    def get_parent(self, run_key: str) -> str: ...

    def claim_parent(self, run_key: str, owner: str) -> bool: ...

    def release_parent(self, run_key: str, owner: str) -> None: ...  # only ``owner``'s claim

    def read(self, run_key: str) -> LedgerTotals: ...

    def finish(self, run_key: str) -> LedgerTotals: ...


class RedisLedger:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    @staticmethod
    def key(run_key: str) -> str:
        return MLFLOW_JOB_LEDGER_KEY.format(run_key=run_key)

    def start(self, run_key: str, job_id: str, started_at: float) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.key(run_key), mapping={"job_id": job_id, "started_at": repr(started_at)})
        pipe.expire(self.key(run_key), MLFLOW_JOB_LEDGER_TTL_SECONDS)
        pipe.execute()

    def add_stage(
        self,
        run_key: str,
        stage: str,
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        overhead_seconds: float,
        spans: Sequence[str] = (),
    ) -> None:
        key = self.key(run_key)
        sums, values = stage_fields(stage, metrics, tags)
        pipe = self.redis.pipeline(transaction=False)
        for name, amount in sums.items():
            pipe.hincrbyfloat(key, name, amount)
        if values:
            pipe.hset(key, mapping=values)
        pipe.hincrbyfloat(key, "overhead_seconds", overhead_seconds)
        pipe.expire(key, MLFLOW_JOB_LEDGER_TTL_SECONDS)
        if spans:
            pipe.rpush(key + SPANS_SUFFIX, *spans)
            pipe.expire(key + SPANS_SUFFIX, MLFLOW_JOB_LEDGER_TTL_SECONDS)
        pipe.execute()

    def set_parent(self, run_key: str, parent_run_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.key(run_key), "parent_run_id", parent_run_id)
        pipe.expire(self.key(run_key), MLFLOW_JOB_LEDGER_TTL_SECONDS)
        pipe.execute()

    def get_parent(self, run_key: str) -> str:
        return str(self.redis.hget(self.key(run_key), "parent_run_id") or "")

    def claim_parent(self, run_key: str, owner: str) -> bool:
        claim = self.key(run_key) + ":claim"
        return bool(self.redis.set(claim, owner, nx=True, ex=MLFLOW_PARENT_CLAIM_TTL_SECONDS))

    def release_parent(self, run_key: str, owner: str) -> None:
        self.redis.eval(_DELETE_IF_OWNER, 1, self.key(run_key) + ":claim", owner)

    def read(self, run_key: str) -> LedgerTotals:
        return totals_from(self.redis.hgetall(self.key(run_key)) or {})

    def finish(self, run_key: str) -> LedgerTotals:
        """The totals and the stages' spans, which leave Redis now: the end record carries
        them (to MLflow, or to the outbox), and a big LLM span must not sit here for days."""
        key = self.key(run_key)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(key)
        pipe.lrange(key + SPANS_SUFFIX, 0, -1)
        pipe.delete(key + SPANS_SUFFIX)
        raw, spans, _ = pipe.execute()
        totals = totals_from(raw or {})
        totals.spans = [str(s) for s in spans or ()]
        return totals


class MemoryLedger:
    """The same in one process (no Redis); entries expire like the Redis ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, str]] = {}
        self._claims: dict[str, float] = {}
        self._spans: dict[str, list[str]] = {}

    def _entry(self, run_key: str) -> dict[str, str]:
        return self._data.setdefault(run_key, {})

    def start(self, run_key: str, job_id: str, started_at: float) -> None:
        with self._lock:
            self._entry(run_key).update(job_id=job_id, started_at=repr(started_at))

    def add_stage(
        self,
        run_key: str,
        stage: str,
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        overhead_seconds: float,
        spans: Sequence[str] = (),
    ) -> None:
        sums, values = stage_fields(stage, metrics, tags)
        sums["overhead_seconds"] = overhead_seconds
        with self._lock:
            entry = self._entry(run_key)
            for name, amount in sums.items():
                entry[name] = repr(float(entry.get(name) or 0.0) + amount)
            entry.update(values)
            if spans:
                self._spans.setdefault(run_key, []).extend(spans)

    def set_parent(self, run_key: str, parent_run_id: str) -> None:
        with self._lock:
            self._entry(run_key)["parent_run_id"] = parent_run_id

    def get_parent(self, run_key: str) -> str:
        with self._lock:
            return self._data.get(run_key, {}).get("parent_run_id", "")

    def claim_parent(self, run_key: str, owner: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._claims.get(run_key, 0.0) > now:
                return False
            self._claims[run_key] = now + MLFLOW_PARENT_CLAIM_TTL_SECONDS
            return True

    def release_parent(self, run_key: str, owner: str) -> None:
        with self._lock:  # one process: every claim here is its own
            self._claims.pop(run_key, None)

    def read(self, run_key: str) -> LedgerTotals:
        with self._lock:
            return totals_from(dict(self._data.get(run_key, {})))

    def finish(self, run_key: str) -> LedgerTotals:
        with self._lock:
            totals = totals_from(dict(self._data.get(run_key, {})))
            totals.spans = self._spans.pop(run_key, [])
        return totals
