"""Numbered snippets: merging, splitting, caps, list items, code and the metadata snippet; and
the coverage rules."""

from __future__ import annotations

from pipeline.adapters.base import (
    ITEM,
    METADATA_SECTION,
    SNIPPET_MAX_CHARS,
    SNIPPET_MIN_CHARS,
    Passage,
    build_snippets,
    content_snippets,
    judge_coverage,
)
from pipeline.models import Coverage
from pipeline.settings import Settings
from pipeline.text import LIST_BULLET, split_sentences, split_units

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


def test_code_is_fenced_keeps_its_lines_and_never_reads_as_a_sentence():
    passages = [Passage("Install it:"), Passage("pip install x\npip install y", preformatted=True)]
    snippets, _ = build_snippets(passages, Settings())
    assert [s.text for s in snippets] == ["Install it: ```\npip install x\npip install y\n```"]
    units = split_units(snippets[0].text)
    assert [(u.text, u.code) for u in units] == [
        ("Install it:", False),
        ("```\npip install x\npip install y\n```", True),
    ]


def test_list_items_follow_bullets_and_never_run_into_each_other():
    passages = [
        Passage("Bundles are available:", "B"),
        Passage("redis: for using Redis as a message transport", "B", kind=ITEM),
        Passage("sqs: for using Amazon SQS", "B", kind=ITEM),
        Passage("Python 2.6: Celery series 3.1 or earlier.", "B", kind=ITEM),
        Passage("Prose after the list is a paragraph again.", "B"),
    ]
    snippets, _ = build_snippets(passages, Settings())
    text = " ".join(s.text for s in snippets)
    assert text.startswith(
        "Bundles are available: • redis: for using Redis as a message transport "
        "• sqs: for using Amazon SQS • Python 2.6"
    )
    units = [u for s in snippets for u in split_units(s.text)]
    assert [(u.text, u.listed) for u in units] == [
        ("Bundles are available:", False),
        ("redis: for using Redis as a message transport", True),
        ("sqs: for using Amazon SQS", True),
        ("Python 2.6: Celery series 3.1 or earlier.", True),
        ("Prose after the list is a paragraph again.", False),
    ]


def test_a_paragraph_that_is_not_a_sentence_does_not_run_into_the_next():
    passages = [
        Passage("Tuesday 15 October 2019 by A. Author"),
        Passage("The last days were hard."),
    ]
    snippets, _ = build_snippets(passages, Settings())
    assert [s.text for s in snippets] == [
        "Tuesday 15 October 2019 by A. Author ¶ The last days were hard."
    ]
    assert split_sentences(snippets[0].text) == [
        "Tuesday 15 October 2019 by A. Author",
        "The last days were hard.",
    ]


def test_a_long_list_item_is_a_paragraph():
    long_item = Passage(SENTENCE * 7, kind=ITEM)
    snippets, _ = build_snippets([Passage("Intro."), long_item], Settings())
    assert LIST_BULLET not in " ".join(s.text for s in snippets)


def test_metadata_snippet_comes_last_and_the_caps_never_cut_it():
    meta = "The paper “A Title” was posted to arXiv by A. Author."
    paras = [Passage(SENTENCE * 8) for _ in range(10)]
    for settings in (Settings(evidence_max_chars=1200), Settings(evidence_max_snippets=3)):
        snippets, truncated = build_snippets(paras, settings, metadata=meta)
        assert truncated
        assert snippets[-1].text == meta and snippets[-1].section == METADATA_SECTION
        assert len(snippets) <= settings.evidence_max_snippets
        assert sum(len(s.text) for s in snippets) <= settings.evidence_max_chars + 2
    assert content_snippets(snippets) == snippets[:-1]


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


def test_coverage_ignores_the_metadata_snippet():
    metadata_only, _ = build_snippets([], Settings(), metadata=SENTENCE * 20)
    assert judge_coverage(metadata_only, truncated=False) == (Coverage.failed, "no readable text")
    short, _ = build_snippets([Passage(SENTENCE * 3)], Settings(), metadata=SENTENCE * 20)
    assert judge_coverage(short, truncated=False)[0] == Coverage.partial
