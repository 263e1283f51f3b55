"""Code scorers of the evaluation suite, and the pass rule.

An example PASSES when all three hold:

1. the quality gates passed (``outcome == success``: the reply that would be posted is the
   commentary, not the honest gate-failed note);
2. must-mention coverage >= ``MUST_MENTION_MIN_COVERAGE``: the share of the example's
   ``must_mention`` terms found (case-insensitive substring) in the TL;DR, summary and
   projects bullets. 0.5 asks for the gist (2 of 3 terms, 1 of 2) without requiring a
   particular wording;
3. theme match: at least one projects bullet leads with one of ``expected_themes``
   (``**Theme** — ...``, case-insensitive); ``General`` is the theme for off-topic links;
4. every follow-up question (``followups``) was answered as expected: its answer passed the
   follow-up gates and contains each ``answer_has`` term, or says the source does not say.

The same functions compute ``eval_results.json`` and back the ``@scorer`` objects that
``mlflow.genai.evaluate`` runs, so the MLflow evaluation view and the artifact cannot disagree.
Scorers read a JSON-able ``outputs`` dict (``outputs_from_result``) and ``expectations``
(``expected_themes``, ``must_mention``).
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.models import Commentary, PipelineResult
from pipeline.text import split_sentences

MUST_MENTION_MIN_COVERAGE = 0.5
_BULLET_THEME = re.compile(r"^\s*\*\*(?P<theme>[^*\n]+?)\*\*")


def outputs_from_result(result: PipelineResult) -> dict[str, Any]:
    """What the scorers see of one pipeline run (JSON-able; the evaluation view shows it)."""
    commentary = result.commentary
    evidence = result.evidence
    report = result.gate_report
    return {
        "outcome": result.outcome.value,
        "error": result.error,
        "adapter": evidence.adapter if evidence else None,
        "coverage": evidence.coverage.value if evidence else None,
        "title": evidence.title if evidence else None,
        "facts": [f.text for f in result.facts.key_facts] if result.facts else [],
        "commentary": commentary.model_dump(mode="json", exclude={"usage"}) if commentary else None,
        "gates": [r.model_dump(mode="json") for r in report.results] if report else [],
        "gates_repaired": bool(report and report.repaired),
    }


def _commentary(outputs: dict[str, Any]) -> Commentary | None:
    raw = outputs.get("commentary")
    if not raw:
        return None
    try:
        return Commentary.model_validate(raw)
    except ValueError:
        return None


def schema_validity(outputs: dict[str, Any]) -> int:
    """1 when a commentary exists, validates against the model and passed the schema gate."""
    if _commentary(outputs) is None:
        return 0
    schema_gate = [g for g in outputs.get("gates", []) if g.get("name") == "schema"]
    return int(all(g.get("passed") for g in schema_gate))


def gates_passed(outputs: dict[str, Any]) -> int:
    gates = outputs.get("gates") or []
    return int(
        outputs.get("outcome") == "success" and bool(gates) and all(g["passed"] for g in gates)
    )


def failed_gates(outputs: dict[str, Any]) -> list[str]:
    return [g["name"] for g in outputs.get("gates", []) if not g.get("passed")]


def tldr_sentence_count(outputs: dict[str, Any]) -> int:
    c = _commentary(outputs)
    return sum(len(split_sentences(item)) for item in c.tldr) if c else 0


def summary_sentence_count(outputs: dict[str, Any]) -> int:
    c = _commentary(outputs)
    return len(split_sentences(c.summary)) if c else 0


def project_themes(projects: list[str]) -> list[str]:
    """Theme names the projects bullets lead with (``**Theme** — ...``)."""
    themes = []
    for bullet in projects:
        m = _BULLET_THEME.match(bullet)
        if m:
            themes.append(m.group("theme").strip())
    return themes


def theme_match(outputs: dict[str, Any], expected_themes: list[str]) -> int:
    c = _commentary(outputs)
    if c is None:
        return 0
    found = {t.casefold() for t in project_themes(c.projects)}
    return int(any(t.casefold() in found for t in expected_themes))


def commentary_text(c: Commentary) -> str:
    return "\n".join([*c.tldr, c.summary, *c.projects])


def must_mention(outputs: dict[str, Any], terms: list[str]) -> tuple[float, list[str]]:
    """(coverage in [0, 1], missing terms)."""
    c = _commentary(outputs)
    if not terms:
        return 1.0, []
    text = commentary_text(c).casefold() if c else ""
    missing = [t for t in terms if t.casefold() not in text]
    return (len(terms) - len(missing)) / len(terms), missing


def followups_correct(
    outputs: dict[str, Any], cases: list[dict[str, Any]]
) -> tuple[float, list[str]]:
    """(share of follow-up questions answered as expected, the questions that were not)."""
    if not cases:
        return 1.0, []
    answers = {a["question"]: a for a in outputs.get("followups") or []}
    wrong = []
    for case in cases:
        answer = answers.get(case["question"])
        if answer is None or not answer.get("gates_passed", False):
            wrong.append(case["question"])
            continue
        if case.get("does_not_say"):
            ok = bool(answer["does_not_say"])
        else:
            text = str(answer["text"]).casefold()
            terms = case.get("answer_has", [])
            ok = not answer["does_not_say"] and all(t.casefold() in text for t in terms)
        if not ok:
            wrong.append(case["question"])
    return (len(cases) - len(wrong)) / len(cases), wrong


def score_example(outputs: dict[str, Any], expectations: dict[str, Any]) -> dict[str, Any]:
    """Every code metric of one example, and the pass verdict (see the module docstring)."""
    coverage, missing = must_mention(outputs, list(expectations.get("must_mention", [])))
    c = _commentary(outputs)
    row = {
        "gates_passed": gates_passed(outputs),
        "failed_gates": failed_gates(outputs),
        "schema_validity": schema_validity(outputs),
        "tldr_sentence_count": tldr_sentence_count(outputs),
        "summary_sentence_count": summary_sentence_count(outputs),
        "theme_match": theme_match(outputs, list(expectations.get("expected_themes", []))),
        "themes_found": project_themes(c.projects) if c else [],
        "must_mention_coverage": round(coverage, 4),
        "missing_terms": missing,
    }
    answered, wrong = followups_correct(outputs, list(expectations.get("followups", [])))
    row["followups_correct"], row["wrong_followups"] = round(answered, 4), wrong
    row["passed"] = int(
        bool(row["gates_passed"])
        and coverage >= MUST_MENTION_MIN_COVERAGE
        and bool(row["theme_match"])
        and not wrong
    )
    return row


def build_code_scorers() -> list[Any]:
    """The ``@scorer`` objects for ``mlflow.genai.evaluate`` (imports mlflow lazily)."""
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import scorer

    @scorer(name="example_pass")
    def example_pass(outputs: dict[str, Any], expectations: dict[str, Any]) -> Feedback:
        row = score_example(outputs, expectations)
        why = []
        if not row["gates_passed"]:
            why.append(f"gates failed: {', '.join(row['failed_gates']) or outputs.get('outcome')}")
        if row["must_mention_coverage"] < MUST_MENTION_MIN_COVERAGE:
            why.append(f"missing terms: {', '.join(row['missing_terms'])}")
        if not row["theme_match"]:
            why.append(f"themes {row['themes_found']} miss {expectations.get('expected_themes')}")
        if row["wrong_followups"]:
            why.append(f"follow-ups answered wrongly: {row['wrong_followups']}")
        return Feedback(value=bool(row["passed"]), rationale="; ".join(why) or "all checks passed")

    @scorer(name="gates_passed")
    def gates(outputs: dict[str, Any]) -> Feedback:
        failed = failed_gates(outputs)
        return Feedback(value=bool(gates_passed(outputs)), rationale=", ".join(failed) or "ok")

    @scorer(name="schema_validity")
    def schema(outputs: dict[str, Any]) -> int:
        return schema_validity(outputs)

    @scorer(name="tldr_sentence_count")
    def tldr(outputs: dict[str, Any]) -> int:
        return tldr_sentence_count(outputs)

    @scorer(name="summary_sentence_count")
    def summary(outputs: dict[str, Any]) -> int:
        return summary_sentence_count(outputs)

    @scorer(name="theme_match")
    def themes(outputs: dict[str, Any], expectations: dict[str, Any]) -> Feedback:
        c = _commentary(outputs)
        found = project_themes(c.projects) if c else []
        return Feedback(
            value=bool(theme_match(outputs, expectations.get("expected_themes", []))),
            rationale=f"found {found}; expected one of {expectations.get('expected_themes')}",
        )

    @scorer(name="must_mention_coverage")
    def mentions(outputs: dict[str, Any], expectations: dict[str, Any]) -> Feedback:
        coverage, missing = must_mention(outputs, expectations.get("must_mention", []))
        return Feedback(
            value=round(coverage, 4), rationale=f"missing: {missing}" if missing else "all"
        )

    @scorer(name="followups_correct")
    def followups(outputs: dict[str, Any], expectations: dict[str, Any]) -> Feedback:
        share, wrong = followups_correct(outputs, expectations.get("followups", []))
        return Feedback(value=round(share, 4), rationale=f"wrong: {wrong}" if wrong else "all")

    return [example_pass, gates, schema, tldr, summary, themes, mentions, followups]
