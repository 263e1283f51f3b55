"""What an eval run produces besides the MLflow evaluation view: the run's metrics, the
``eval_results.json`` document, a markdown summary for PR comments, and the per-example
comparison with an earlier run (``--compare RUN_ID``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from eval.execute import ExampleRun
from eval.scorers import MUST_MENTION_MIN_COVERAGE

RESULTS_ARTIFACT = "eval_results.json"
SUMMARY_ARTIFACT = "eval_summary.md"
PASS_RULE = (
    "pass = quality gates passed (outcome success) AND must-mention coverage >= "
    f"{MUST_MENTION_MIN_COVERAGE} AND a projects bullet leads with an expected theme"
)
PER_EXAMPLE_METRICS = (
    ("pass_rate", "passed"),
    ("schema_validity", "schema_validity"),
    ("tldr_sentence_count", "tldr_sentence_count"),
    ("summary_sentence_count", "summary_sentence_count"),
    ("theme_match", "theme_match"),
    ("must_mention_coverage", "must_mention_coverage"),
    ("gates_passed", "gates_passed"),
)
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-.]")


def metric_key(example_id: str, name: str) -> str:
    """``{id}_{name}`` with anything MLflow would reject in a metric key replaced by ``_``."""
    return f"{_METRIC_UNSAFE.sub('_', example_id)}_{name}"


def _rate(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def summarize(runs: list[ExampleRun]) -> dict[str, Any]:
    total = len(runs)
    passed = sum(r.scores["passed"] for r in runs)
    outcomes: dict[str, int] = defaultdict(int)
    for r in runs:
        outcomes[r.outputs["outcome"]] += 1
    by_kind: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        by_kind[r.example.kind].append(r.scores["passed"])
    return {
        "total_examples": total,
        "passed_examples": passed,
        "overall_pass_rate": _rate([r.scores["passed"] for r in runs]),
        "gate_pass_rate": _rate([r.scores["gates_passed"] for r in runs]),
        "schema_validity_rate": _rate([r.scores["schema_validity"] for r in runs]),
        "theme_match_rate": _rate([r.scores["theme_match"] for r in runs]),
        "mean_must_mention_coverage": _rate([r.scores["must_mention_coverage"] for r in runs]),
        "outcomes": dict(outcomes),
        "pass_rate_by_kind": {k: _rate(v) for k, v in sorted(by_kind.items())},
        "total_cost_usd": round(sum(r.cost_usd for r in runs), 6),
    }


def run_metrics(
    summary: dict[str, Any], runs: list[ExampleRun], duration: float
) -> dict[str, float]:
    metrics: dict[str, float] = {
        k: float(v)
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    for outcome in ("success", "gate_failed", "error", "crash"):
        metrics[f"{outcome}_examples"] = float(summary["outcomes"].get(outcome, 0))
    for kind, rate in summary["pass_rate_by_kind"].items():
        metrics[f"pass_rate_{kind}"] = rate
    metrics["eval_duration_seconds"] = round(duration, 3)
    for r in runs:
        for name, key in PER_EXAMPLE_METRICS:
            metrics[metric_key(r.example.id, name)] = float(r.scores[key])
    return metrics


def example_record(run: ExampleRun, judges: dict[str, Any] | None) -> dict[str, Any]:
    e = run.example
    return {
        "id": e.id,
        "kind": e.kind,
        "url": e.url,
        "tags": e.tags,
        "recorded": e.recorded.model_dump(),
        "expected_themes": e.expected_themes,
        "must_mention": e.must_mention,
        "outcome": run.outputs["outcome"],
        "error": run.outputs.get("error"),
        **run.scores,
        "gates": run.outputs.get("gates", []),
        "duration_seconds": round(run.duration_seconds, 3),
        "cost_usd": round(run.cost_usd, 6),
        "commentary": run.outputs.get("commentary"),
        "judges": judges if judges is not None else "skipped",
    }


def results_document(
    *,
    runs: list[ExampleRun],
    summary: dict[str, Any],
    meta: dict[str, Any],
    judges_status: dict[str, Any],
    judge_values: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        **meta,
        "pass_rule": PASS_RULE,
        "must_mention_min_coverage": MUST_MENTION_MIN_COVERAGE,
        "summary": summary,
        "judges": judges_status,
        "examples": [
            example_record(r, judge_values.get(r.example.id) if judges_status["enabled"] else None)
            for r in runs
        ],
    }


# --- human-readable output -------------------------------------------------------------------
def _why(ex: dict[str, Any]) -> str:
    if ex["passed"]:
        return ""
    reasons = []
    if not ex["gates_passed"]:
        failed = ", ".join(ex.get("failed_gates") or []) or (ex.get("error") or ex["outcome"])
        reasons.append(f"{ex['outcome']}: {failed}")
    if ex["must_mention_coverage"] < MUST_MENTION_MIN_COVERAGE:
        reasons.append("missing " + ", ".join(ex.get("missing_terms") or []))
    if not ex["theme_match"]:
        reasons.append(f"themes {ex.get('themes_found')} not in {ex['expected_themes']}")
    return "; ".join(reasons)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_summary(doc: dict[str, Any], comparison: list[dict[str, Any]] | None = None) -> str:
    s = doc["summary"]
    verdict = "PASSED" if s["overall_pass_rate"] >= doc["min_pass_rate"] else "FAILED"
    lines = [
        f"### TechnoShare eval: {verdict} — pass rate {s['overall_pass_rate']:.1%} "
        f"({s['passed_examples']}/{s['total_examples']}, threshold {doc['min_pass_rate']:.0%})",
        "",
        f"Model `{doc['models']['configured']}` · prompts `{doc['prompts_dir']}` · "
        f"run `{doc.get('run_id') or '-'}` · {doc['duration_seconds']:.0f}s · "
        f"gates {s['gate_pass_rate']:.0%} · themes {s['theme_match_rate']:.0%} · "
        f"must-mention {s['mean_must_mention_coverage']:.0%}",
        "",
        f"LLM judges: {'on (' + doc['judges']['model'] + ')' if doc['judges']['enabled'] else doc['judges']['reason']}",
        "",
        "| example | kind | outcome | pass | TL;DR | summary | theme | must-mention | why |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for ex in doc["examples"]:
        lines.append(
            f"| {ex['id']} | {ex['kind']} | {ex['outcome']} | {'✅' if ex['passed'] else '❌'} "
            f"| {ex['tldr_sentence_count']} | {ex['summary_sentence_count']} "
            f"| {'✅' if ex['theme_match'] else '❌'} | {ex['must_mention_coverage']:.0%} "
            f"| {_cell(_why(ex))} |"
        )
    if comparison is not None:
        lines += ["", comparison_markdown(comparison, doc.get("compared_to"))]
    return "\n".join(lines) + "\n"


def compare(current: dict[str, Any], previous: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-example changes between two ``eval_results.json`` documents (only what changed)."""
    before = {e["id"]: e for e in previous.get("examples", [])}
    after = {e["id"]: e for e in current.get("examples", [])}
    changes = []
    for ex_id in sorted(set(before) | set(after)):
        b, a = before.get(ex_id), after.get(ex_id)
        if b is None or a is None:
            changes.append({"id": ex_id, "change": "added" if b is None else "removed"})
            continue
        diffs = {
            key: (b.get(key), a.get(key))
            for key in (
                "passed",
                "outcome",
                "theme_match",
                "must_mention_coverage",
                "tldr_sentence_count",
                "summary_sentence_count",
                "failed_gates",
            )
            if b.get(key) != a.get(key)
        }
        if diffs:
            if b.get("passed") != a.get("passed"):
                change = "fixed" if a.get("passed") else "regressed"
            else:
                change = "changed"
            changes.append({"id": ex_id, "change": change, "diffs": diffs})
    return changes


def comparison_markdown(changes: list[dict[str, Any]], run_id: str | None) -> str:
    head = f"#### Changes against run `{run_id}`" if run_id else "#### Changes"
    if not changes:
        return head + "\n\nNo per-example changes."
    lines = [head, "", "| example | change | details |", "| --- | --- | --- |"]
    for c in changes:
        details = "; ".join(f"{k}: {v[0]} → {v[1]}" for k, v in c.get("diffs", {}).items())
        lines.append(f"| {c['id']} | {c['change']} | {_cell(details)} |")
    return "\n".join(lines)


def console_table(doc: dict[str, Any]) -> str:
    rows = [
        f"{'example':34} {'outcome':12} {'pass':5} {'tldr':>4} {'summ':>4} {'theme':>5} {'mm':>5}  why"
    ]
    for ex in doc["examples"]:
        rows.append(
            f"{ex['id'][:34]:34} {ex['outcome']:12} {'PASS' if ex['passed'] else 'FAIL':5} "
            f"{ex['tldr_sentence_count']:>4} {ex['summary_sentence_count']:>4} "
            f"{'yes' if ex['theme_match'] else 'no':>5} {ex['must_mention_coverage']:>5.0%}  {_why(ex)}"
        )
    return "\n".join(rows)
