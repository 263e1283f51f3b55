"""Sentence splitting (pipeline/text.py), used for snippets, coverage and summary gates."""

from __future__ import annotations

from pipeline.text import count_substantive_sentences, is_substantive, split_sentences


def test_english_sentences_with_abbreviations_initials_and_numbers():
    text = (
        "Dr. Smith arrived at 3.30 p.m. on Monday. He met J. R. R. Tolkien's editor, e.g. the "
        "one from Oxford! Was it raining? Yes... it was. The U.S. team won 2.5 points."
    )
    assert split_sentences(text) == [
        "Dr. Smith arrived at 3.30 p.m. on Monday.",
        "He met J. R. R. Tolkien's editor, e.g. the one from Oxford!",
        "Was it raining?",
        "Yes... it was.",
        "The U.S. team won 2.5 points.",
    ]


def test_quotes_and_brackets_stay_with_their_sentence():
    assert split_sentences('He said "stop." Then (after a pause) he left.') == [
        'He said "stop."',
        "Then (after a pause) he left.",
    ]


def test_cjk_punctuation_splits_without_spaces():
    text = "谷歌在2014年收购了DeepMind。这款产品意义重大！它能学习吗？“能。”研究人员说。"
    assert split_sentences(text) == [
        "谷歌在2014年收购了DeepMind。",
        "这款产品意义重大！",
        "它能学习吗？",
        "“能。”",
        "研究人员说。",
    ]


def test_blank_lines_always_separate():
    assert split_sentences("A heading without a period\n\nBody text follows here.") == [
        "A heading without a period",
        "Body text follows here.",
    ]


def test_substance():
    assert not is_substantive("Read more.")
    assert is_substantive("The compiler now reports unexpected cfg names by default.")
    assert is_substantive("研究人员表示这款计算机能够用自己的记忆学习新知识。")
    assert count_substantive_sentences("Short. " * 5 + "This one has six words in it.") == 1
