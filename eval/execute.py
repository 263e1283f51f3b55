"""Run the pipeline on every dataset example, offline, with a simple progress bar on stderr.

Each example becomes a :class:`Job` (channel ``eval``, the example's Slack message text) and goes
through ``services.runner.run_job`` exactly as ``technoshare run --recorded`` would: fetch
from the recorded web (``RecordedWeb``), stage A, stage B, gates with the one repair. An
exception that is not a ``TechnoShareError`` is a pipeline bug: the example is recorded as a
``crash`` (and fails) so one bug does not hide the other results.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from eval.dataset import EvalExample
from eval.scorers import outputs_from_result, score_example
from pipeline.models import Job, PipelineResult
from pipeline.settings import Settings


@dataclass
class ExampleRun:
    example: EvalExample
    outputs: dict[str, Any]
    scores: dict[str, Any]
    duration_seconds: float
    models: list[str] = field(default_factory=list)
    cost_usd: float = 0.0

    @property
    def expectations(self) -> dict[str, Any]:
        return expectations_of(self.example)


def expectations_of(example: EvalExample) -> dict[str, Any]:
    return {
        "expected_themes": example.expected_themes,
        "must_mention": example.must_mention,
        "followups": [f.model_dump() for f in example.followups],
    }


def answer_followups(example: EvalExample, result: PipelineResult, deps: Any) -> list[dict]:
    """Each follow-up question answered as the worker would, from this run's evidence and
    facts (the offline model: the extractive answer)."""
    from pipeline.errors import TechnoShareError
    from pipeline.followup import ArchivedJob, answer_followup
    from pipeline.offline_model import is_offline_model

    if not example.followups or result.evidence is None or result.facts is None:
        return []
    job, facts = result.job, result.facts
    archive = ArchivedJob(
        job=job, title=(facts.title or result.evidence.title or job.url),
        snippets=[*result.evidence.snippets, *facts.fetched_snippets], facts=facts,
    )  # fmt: skip
    llm = None if is_offline_model(deps.settings.model_for("followup")) else deps.llm
    answers = []
    for case in example.followups:
        try:
            answer = answer_followup(case.question, [archive], llm=llm, prompts=deps.prompts)
        except TechnoShareError as exc:  # the model failed: this answer fails, the run goes on
            answers.append({"question": case.question, "text": f"error: {exc}",
                            "does_not_say": False, "gates_passed": False})  # fmt: skip
            continue
        answers.append({"question": case.question, "text": answer.text,
                        "does_not_say": answer.source_does_not_say,
                        "gates_passed": answer.report.passed})  # fmt: skip
    return answers


class Progress:
    """``[#####.....] 12/27 gh-httpx success 0.4s``: redrawn in place on a terminal, one line
    per example otherwise (CI logs)."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 24) -> None:
        self.total, self.done, self.width = total, 0, width
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, label: str, status: str) -> None:
        self.done += 1
        filled = round(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        line = f"[{bar}] {self.done}/{self.total} {label} {status}"
        if self.tty:
            end = "\n" if self.done == self.total else ""
            self.stream.write(f"\r\x1b[2K{line}{end}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def make_eval_job(example: EvalExample) -> Job:
    from pipeline.links import canonical_url, normalize_url

    canonical = canonical_url(example.url)
    return Job(
        job_id=Job.make_id("eval", example.id, canonical),
        channel_id="eval",
        message_ts=example.id,
        message_text=example.message_text,
        url=normalize_url(example.url),
        canonical_url=canonical,
    )


@contextmanager
def recorded_deps(
    settings: Settings, *, prompts_dir: Path | None = None, recorded_dir: Path | None = None
) -> Iterator[Any]:
    """Pipeline dependencies with every request served by the recorded web (offline), and
    the prompt files under evaluation (the repository's, or ``prompts_dir``)."""
    from pipeline.fetch import SafeFetcher
    from pipeline.prompting import PROMPTS_DIR, FilePromptSource
    from services.recorded_web import RecordedWeb
    from services.wiring import build_deps

    web = RecordedWeb(recorded_dir) if recorded_dir else RecordedWeb()
    fetcher = SafeFetcher(settings, transport=web.transport, resolver=web.resolver)
    deps = build_deps(settings, fetcher=fetcher)
    deps.prompts = FilePromptSource(prompts_dir or PROMPTS_DIR)
    try:
        yield deps
    finally:
        deps.close()


def _usage_of(result: PipelineResult) -> tuple[list[str], float]:
    usages = [
        u
        for u in (
            result.facts and result.facts.usage,
            result.commentary and result.commentary.usage,
        )
        if u
    ]
    models = sorted({c.model for u in usages for c in u.calls if c.model})
    return models, sum(u.cost_usd for u in usages)


def run_example(example: EvalExample, deps: Any) -> ExampleRun:
    from observability.recorder import NULL_RECORDER
    from services.runner import run_job

    started = time.perf_counter()
    try:  # evaluate records each example as its own trace: no job runs here
        result = run_job(make_eval_job(example), deps, NULL_RECORDER)
    except Exception as exc:  # a bug in the pipeline: record it, keep evaluating the rest
        outputs: dict[str, Any] = {
            "outcome": "crash",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8),
            "commentary": None,
            "gates": [],
            "facts": [],
        }
        models: list[str] = []
        cost = 0.0
    else:
        outputs = outputs_from_result(result)
        outputs["followups"] = answer_followups(example, result, deps)
        models, cost = _usage_of(result)
    duration = time.perf_counter() - started
    scores = score_example(outputs, expectations_of(example))
    return ExampleRun(example, outputs, scores, duration, models, cost)


def run_examples(examples: list[EvalExample], deps: Any, progress: Progress) -> list[ExampleRun]:
    runs = []
    for example in examples:
        run = run_example(example, deps)
        verdict = "PASS" if run.scores["passed"] else "FAIL"
        progress.step(example.id, f"{run.outputs['outcome']} {verdict} {run.duration_seconds:.1f}s")
        runs.append(run)
    return runs
