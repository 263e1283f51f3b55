"""The pass rule and the per-example metrics, on pipeline results built from the real models."""

from __future__ import annotations

from eval.dataset import load_dataset
from eval.execute import ExampleRun
from eval.results import (
    compare,
    markdown_summary,
    metric_key,
    results_document,
    run_metrics,
    summarize,
)
from eval.scorers import (
    MUST_MENTION_MIN_COVERAGE,
    outputs_from_result,
    project_themes,
    score_example,
)
from pipeline.models import (
    Commentary,
    Coverage,
    Evidence,
    Fact,
    Facts,
    GateReport,
    GateResult,
    Job,
    Outcome,
    PipelineResult,
)

EXPECT = {
    "expected_themes": ["Developer tooling"],
    "must_mention": ["HTTPX", "HTTP/2", "HTTP client"],
}


def _result(
    *,
    outcome: Outcome = Outcome.success,
    projects: tuple[str, ...] = ("**Developer tooling** — our clients use it.", "**General** — x."),
    summary: str = "HTTPX is an HTTP client for Python. It supports HTTP/2. It has a CLI. It is async.",
    gates_ok: bool = True,
) -> PipelineResult:
    job = Job(
        job_id="j1",
        url="https://github.com/encode/httpx",
        canonical_url="https://github.com/encode/httpx",
    )
    return PipelineResult(
        job=job,
        outcome=outcome,
        evidence=Evidence(
            url=job.url, canonical_url=job.url, adapter="GitHubAdapter", coverage=Coverage.partial
        ),
        facts=Facts(key_facts=[Fact(text="HTTPX supports HTTP/2.", snippet_ids=["S1"])]),
        commentary=Commentary(
            tldr=[
                "HTTPX is a Python HTTP client.",
                "It speaks HTTP/2.",
                "It has sync and async APIs.",
            ],
            summary=summary,
            projects=list(projects),
        ),
        gate_report=GateReport(
            results=[
                GateResult(name="schema", passed=True),
                GateResult(name="summary_length", passed=gates_ok),
            ]
        ),
    )


def test_a_good_result_passes_with_counts():
    row = score_example(outputs_from_result(_result()), EXPECT)
    assert row["passed"] == 1
    assert row["tldr_sentence_count"] == 3
    assert row["summary_sentence_count"] == 4
    assert row["schema_validity"] == 1
    assert row["must_mention_coverage"] == 1.0
    assert row["themes_found"] == ["Developer tooling", "General"]


def test_each_condition_of_the_pass_rule_can_fail_it():
    gate_failed = score_example(
        outputs_from_result(_result(outcome=Outcome.gate_failed, gates_ok=False)), EXPECT
    )
    assert gate_failed["passed"] == 0 and gate_failed["failed_gates"] == ["summary_length"]

    wrong_theme = score_example(
        outputs_from_result(_result(projects=("**General** — a.", "**General** — b."))), EXPECT
    )
    assert wrong_theme["theme_match"] == 0 and wrong_theme["passed"] == 0

    thin = score_example(
        outputs_from_result(
            _result(summary="A Python library. It is popular. Many use it. It is fast.")
        ),
        {**EXPECT, "must_mention": ["HTTP/2", "zstd", "brotli"]},
    )
    # TL;DR still says HTTP/2: 1 of 3 terms
    assert thin["must_mention_coverage"] < MUST_MENTION_MIN_COVERAGE
    assert thin["missing_terms"] == ["zstd", "brotli"] and thin["passed"] == 0


def test_theme_match_is_case_insensitive_and_reads_bold_leads_only():
    assert project_themes(
        ["**developer TOOLING** — a", "Developer tooling without bold", "** x"]
    ) == ["developer TOOLING"]
    row = score_example(
        outputs_from_result(_result(projects=("**developer TOOLING** — a", "**General** — b"))),
        EXPECT,
    )
    assert row["theme_match"] == 1


def test_no_commentary_scores_zero_everywhere():
    result = _result(outcome=Outcome.error)
    result.commentary = None
    result.gate_report = None
    row = score_example(outputs_from_result(result), EXPECT)
    assert row == {
        **row,
        "passed": 0,
        "schema_validity": 0,
        "tldr_sentence_count": 0,
        "gates_passed": 0,
    }


def _run(example, result: PipelineResult) -> ExampleRun:
    outputs = outputs_from_result(result)
    expectations = {
        "expected_themes": example.expected_themes,
        "must_mention": example.must_mention,
    }
    return ExampleRun(example, outputs, score_example(outputs, expectations), 0.1)


def test_metrics_results_and_comparison():
    examples = load_dataset().examples[:2]
    good = _result(
        projects=(f"**{examples[0].expected_themes[0]}** — a.", "**General** — b."),
        summary=". ".join(examples[0].must_mention) + ".",
    )
    runs = [
        _run(examples[0], good),
        _run(examples[1], _result(outcome=Outcome.gate_failed, gates_ok=False)),
    ]
    summary = summarize(runs)
    assert (
        summary["total_examples"],
        summary["passed_examples"],
        summary["overall_pass_rate"],
    ) == (2, 1, 0.5)
    metrics = run_metrics(summary, runs, 1.0)
    for name in (
        "pass_rate",
        "schema_validity",
        "tldr_sentence_count",
        "summary_sentence_count",
        "theme_match",
        "must_mention_coverage",
    ):
        assert metric_key(examples[0].id, name) in metrics
    assert metrics[metric_key(examples[0].id, "pass_rate")] == 1.0
    assert metrics["overall_pass_rate"] == 0.5 and metrics["total_examples"] == 2.0

    meta = {
        "min_pass_rate": 0.8,
        "models": {"configured": "offline/extractive"},
        "prompts_dir": "prompts",
        "duration_seconds": 1.0,
    }
    status = {"enabled": False, "model": "offline/extractive", "reason": "skipped: offline"}
    doc = results_document(
        runs=runs, summary=summary, meta=meta, judges_status=status, judge_values={}
    )
    assert all(e["judges"] == "skipped" for e in doc["examples"])
    md = markdown_summary(doc)
    assert "FAILED" in md and "50.0%" in md and "skipped: offline" in md
    assert md.count("\n| ") >= 3  # header + 2 rows

    before = {"examples": [dict(doc["examples"][0], passed=0), doc["examples"][1]]}
    changes = compare(doc, before)
    assert changes == [{"id": examples[0].id, "change": "fixed", "diffs": {"passed": (0, 1)}}]


def test_metric_keys_are_sanitized():
    from mlflow.utils.validation import _validate_metric_name

    key = metric_key("weird id/ü:1", "pass_rate")
    assert key == "weird_id___1_pass_rate"
    _validate_metric_name(key)  # raises on a key MLflow would reject
    for example in load_dataset().examples:
        _validate_metric_name(metric_key(example.id, "summary_sentence_count"))
