"""Stage A sees each snippet's section, and the offline model's facts from a paper read in full
hold what was proposed, how, what was measured (with a number) and the limits, from the sections
that say so."""

from __future__ import annotations

from pipeline import offline_model
from pipeline.models import Coverage, ReadKind, Snippet
from pipeline.offline_sections import role_of, section_line, split_section
from pipeline.prompting import new_nonce
from pipeline.stage_a import build_messages
from tests.support.builders import make_evidence
from tests.support.llm import offline_settings, prompts

PAPER = [
    ("Abstract", "We propose FastQ, a lock-free queue for many-core servers that scales linearly."),
    ("Abstract", "FastQ replaces the global lock of earlier queues with per-core rings."),
    ("Abstract", "It is simple to adopt in existing services and needs no kernel changes."),
    ("Abstract", "We describe its design, its implementation and its evaluation in depth."),
    ("Abstract", "FastQ is released as open source software for anyone to use and extend."),
    ("Abstract", "The queue was designed for message brokers and in-memory databases alike."),
    ("3 Method", "Each core owns a ring buffer and steals work from a neighbour when idle."),
    ("5 Experiments", "On 64 cores FastQ sustains 41 million operations per second in our tests."),
    ("5 Experiments", "Throughput stays flat as more producers are added to the benchmark setup."),
    ("7 Limitations", "FastQ does not preserve a global order of messages across all the cores."),
]


def paper_evidence():
    snippets = [Snippet(id=f"S{i}", text=t, section=s) for i, (s, t) in enumerate(PAPER, 1)]
    return make_evidence(coverage=Coverage.full, snippets=snippets, read=ReadKind.full_text)


def test_stage_a_evidence_lines_name_their_section():
    messages, _ = build_messages(paper_evidence(), prompts=prompts(), settings=offline_settings(), nonce=new_nonce())  # fmt: skip
    user = messages[1]["content"]
    assert "[S8] (section: 5 Experiments) On 64 cores FastQ sustains" in user
    assert section_line("fetch_url https://x.test", "text") == "text"
    assert split_section("(section: 7 Limitations) FastQ does not") == (
        "7 Limitations",
        "FastQ does not",
    )
    assert split_section("(not a section) text") == (None, "(not a section) text")


def test_roles_follow_section_headings():
    assert [role_of(s) for s in ("Abstract", "3.1 Model architecture", "5 Experiments", "7 Limitations", "Acknowledgements", None)] == [
        "proposal", "method", "results", "limits", None, None,
    ]  # fmt: skip


def test_offline_facts_cover_proposal_method_measurement_and_limits(monkeypatch):
    messages, _ = build_messages(paper_evidence(), prompts=prompts(), settings=offline_settings(), nonce=new_nonce())  # fmt: skip
    # fewer facts than sentences: the roles must win their place
    monkeypatch.setattr(offline_model, "MAX_FACTS", 5)
    facts = offline_model.facts_answer("\n".join(m["content"] for m in messages))
    cited = {f["snippet_ids"][0] for f in facts["key_facts"]}
    assert {"S7", "S8", "S10"} <= cited  # method, the measured result (a number), the limits
    assert any(c in cited for c in ("S1", "S2", "S3", "S4", "S5", "S6"))  # what was proposed
    texts = [f["text"] for f in facts["key_facts"]]
    assert not any(t.startswith("(section:") for t in texts)  # facts quote the source's words
