"""Quality gates: each gate fails on its own defect and passes otherwise; the repair loop."""

from __future__ import annotations

import pytest

from pipeline.gates import (
    GATE_NAMES,
    check_gates,
    citable_sentence_count,
    review_and_repair,
    summary_range,
)
from pipeline.models import Coverage, Fact, LLMCall, SimilarTech, Snippet
from pipeline.settings import Settings
from tests.support.builders import (
    SUMMARY_SENTENCES,
    TeamContext,
    make_commentary,
    make_evidence,
    make_facts,
    make_job,
)

MORE_SENTENCES = [
    "Producers block for a moment when every partition is full.",
    "Each consumer group keeps its own offset in a compact table.",
    "Retention defaults to seven days and is configurable per queue.",
    "Replication copies every message to two other brokers before the ack.",
    "The benchmark ran on three virtual machines with eight cores each.",
]


@pytest.fixture
def settings() -> Settings:
    return Settings()


def rich_evidence(coverage: Coverage = Coverage.full):
    """Evidence with more citable sentences than any configured summary minimum."""
    evidence = make_evidence(coverage)
    extra = [
        Snippet(id=f"S{i}", text=text)
        for i, text in enumerate([*SUMMARY_SENTENCES, *MORE_SENTENCES], start=20)
    ]
    return evidence.model_copy(update={"snippets": [*evidence.snippets, *extra]})


def thin_evidence():
    """An abstract of one sentence, its record's fields as sentences, code and list items."""
    return make_evidence(
        Coverage.partial,
        snippets=[
            Snippet(id="S1", text="Description of a polynomial reduction of SAT to 2-SAT."),
            Snippet(id="S2", text="Try it: ```\nsat2 --reduce input.cnf\n``` • fast • small"),
            Snippet(id="S3", text="Description of a polynomial reduction of SAT to 2-SAT!"),
            Snippet(
                id="S4",
                text="The paper “Reducing SAT to 2-SAT” was posted to arXiv by S. Gubin. "
                "The paper was submitted on 1 April 2007.",
                section="Source metadata",
            ),
        ],
    )


# The builders' commentary lists Kafka, which their evidence does not name: it stands for a
# name known from the team's history (the similar_tech gate's ``allowed_names``).
HISTORY_NAMES = ("Kafka",)


def run(settings, commentary=None, facts=None, evidence=None, job=None, context=None):
    return check_gates(
        commentary or make_commentary(),
        facts or make_facts(),
        evidence or rich_evidence(),
        job or make_job(),
        settings,
        context or TeamContext(),
        allowed_names=HISTORY_NAMES,
    )


def failed(report) -> dict[str, str]:
    return {r.name: r.detail for r in report.failures}


def test_good_commentary_passes_every_named_gate(settings):
    report = run(settings)
    assert [r.name for r in report.results] == list(GATE_NAMES)
    assert report.passed, failed(report)


@pytest.mark.parametrize(
    ("update", "gate", "words"),
    [
        ({"tldr": ["One.", "Two."]}, "tldr", "exactly 3"),
        ({"tldr": ["One.", "Two. Three.", "Four."]}, "tldr", "item 2 has 2 sentences"),
        ({"tldr": ["One.", "Two.", "Three.", "Four."]}, "tldr", "has 4 items"),
        (
            {"summary": " ".join(SUMMARY_SENTENCES[:5])},
            "summary_length",
            "5 sentences; it must have 10-15",
        ),
        ({"summary": " ".join(SUMMARY_SENTENCES * 2)}, "summary_length", "22 sentences"),
        ({"projects": ["**General** — only one."]}, "projects", "there are 1 projects bullets"),
        ({"projects": ["**General** — x."] * 9}, "projects", "there must be 2-8"),
        (
            {"projects": ["Data pipelines: no bold theme.", "**General** — ok."]},
            "projects",
            "bullet 1 is not of the form",
        ),
        (
            {"projects": ["**Quantum toasters** — nope.", "**General** — ok."]},
            "projects",
            "unknown theme 'Quantum toasters'",
        ),
        (
            {
                "summary": " ".join(SUMMARY_SENTENCES[:10])
                + " Visit https://evil.example.com/x now."
            },
            "urls",
            "https://evil.example.com/x",
        ),
        (
            {"similar_tech": [SimilarTech(name="X", url="https://evil.example.com/x")]},
            "urls",
            "evil.example.com",
        ),
        (
            {
                "summary": " ".join(SUMMARY_SENTENCES[:10])
                + " Get evil-downloads.com/setup.exe now."
            },
            "urls",
            "evil-downloads.com/setup.exe",
        ),
        ({"tldr": ["Mirror at www.evil.example.com today.", "Two.", "Three."]}, "urls", "www.evil"),
        ({"tags": ["queues", "bit.ly/x"]}, "urls", "bit.ly/x"),
        ({"tldr": ["Hi <!channel> look.", "Two.", "Three."]}, "mentions", "<!channel>"),
        (
            {"projects": ["**General** — ping <@U123ABC>.", "**General** — and @here."]},
            "mentions",
            "@here",
        ),
        ({"tldr": ["<!subteam^S1|@devs> one.", "Two.", "Three."]}, "mentions", "subteam"),
        (
            {"similar_tech": [SimilarTech(name=f"T{i}") for i in range(9)]},
            "similar_tech",
            "9 similar tech",
        ),
        ({"summary": "   "}, "schema", "summary is empty"),
    ],
)
def test_each_defect_fails_its_gate_with_feedback(settings, update, gate, words):
    report = run(settings, commentary=make_commentary(**{}).model_copy(update=update))
    fails = failed(report)
    assert gate in fails, fails
    assert words in fails[gate]


def test_summary_range_follows_what_was_read(settings):
    six = make_commentary(summary=" ".join(SUMMARY_SENTENCES[:6]))
    partial = rich_evidence(Coverage.partial)
    assert run(settings, commentary=six, evidence=partial).passed
    report = run(settings, commentary=make_commentary(), evidence=partial)  # 11 > 8
    assert "the evidence is partial: abstract only" in failed(report)["summary_length"]
    assert not run(settings, commentary=six).passed  # 6 < 10 with the full text


def test_sentence_counting_copes_with_abbreviations_decimals_urls_and_cjk(settings):
    tricky = make_commentary(
        tldr=[
            "Version 2.5 is e.g. 3.5 times faster than v1.0 per Dr. Smith.",
            "See https://docs.example.org/queues/guide for the setup.",
            "消息队列每秒处理一百五十万条消息。",
        ]
    )
    assert run(settings, commentary=tricky).passed, failed(run(settings, commentary=tricky))
    cjk_summary = "。".join(f"第{i}句话说明了系统的设计" for i in range(4)) + "。"
    partial = rich_evidence(Coverage.partial)
    assert run(settings, commentary=make_commentary(summary=cjk_summary), evidence=partial).passed


def test_summary_minimum_drops_to_the_citable_sentences_of_thin_evidence(settings):
    thin = thin_evidence()
    # code, list items without an end and a repeated sentence are not citable
    assert citable_sentence_count(thin) == 3
    assert summary_range(thin, settings) == (3, settings.gate_summary_partial_max)
    three = make_commentary(summary=" ".join(SUMMARY_SENTENCES[:3]))
    report = run(settings, commentary=three, evidence=thin)
    detail = {r.name: r.detail for r in report.results}["summary_length"]
    assert report.passed, failed(report)
    assert "the minimum of 4 is lowered to the 3 citable sentences" in detail
    assert "padding is worse than brevity" in detail
    two = make_commentary(summary=" ".join(SUMMARY_SENTENCES[:2]))
    fails = failed(run(settings, commentary=two, evidence=thin))["summary_length"]
    assert fails.startswith("the summary has 2 sentences; it must have 3-8 sentences because")
    assert "lowered to the 3 citable sentences the evidence holds" in fails
    nine = make_commentary(summary=" ".join(SUMMARY_SENTENCES[:9]))
    assert "summary_length" in failed(run(settings, commentary=nine, evidence=thin))  # max kept
    two_items = make_commentary(summary=" ".join(SUMMARY_SENTENCES[:3]), tldr=["One.", "Two."])
    assert "tldr" in failed(run(settings, commentary=two_items, evidence=thin))  # still 3


def test_summary_minimum_is_at_least_one_sentence(settings):
    empty = make_evidence(Coverage.partial, snippets=[Snippet(id="S1", text="• a • b")])
    assert summary_range(empty, settings) == (1, settings.gate_summary_partial_max)


def test_theme_match_is_case_insensitive_and_general_always_allowed(settings):
    c = make_commentary(projects=["**data PIPELINES** — a.", "**General** — b."])
    assert run(settings, commentary=c).passed
    no_context = run(settings, context=TeamContext(themes=[]))
    assert "unknown theme 'Data pipelines'" in failed(no_context)["projects"]


def test_citations_must_name_existing_snippets(settings):
    facts = make_facts(key_facts=[Fact(text="x", snippet_ids=["S1", "S99"])])
    assert failed(run(settings, facts=facts)) == {
        "citations": "facts cite snippet ids that do not exist: S99"
    }


def test_facts_may_cite_snippets_read_through_the_fetch_tool(settings):
    fetched = [Snippet(id="S4", text="Read via the tool: https://tool.example.org/more")]
    facts = make_facts(key_facts=[Fact(text="x", snippet_ids=["S4"])], fetched_snippets=fetched)
    c = make_commentary(
        summary=" ".join(SUMMARY_SENTENCES[:10]) + " See https://tool.example.org/more too."
    )
    assert run(settings, commentary=c, facts=facts).passed
    assert set(
        failed(run(settings, commentary=c, facts=make_facts(key_facts=facts.key_facts)))
    ) == {
        "citations",
        "urls",
    }


def test_urls_from_message_and_tool_fetches_are_allowed(settings):
    extra = " More at https://example.net/other?a=1&b=2 and https://tool.example.org/p today."
    c = make_commentary(summary=" ".join(SUMMARY_SENTENCES[:10]) + extra)
    assert "urls" in failed(run(settings, commentary=c))
    facts = make_facts(fetched_urls=["https://tool.example.org/p"])
    assert run(settings, commentary=c, facts=facts).passed


def test_slack_limits_are_checked_on_the_rendered_message(monkeypatch):
    monkeypatch.setenv("SLACK_MAX_BLOCKS", "5")
    settings = Settings()
    assert failed(run(settings))["slack_limits"].startswith("the reply needs 6 Slack blocks")
    monkeypatch.setenv("SLACK_MAX_BLOCKS", "50")
    assert run(Settings()).passed


def test_thresholds_come_from_settings(monkeypatch):
    monkeypatch.setenv("GATE_SUMMARY_FULL_MIN", "3")
    monkeypatch.setenv("GATE_MIN_PROJECT_BULLETS", "1")
    c = make_commentary(n_summary=4, projects=["**General** — one."])
    assert run(Settings(), commentary=c).passed


# --- repair loop -------------------------------------------------------------------------------
class ScriptedStageB:
    """Stands in for a Stage B re-run: records the feedback, returns the next scripted answer."""

    def __init__(self, answer):
        self.answer = answer
        self.feedback: list[list[str]] = []

    def __call__(self, feedback: list[str]):
        self.feedback.append(feedback)
        return self.answer


def repair(settings, first, stage_b):
    return review_and_repair(
        make_job(),
        make_evidence(),
        make_facts(),
        first,
        rerun_stage_b=stage_b,
        settings=settings,
        context=TeamContext(),
        allowed_names=HISTORY_NAMES,
    )


def test_passing_commentary_is_not_repaired(settings):
    stage_b = ScriptedStageB(None)
    commentary, report = repair(settings, make_commentary(), stage_b)
    assert report.passed and not report.repaired
    assert stage_b.feedback == []


def test_one_repair_with_feedback_fixes_the_commentary(settings):
    broken = make_commentary(tldr=["Only one."], summary="Too short.")
    broken.usage.calls = [LLMCall(model="m", input_tokens=10, purpose="answer")]
    fixed = make_commentary()
    fixed.usage.calls = [LLMCall(model="m", input_tokens=20, purpose="repair")]
    stage_b = ScriptedStageB(fixed)
    commentary, report = repair(settings, broken, stage_b)
    assert report.passed and report.repaired
    assert commentary.tldr == fixed.tldr and commentary.summary == fixed.summary
    assert [c.purpose for c in commentary.usage.calls] == ["answer", "repair"]
    assert commentary.usage.input_tokens == 30
    (feedback,) = stage_b.feedback
    assert any(line.startswith("[tldr]") and "exactly 3" in line for line in feedback)
    assert any(line.startswith("[summary_length]") for line in feedback)


def test_repair_that_still_fails_is_gate_failed_after_one_attempt(settings):
    broken = make_commentary(tldr=["Only one."])
    stage_b = ScriptedStageB(broken)
    commentary, report = repair(settings, broken, stage_b)
    assert not report.passed and report.repaired
    assert len(stage_b.feedback) == 1
    assert [r.name for r in report.failures] == ["tldr"]


def gates_carry(commentary):
    from pipeline.models import JobCarry

    return JobCarry(
        job=make_job(), evidence=rich_evidence(), facts=make_facts(), commentary=commentary
    )


def test_only_a_draft_that_fails_a_gate_takes_the_gates_to_the_model_queue(settings):
    """quality_gates runs on a queue without llm slots; the draft that will be repaired (a
    Stage B call) is handed to the llm queue. Decided by the same gates the stage runs."""
    from pipeline.deps import StageDeps
    from pipeline.stages import STAGE_BY_NAME, needs_model_queue

    deps = StageDeps(settings=settings, fetcher=None, prompts=None, context=TeamContext())  # type: ignore[arg-type]
    gates, fetch = STAGE_BY_NAME["quality_gates"], STAGE_BY_NAME["fetch_evidence"]
    good = gates_carry(make_commentary(similar_tech=[]))
    broken = gates_carry(make_commentary(similar_tech=[], tldr=["Only one."]))
    assert check_gates(
        good.commentary, good.facts, good.evidence, good.job, settings, TeamContext()
    ).passed
    assert not needs_model_queue(gates, good, deps)
    assert needs_model_queue(gates, broken, deps)
    assert not needs_model_queue(fetch, broken, deps)  # no model queue of its own
    # a stand-in runs where it is, unless it says otherwise
    deps.overrides = {"quality_gates": lambda carry, deps: None}
    assert not needs_model_queue(gates, broken, deps)
    standin = lambda carry, deps: None  # noqa: E731
    standin.calls_model = lambda carry, deps: True  # type: ignore[attr-defined]
    deps.overrides = {"quality_gates": standin}
    assert needs_model_queue(gates, good, deps)


def test_the_gates_that_routed_a_draft_are_not_run_again_by_its_stage(settings, monkeypatch):
    """Routing (needs_model_queue) and the stage check the same draft: once, not twice; a stage
    run on another draft than the one just routed checks its own."""
    import pipeline.gates as gates_module
    from pipeline.deps import StageDeps
    from pipeline.stages import STAGE_BY_NAME, needs_model_queue, quality_gates

    calls: list[str] = []

    def counted(commentary, *args, **kwargs):
        calls.append(commentary.tldr[0])
        return check_gates(commentary, *args, **kwargs)

    monkeypatch.setattr(gates_module, "check_gates", counted)
    deps = StageDeps(settings=settings, fetcher=None, prompts=None, context=TeamContext())  # type: ignore[arg-type]
    gates = STAGE_BY_NAME["quality_gates"]
    routed = gates_carry(make_commentary(similar_tech=[]))
    other = gates_carry(make_commentary(similar_tech=[]))
    assert not needs_model_queue(gates, routed, deps)
    review = quality_gates(routed, deps)
    assert review.report.passed and len(calls) == 1
    assert needs_model_queue(gates, routed, deps) is False  # routed again, then...
    assert quality_gates(other, deps).report.passed  # ...another draft's stage: its own check
    assert len(calls) == 3
    assert quality_gates(routed, deps).report.passed and len(calls) == 4  # used once only
