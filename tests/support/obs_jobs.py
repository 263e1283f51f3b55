"""Simulated stage tasks for the observability tests: each runs in a worker process the way a
Celery task does (headers in, ``observability.hooks`` around the stage), without Celery.

URL hooks: ``/boom`` makes stage_b fail; ``/gatefail`` makes a gate fail. ``TS_TEST_LLM_DELAY``
(seconds) is the stub model's fixed latency (benchmarks).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from observability import hooks
from pipeline.errors import LLMOutputError
from pipeline.models import (
    Commentary,
    Coverage,
    Evidence,
    Fact,
    Facts,
    GateReport,
    GateResult,
    Job,
    LLMCall,
    Outcome,
    ReadKind,
    SlackMessage,
    Snippet,
    Source,
    StageUsage,
)

MODEL = "openai/gpt-4o-mini"
CALL_COST = 0.0015  # per stub LLM call, so totals are checkable
REPLY_TS = "1700000000.000200"


def make_job(job_id: str, url: str, *, channel: str = "C0SHARE", user: str = "UALICE") -> Job:
    return Job(
        job_id=job_id,
        channel_id=channel,
        message_ts="1700000000.000100",
        user_id=user,
        message_text=f"look at <{url}>",
        url=url,
        canonical_url=url,
    )


def adapter_for(url: str) -> str:
    if "arxiv.org" in url:
        return "ArxivAdapter"
    if "github.com" in url:
        return "GitHubAdapter"
    return "WebPageAdapter"


def _llm_call(stage: str, text: str) -> LLMCall:
    """One model call: a real ``litellm.completion`` (mocked answer) when litellm is wanted, so
    the autologged LLM span appears under the stage span; else just the fixed latency."""
    delay = float(os.environ.get("TS_TEST_LLM_DELAY") or 0)
    if os.environ.get("TS_TEST_LITELLM") == "1":
        import litellm

        litellm.completion(
            model=MODEL,
            messages=[{"role": "user", "content": f"{stage}: {text}"}],
            mock_response=f"answer for {stage}",
            mock_delay=delay or None,
        )
    elif delay:
        time.sleep(delay)
    return LLMCall(model=MODEL, input_tokens=100, output_tokens=40, cost_usd=CALL_COST)


def _usage(stage: str, text: str) -> StageUsage:
    return StageUsage(
        model=MODEL,
        prompt_name=stage,
        prompt_version="3",
        calls=[_llm_call(stage, text)],
    )


def run_stage(stage: str, job_json: dict[str, Any], headers: dict[str, str], carry: dict) -> dict:
    job = Job.model_validate(job_json)
    with hooks.stage_run(stage, job, headers) as rec:
        if stage == "retrieval":
            evidence = Evidence(
                url=job.url,
                canonical_url=job.canonical_url,
                adapter=adapter_for(job.url),
                sources=[Source(url=job.url, title="A title")],
                snippets=[Snippet(id=f"S{i}", text=f"Sentence {i}.") for i in range(1, 4)],
                read=ReadKind.full_text,
                coverage=Coverage.full,
                char_count=30,
            )
            rec.artifacts["evidence.json"] = evidence
            carry["evidence"] = evidence.model_dump(mode="json")
        elif stage == "stage_a":
            facts = Facts(
                title="A title",
                key_facts=[Fact(text="A fact.", snippet_ids=["S1"])],
                tool_calls=1,
                fetched_urls=["https://docs.example.org/x"],
                usage=_usage(stage, job.url),
            )
            rec.usage = facts.usage
            rec.artifacts["stage_a_facts.json"] = facts
            carry["facts"] = facts.model_dump(mode="json")
        elif stage == "stage_b":
            usage = _usage(stage, job.url)
            if "/boom" in job.url:
                raise LLMOutputError("stub model answered nonsense twice")
            commentary = Commentary(
                tldr=["a"], summary="A summary.", projects=["**General** — x"], usage=usage
            )
            rec.usage = usage
            rec.artifacts["stage_b_commentary.json"] = commentary
        elif stage == "quality_gates":
            failed = "/gatefail" in job.url
            report = GateReport(
                results=[
                    GateResult(name="tldr_items", passed=True),
                    GateResult(name="summary_length", passed=not failed, detail="too short"),
                ]
            )
            rec.artifacts["gate_report.json"] = report
            carry["outcome"] = (Outcome.gate_failed if failed else Outcome.success).value
        elif stage == "slack_post":
            message = reply_for(job, Outcome(carry.get("outcome", "success")))
            rec.artifacts["slack_payload.json"] = message
            rec.tags["reply_ts"] = REPLY_TS
            carry["posted_at"] = time.time()
    if stage == "slack_post":
        message = reply_for(job, Outcome(carry.get("outcome", "success")))
        hooks.end_job(job, headers, message.outcome, reply=message)
    return carry


def reply_for(job: Job, outcome: Outcome) -> SlackMessage:
    return SlackMessage(
        channel=job.channel_id,
        thread_ts=job.message_ts,
        text=f"Commentary on {job.url} ({outcome.value})",
        outcome=outcome,
    )


def fail_job(job_json: dict[str, Any], headers: dict[str, str], error: str) -> None:
    """The chain's error callback: one short note, then end_job(error)."""
    job = Job.model_validate(job_json)
    note = SlackMessage(channel=job.channel_id, text="Sorry, that failed.", outcome=Outcome.error)
    hooks.end_job(job, headers, Outcome.error, reply=note, error=error)


def in_thread(fn: Any, *args: Any) -> Any:
    """Run ``fn`` on a fresh thread of this process, as a ``-P threads`` worker does."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_stage_threaded(stage: str, job_json: dict, headers: dict, carry: dict) -> dict:
    return in_thread(run_stage, stage, job_json, headers, carry)


def overhead() -> float:
    from observability import overhead_seconds

    return overhead_seconds()


def flush() -> bool:
    from observability.mlflow_backend import flush as flush_writer

    return flush_writer(15.0)
