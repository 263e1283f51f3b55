"""From a stage's output model to the metrics, tags, span attributes and artifact of its
nested run, so each stage is recorded the same way whichever driver ran it. The artifact's
file name comes from the stage table; values the driver set explicitly in the observation's
``metrics`` / ``tags`` / ``params`` win.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from pipeline.models import (
    Commentary,
    Evidence,
    Facts,
    GateReport,
    PostedReply,
    Review,
    SlackMessage,
    StageUsage,
)
from pipeline.stages import usage_of

MAX_TAG_CHARS = 5000


def domain_of(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def tag_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_TAG_CHARS]


def artifact_text(value: Any) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    return json.dumps(value, indent=2, default=str)


@dataclass
class StageSummary:
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    span_attributes: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    usage: StageUsage | None = None


def _from_evidence(ev: Evidence, s: StageSummary) -> None:
    s.metrics.update(
        snippet_count=len(ev.snippets), source_count=len(ev.sources), evidence_chars=ev.char_count
    )
    s.tags.update(adapter_name=ev.adapter, coverage=str(ev.coverage), read=str(ev.read))
    if ev.coverage_reason:
        s.tags["coverage_reason"] = ev.coverage_reason
    s.span_attributes.update(
        url=ev.url, adapter=ev.adapter, coverage=str(ev.coverage), snippet_count=len(ev.snippets)
    )


def _from_facts(facts: Facts, s: StageSummary) -> None:
    # Sources stage A read: the shared link plus each distinct URL its fetch_url tool read.
    s.metrics.update(
        tool_call_count=facts.tool_calls,
        fact_count=len(facts.key_facts),
        source_count=1 + len(set(facts.fetched_urls)),
    )
    s.span_attributes.update(tool_calls=facts.tool_calls, fact_count=len(facts.key_facts))
    s.usage = s.usage or facts.usage


def _from_commentary(c: Commentary, s: StageSummary) -> None:
    s.tags["extractive"] = str(c.extractive).lower()
    s.metrics["project_bullet_count"] = len(c.projects)
    s.usage = s.usage or c.usage


def _from_gates(report: GateReport, s: StageSummary) -> None:
    failed = [r.name for r in report.failures]
    s.metrics.update(gate_failures=len(failed), gate_count=len(report.results))
    s.metrics["repaired"] = float(report.repaired)
    s.tags["failed_gates"] = ",".join(failed)
    s.span_attributes.update(gate_failures=len(failed), failed_gates=failed)


def _from_review(review: Review, s: StageSummary) -> None:
    _from_gates(review.report, s)
    s.tags["reply_outcome"] = str(review.message.outcome)


def _from_reply(reply: PostedReply, s: StageSummary) -> None:
    _from_message(reply.message, s)
    if reply.ts:
        s.tags["reply_ts"] = reply.ts
        s.span_attributes["reply_ts"] = reply.ts


def _from_message(msg: SlackMessage, s: StageSummary) -> None:
    s.tags.update(channel=msg.channel, reply_outcome=str(msg.outcome))
    s.span_attributes["channel"] = msg.channel


def _from_usage(usage: StageUsage, s: StageSummary) -> None:
    s.metrics.update(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
        llm_call_count=len(usage.calls),
    )
    for key in ("model", "prompt_name", "prompt_version"):
        if value := getattr(usage, key):
            s.tags[key] = value
    s.span_attributes.update(
        model=usage.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
        prompt_name=usage.prompt_name,
        prompt_version=usage.prompt_version,
    )


_BY_TYPE: tuple[tuple[type, Callable[[Any, StageSummary], None]], ...] = (
    (Evidence, _from_evidence),
    (Facts, _from_facts),
    (Commentary, _from_commentary),
    (Review, _from_review),
    (PostedReply, _from_reply),
    (GateReport, _from_gates),
    (SlackMessage, _from_message),
)


def artifact_of(output: Any) -> Any:
    """What the stage's artifact holds: the output, but only the report of a review (the
    commentary is the stage_b artifact) and only the message of a posted reply."""
    if isinstance(output, Review):
        return output.report
    if isinstance(output, PostedReply):
        return output.message
    return output


def summarize(obs: Any) -> StageSummary:
    """``obs`` is an ``observability.recorder.StageObservation``."""
    output = obs.output
    s = StageSummary(usage=usage_of(output))
    if output is not None:
        for model_type, derive in _BY_TYPE:
            if isinstance(output, model_type):
                derive(output, s)
                break
        s.artifacts[obs.stage.artifact] = artifact_text(artifact_of(output))
    if s.usage is not None and (s.usage.calls or s.usage.model):
        _from_usage(s.usage, s)
    for key, value in obs.metrics.items():
        if (number := finite(value)) is not None:
            s.metrics[key] = number
    s.tags.update({k: tag_text(v) for k, v in obs.tags.items() if v is not None})
    s.params.update({k: tag_text(v) for k, v in obs.params.items() if v is not None})
    s.metrics = {k: v for k, v in s.metrics.items() if finite(v) is not None}
    return s
