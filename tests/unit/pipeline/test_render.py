"""Slack rendering: sections, context line, escaping, safety and Slack's size limits."""

from __future__ import annotations

import json

from pipeline.models import Coverage, GateReport, GateResult, Outcome, SimilarTech
from pipeline.render import render_commentary, render_error, render_gate_failed, section_texts
from pipeline.sanitize import find_mentions, find_urls, url_key
from pipeline.settings import Settings
from tests.support.builders import (
    DOCS_URL,
    PAGE_URL,
    SUMMARY_SENTENCES,
    make_commentary,
    make_evidence,
    make_facts,
    make_job,
)


def render(commentary=None, evidence=None, job=None, settings=None):
    return render_commentary(
        job or make_job(),
        evidence or make_evidence(),
        make_facts(),
        commentary or make_commentary(),
        GateReport(),
        settings or Settings(),
    )


def test_reply_has_every_section_and_goes_to_the_thread():
    msg = render()
    assert (msg.channel, msg.thread_ts, msg.outcome) == (
        "C123",
        "1700000000.000100",
        Outcome.success,
    )
    texts = section_texts(msg.blocks)
    assert texts[0] == "*Fast queues &amp; &lt;slow&gt; consumers*"
    tldr = next(t for t in texts if t.startswith("*TL;DR*"))
    assert tldr.count("\n• ") == 3
    assert any(t.startswith("*Summary*\n" + SUMMARY_SENTENCES[0]) for t in texts)
    themes = next(t for t in texts if t.startswith("*For our themes*"))
    assert "• *Data pipelines* — our ingest" in themes  # Markdown bold became Slack bold
    assert any(t.startswith("*Similar tech*\n• *Kafka* — partitioned log") for t in texts)
    context = " ".join(e["text"] for e in msg.blocks[-1]["elements"])
    assert f"<{PAGE_URL}|Fast queues &amp; &lt;slow&gt; consumers>" in context
    assert "Read: full text (coverage full)" in context
    assert "offline/extractive" in context and "stage_a@file:abc" in context
    assert "stage_b@file:def" in context and "job123" in context
    assert "Extractive summary" not in msg.text
    assert msg.text.startswith("*Fast queues") and "*TL;DR*" in msg.text


def test_what_was_read_and_extractive_note():
    msg = render(
        commentary=make_commentary(n_summary=5, extractive=True, similar_tech=[]),
        evidence=make_evidence(Coverage.partial),
    )
    assert "Read: abstract (coverage partial): abstract only" in msg.text
    assert "Extractive summary made offline" in msg.text and "no model wrote new text" in msg.text
    assert "*Similar tech*\n_none identified_" in msg.text


def test_model_text_is_escaped_and_made_safe():
    commentary = make_commentary(
        tldr=[
            "Use a < b & c > d <!channel>.",
            "Hey @here read <https://evil.example.com|this>.",
            "Ok.",
        ],
        similar_tech=[
            SimilarTech(name="Evil", url="https://evil.example.com/x", note="<@U999>"),
            SimilarTech(name="Guide", url=DOCS_URL),
        ],
    )
    msg = render(commentary=commentary)
    dumped = json.dumps(msg.blocks) + msg.text
    assert "a &lt; b &amp; c &gt; d" in dumped
    assert "evil.example.com" not in dumped
    assert find_mentions(dumped) == []
    assert f"<{DOCS_URL}|Guide>" in msg.text
    allowed = {url_key(PAGE_URL), url_key(DOCS_URL)}
    assert {url_key(u) for u in find_urls(msg.text)} <= allowed


def test_long_sections_are_split_under_the_section_limit():
    long_summary = " ".join(f"Sentence {i} " + "word " * 60 + "end." for i in range(40))
    msg = render(commentary=make_commentary(summary=long_summary))
    texts = section_texts(msg.blocks)
    assert max(len(t) for t in texts) <= 3000
    summary_parts = [t for t in texts if t.startswith("*Summary*")]
    assert len(summary_parts) > 1 and summary_parts[1].startswith("*Summary* (cont.)")
    assert "Sentence 39" in summary_parts[-1]
    one_huge_item = make_commentary(tldr=["x" * 7000 + ".", "Two.", "Three."])
    assert max(len(t) for t in section_texts(render(commentary=one_huge_item).blocks)) <= 3000


def test_block_count_is_capped_with_a_note(monkeypatch):
    monkeypatch.setenv("SLACK_MAX_SECTION_CHARS", "200")
    monkeypatch.setenv("SLACK_MAX_BLOCKS", "8")
    settings = Settings()
    long_summary = " ".join(f"Sentence {i} " + "word " * 20 + "end." for i in range(30))
    msg = render(commentary=make_commentary(summary=long_summary), settings=settings)
    assert len(msg.blocks) == 8
    assert max(len(t) for t in section_texts(msg.blocks)) <= 200
    assert "Reply shortened" in msg.text
    assert msg.blocks[-1]["type"] == "context" and "job123" in msg.text  # context line kept


def test_gate_failed_note_is_short_honest_and_quotes_no_rejected_text():
    report = GateReport(
        repaired=True,
        results=[
            GateResult(name="tldr", passed=False, detail="item 1 has 2 sentences"),
            GateResult(name="urls", passed=False, detail="remove https://evil.example.com/x"),
            GateResult(name="mentions", passed=False, detail="remove <!channel>"),
            GateResult(name="schema", passed=True),
        ],
    )
    msg = render_gate_failed(make_job(), make_evidence(), report)
    assert msg.outcome == Outcome.gate_failed and msg.thread_ts == "1700000000.000100"
    assert "Fast queues &amp; &lt;slow&gt; consumers" in msg.text
    assert "even after one repair attempt" in msg.text
    assert "TL;DR was not exactly three" in msg.text and "links that are in neither" in msg.text
    assert "evil" not in msg.text and find_mentions(msg.text) == []
    assert "job123" in msg.text and len(msg.blocks) <= 4


def test_error_note_shows_the_reason_escaped_and_nothing_else():
    msg = render_error(make_job(), "The source <could not> be read & <!here>.")
    assert msg.outcome == Outcome.error and msg.channel == "C123"
    assert "The source &lt;could not&gt; be read &amp;" in msg.text
    assert find_mentions(msg.text) == [] and "Traceback" not in msg.text
    assert f"<{PAGE_URL}>" in msg.text and "job123" in msg.text


def test_top_level_message_replies_in_its_own_thread_and_thread_reply_in_parent():
    job = make_job(thread_ts="1699999999.000001")
    assert render(job=job).thread_ts == "1699999999.000001"


def test_prompt_versions_are_listed_per_template():
    facts = make_facts()
    facts.usage.prompt_name, facts.usage.prompt_version = "sys_a,user_a", "file:111,file:222"
    msg = render_commentary(
        make_job(), make_evidence(), facts, make_commentary(), GateReport(), Settings()
    )
    assert "Prompts: sys_a@file:111, user_a@file:222, stage_b@file:def" in msg.text
