"""Quality gates: checks a Stage B commentary must pass before it is posted, and the one repair.

``check_gates`` runs every named gate and returns a :class:`GateReport`; each failure carries a
``detail`` written so it can be fed back to Stage B as-is ("the summary has 3 sentences; it
must have 10-15 because the full text was read"). ``review_and_repair`` re-runs Stage B once
with those details and reports ``repaired=True``. Both are pure: the Celery ``quality_gates``
task calls ``review_and_repair`` with a ``rerun_stage_b`` that enqueues nothing.

Thresholds come from settings (``GATE_*``, ``SLACK_MAX_*``). The summary's minimum is the
configured one or the number of citable sentences in the evidence, whichever is lower
(``summary_range``): thin evidence (a one-sentence abstract) gets a short summary, not padding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from pipeline.models import Commentary, Coverage, Evidence, Facts, GateReport, GateResult, Job
from pipeline.sanitize import allowed_url_keys, find_links, find_mentions, link_key
from pipeline.settings import Settings
from pipeline.text import citable_sentences, split_sentences

GENERAL_THEME = "General"
# "**Theme** — text": em dash as asked of the model; an en dash or spaced hyphen is accepted.
_PROJECT_BULLET = re.compile(
    r"^\s*\*\*(?P<theme>[^*\n]+?)\*\*\s*(?:—|–|\s-)\s*(?P<body>\S.*)$", re.S
)

GATE_NAMES = (
    "schema",
    "tldr",
    "summary_length",
    "projects",
    "citations",
    "urls",
    "mentions",
    "similar_tech",
    "slack_limits",
)


def known_themes(context: Any) -> list[str]:
    """Theme names from the team context (``context.themes`` of objects with ``name``, or of
    strings); ``General`` is always allowed."""
    themes: Iterable[Any] = getattr(context, "themes", None) or []
    names = [getattr(t, "name", t) for t in themes]
    return [str(n) for n in names if n] + [GENERAL_THEME]


def commentary_texts(commentary: Commentary) -> list[str]:
    """Every piece of model-written text that ends up in the reply."""
    texts = [*commentary.tldr, commentary.summary, *commentary.projects, *commentary.tags]
    for tech in commentary.similar_tech:
        texts += [tech.name, tech.note]
        if tech.url:
            texts.append(tech.url)
    return texts


def configured_summary_range(evidence: Evidence, settings: Settings) -> tuple[int, int]:
    if evidence.coverage == Coverage.full:
        return settings.gate_summary_full_min, settings.gate_summary_full_max
    return settings.gate_summary_partial_min, settings.gate_summary_partial_max


def citable_sentence_count(evidence: Evidence) -> int:
    """Distinct sentences of substance in the evidence that a summary could state (counted by
    fetch_evidence, else here)."""
    if evidence.citable_sentences is not None:
        return evidence.citable_sentences
    return len(citable_sentences(s.text for s in evidence.snippets))


def summary_range(evidence: Evidence, settings: Settings) -> tuple[int, int]:
    """The summary's sentence range: the configured one for what was read, with the minimum
    lowered to the number of citable sentences the evidence holds (at least 1): a summary
    padded beyond its evidence is worse than a short one. The maximum is kept."""
    low, high = configured_summary_range(evidence, settings)
    low = max(1, min(low, citable_sentence_count(evidence)))
    return low, max(low, high)


def _what_was_read(evidence: Evidence) -> str:
    if evidence.coverage == Coverage.full:
        return "the full text was read"
    reason = f": {evidence.coverage_reason}" if evidence.coverage_reason else ""
    return f"the evidence is {evidence.coverage.value.replace('_', ' ')}{reason}"


# --- the gates: each returns (passed, detail) ------------------------------------------------
def _gate_schema(commentary: Commentary) -> tuple[bool, str]:
    try:
        Commentary.model_validate(commentary.model_dump(mode="json"))
    except ValidationError as exc:
        return False, f"the commentary does not match the schema: {exc.errors()[0]['msg']}"
    problems = []
    if not commentary.summary.strip():
        problems.append("the summary is empty")
    if any(not t.strip() for t in commentary.tldr):
        problems.append("a TL;DR item is empty")
    if any(not p.strip() for p in commentary.projects):
        problems.append("a projects bullet is empty")
    if any(not s.name.strip() for s in commentary.similar_tech):
        problems.append("a similar tech entry has no name")
    return not problems, "; ".join(problems)


def _gate_tldr(commentary: Commentary, settings: Settings) -> tuple[bool, str]:
    want = settings.gate_tldr_items
    problems = []
    if len(commentary.tldr) != want:
        problems.append(f"the TL;DR has {len(commentary.tldr)} items; it must have exactly {want}")
    for i, item in enumerate(commentary.tldr, 1):
        n = len(split_sentences(item))
        if n != 1:
            problems.append(f"TL;DR item {i} has {n} sentences; each item must be ONE sentence")
    return not problems, "; ".join(problems)


def _gate_summary(
    commentary: Commentary, evidence: Evidence, settings: Settings
) -> tuple[bool, str]:
    low, high = summary_range(evidence, settings)
    configured_low = configured_summary_range(evidence, settings)[0]
    lowered = (
        f"; the minimum of {configured_low} is lowered to the {low} citable sentence"
        f"{'s' if low != 1 else ''} the evidence holds, because padding is worse than brevity"
        if low < configured_low
        else ""
    )
    n = len(split_sentences(commentary.summary))
    if low <= n <= high:
        return True, f"{n} sentences ({low}-{high}{lowered})"
    return False, (
        f"the summary has {n} sentences; it must have {low}-{high} sentences because "
        f"{_what_was_read(evidence)}{lowered}"
    )


def _gate_projects(commentary: Commentary, settings: Settings, context: Any) -> tuple[bool, str]:
    low, high = settings.gate_min_project_bullets, settings.gate_max_project_bullets
    themes = known_themes(context)
    by_lower = {t.lower(): t for t in themes}
    problems = []
    if not low <= len(commentary.projects) <= high:
        problems.append(
            f"there are {len(commentary.projects)} projects bullets; there must be {low}-{high}"
        )
    for i, bullet in enumerate(commentary.projects, 1):
        m = _PROJECT_BULLET.match(bullet)
        if not m:
            problems.append(f"projects bullet {i} is not of the form '**Theme** — text'")
        elif m.group("theme").strip().lower() not in by_lower:
            problems.append(
                f"projects bullet {i} uses unknown theme '{m.group('theme').strip()}'; "
                f"use one of: {', '.join(themes)}"
            )
    return not problems, "; ".join(problems)


def _gate_citations(facts: Facts, evidence: Evidence) -> tuple[bool, str]:
    known = evidence.snippet_ids() | {s.id for s in facts.fetched_snippets}
    bad = sorted({sid for f in facts.key_facts for sid in f.snippet_ids if sid not in known})
    if bad:
        return False, f"facts cite snippet ids that do not exist: {', '.join(bad)}"
    return True, f"{len(facts.key_facts)} facts cite existing snippets"


def _gate_urls(
    commentary: Commentary, facts: Facts, evidence: Evidence, job: Job
) -> tuple[bool, str]:
    allowed = allowed_url_keys(evidence, job.message_text, facts)
    # Bare domains count: Slack links "evil.com/setup.exe" as it links https://evil.com.
    found = [u for text in commentary_texts(commentary) for u in find_links(text)]
    found += [t.url for t in commentary.similar_tech if t.url and not find_links(t.url)]
    bad = sorted({u for u in found if link_key(u) not in allowed})
    if bad:
        return False, (
            "remove these links (URLs or domain names), they are in neither the source's "
            "content nor the Slack message: " + ", ".join(bad)
        )
    return True, f"{len(found)} links, all from the evidence or the message"


def _gate_mentions(commentary: Commentary) -> tuple[bool, str]:
    found = sorted({m for text in commentary_texts(commentary) for m in find_mentions(text)})
    if found:
        return False, "remove Slack mentions/broadcasts: " + ", ".join(found)
    return True, ""


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _gate_similar_tech(
    commentary: Commentary,
    settings: Settings,
    evidence: Evidence,
    facts: Facts,
    allowed_names: Iterable[str] = (),
) -> tuple[bool, str]:
    """At most ``gate_max_similar_tech`` entries, and every name written in the evidence (its
    snippets or the pages Stage A fetched; case and spacing aside) or in ``allowed_names``:
    similar tech the source does not name is a model's memory, not evidence. ``allowed_names``
    is the hook for names known from elsewhere (the team's history of shared links)."""
    n, high = len(commentary.similar_tech), settings.gate_max_similar_tech
    problems = []
    if n > high:
        problems.append(f"there are {n} similar tech entries; at most {high} are allowed")
    texts = [s.text for s in evidence.snippets] + [s.text for s in facts.fetched_snippets]
    source = _folded("\n".join(texts))
    allowed = {_folded(name) for name in allowed_names}
    unknown = [
        t.name
        for t in commentary.similar_tech
        if t.name.strip() and _folded(t.name) not in source and _folded(t.name) not in allowed
    ]
    if unknown:
        problems.append(
            "remove these similar tech entries, the source does not name them (use only the "
            "SIMILAR_CANDIDATES, names as written): " + ", ".join(unknown)
        )
    return not problems, "; ".join(problems) or f"{n} entries, all named in the evidence"


def _gate_slack_limits(
    job: Job, evidence: Evidence, facts: Facts, commentary: Commentary, settings: Settings
) -> tuple[bool, str]:
    from pipeline.render import commentary_blocks, section_texts  # render imports sanitize only

    blocks = commentary_blocks(job, evidence, facts, commentary, GateReport(), settings)
    problems = []
    if len(blocks) > settings.slack_max_blocks:
        problems.append(
            f"the reply needs {len(blocks)} Slack blocks; at most {settings.slack_max_blocks} "
            "fit: make the text shorter"
        )
    longest = max((len(t) for t in section_texts(blocks)), default=0)
    if longest > settings.slack_max_section_chars:
        problems.append(
            f"a Slack section has {longest} characters; at most "
            f"{settings.slack_max_section_chars}: make it shorter"
        )
    return not problems, "; ".join(problems) or f"{len(blocks)} blocks"


def check_gates(
    commentary: Commentary,
    facts: Facts,
    evidence: Evidence,
    job: Job,
    settings: Settings,
    context: Any = None,
    allowed_names: Iterable[str] = (),
) -> GateReport:
    """Run every gate; ``context`` is the team context (for the known themes);
    ``allowed_names`` are similar tech names known outside the evidence (see
    ``_gate_similar_tech``)."""
    checks: dict[str, Callable[[], tuple[bool, str]]] = {
        "schema": lambda: _gate_schema(commentary),
        "tldr": lambda: _gate_tldr(commentary, settings),
        "summary_length": lambda: _gate_summary(commentary, evidence, settings),
        "projects": lambda: _gate_projects(commentary, settings, context),
        "citations": lambda: _gate_citations(facts, evidence),
        "urls": lambda: _gate_urls(commentary, facts, evidence, job),
        "mentions": lambda: _gate_mentions(commentary),
        "similar_tech": lambda: _gate_similar_tech(
            commentary, settings, evidence, facts, allowed_names
        ),
        "slack_limits": lambda: _gate_slack_limits(job, evidence, facts, commentary, settings),
    }
    results = []
    for name in GATE_NAMES:
        passed, detail = checks[name]()
        results.append(GateResult(name=name, passed=passed, detail=detail))
    return GateReport(results=results)


def feedback_lines(report: GateReport) -> list[str]:
    """The failures as instructions for the Stage B repair attempt."""
    return [f"[{r.name}] {r.detail}" for r in report.failures]


def review_and_repair(
    job: Job,
    evidence: Evidence,
    facts: Facts,
    commentary: Commentary,
    *,
    rerun_stage_b: Callable[[list[str]], Commentary],
    settings: Settings,
    context: Any = None,
    allowed_names: Iterable[str] = (),
    first_report: GateReport | None = None,
) -> tuple[Commentary, GateReport]:
    """Gates, and on failure ONE Stage B repair with the failures fed back.

    Returns the final commentary and its report; ``report.passed`` False means the outcome is
    ``gate_failed``. ``report.repaired`` tells whether the repair ran. ``first_report``: the
    draft's report when the caller has just checked these same inputs."""
    allowed_names = tuple(allowed_names)
    report = first_report or check_gates(
        commentary, facts, evidence, job, settings, context, allowed_names
    )
    if report.passed:
        return commentary, report
    repaired = rerun_stage_b(feedback_lines(report))
    # The job paid for both Stage B answers: keep the draft's calls next to the repair's.
    calls = [*commentary.usage.calls, *repaired.usage.calls]
    repaired = repaired.model_copy(
        update={"usage": repaired.usage.model_copy(update={"calls": calls})}
    )
    report = check_gates(repaired, facts, evidence, job, settings, context, allowed_names)
    report.repaired = True
    return repaired, report
