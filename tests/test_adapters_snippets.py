"""Numbered snippets: merging, splitting, caps; and the coverage rules."""

from __future__ import annotations

from pipeline.adapters.base import (
    SNIPPET_MAX_CHARS,
    SNIPPET_MIN_CHARS,
    Passage,
    build_snippets,
    judge_coverage,
)
from pipeline.models import Coverage
from pipeline.settings import Settings

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank. "


def test_tiny_paragraphs_merge_within_a_section_only():
    passages = [Passage("One.", "A"), Passage("Two.", "A"), Passage("Three.", "B")]
    snippets, truncated = build_snippets(passages, Settings())
    assert [(s.id, s.section, s.text) for s in snippets] == [
        ("S1", "A", "One. Two."),
        ("S2", "B", "Three."),
    ]
    assert not truncated


def test_long_paragraph_split_at_sentence_ends():
    text = SENTENCE * 60  # ~3,900 characters
    snippets, _ = build_snippets([Passage(text)], Settings())
    assert len(snippets) > 1
    assert all(len(s.text) <= SNIPPET_MAX_CHARS for s in snippets)
    assert all(s.text.endswith(".") for s in snippets)
    assert " ".join(s.text for s in snippets) == text.strip()


def test_paragraphs_of_normal_size_stay_whole():
    para = SENTENCE * 8  # ~500 characters: above the merge size, below the split size
    assert SNIPPET_MIN_CHARS < len(para) < SNIPPET_MAX_CHARS
    snippets, _ = build_snippets([Passage(para), Passage(para)], Settings())
    assert [s.text for s in snippets] == [para.strip(), para.strip()]


def test_code_is_never_merged_and_keeps_its_lines():
    passages = [Passage("Install it:"), Passage("pip install x\npip install y", preformatted=True)]
    snippets, _ = build_snippets(passages, Settings())
    assert [s.text for s in snippets] == ["Install it:", "pip install x\npip install y"]


def test_caps_on_characters_and_count_mark_truncation():
    paras = [Passage(SENTENCE * 8) for _ in range(10)]
    by_chars, truncated = build_snippets(paras, Settings(evidence_max_chars=1200))
    assert truncated
    assert sum(len(s.text) for s in by_chars) <= 1200 + 2
    by_count, truncated = build_snippets(paras, Settings(evidence_max_snippets=3))
    assert truncated and len(by_count) == 3


def test_coverage_rules():
    full = [Passage(SENTENCE * 16)]
    snippets, _ = build_snippets(full, Settings())
    assert judge_coverage(snippets, truncated=False) == (Coverage.full, None)
    coverage, reason = judge_coverage(snippets, truncated=True, truncation="cut at 10 bytes")
    assert (coverage, reason) == (Coverage.partial, "truncated: cut at 10 bytes")
    short, _ = build_snippets([Passage(SENTENCE * 3)], Settings())
    assert judge_coverage(short, truncated=False) == (
        Coverage.partial,
        "short text: 3 sentences of substance",
    )
    assert judge_coverage([], truncated=False) == (Coverage.failed, "no readable text")
