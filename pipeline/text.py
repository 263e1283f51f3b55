"""Plain-text helpers shared by retrieval, the stages and the gates.

``split_sentences`` works on English-like text (``. ! ?`` followed by a space and a non-lowercase
start, with common abbreviations and initials kept inside the sentence) and on Chinese/Japanese
text (``。！？`` end a sentence with or without a following space).
"""

from __future__ import annotations

import re

_WS = re.compile(r"\s+")

# A sentence ends at a run of terminators, optionally followed by closing quotes or brackets.
# CJK terminators need no following space; Latin ones need whitespace and then something that
# does not start with a lowercase letter (so "e.g. this" and "3.5 times" stay together).
_BOUNDARY = re.compile(
    r"""(?:
        [。！？!?．]*[。！？][”’」』）〕】"')\]]*\s*          # CJK: end here, space optional
      | (?:\.{3}|…|[.!?])+[”’"')\]]*(?=\s+[^\sa-z])\s+    # Latin: space, then not lowercase
    )""",
    re.VERBOSE,
)

# Tokens before a "." that do not end a sentence.
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "cf",
        "al",
        "fig",
        "figs",
        "eq",
        "no",
        "nos",
        "vol",
        "pp",
        "ca",
        "approx",
        "inc",
        "ltd",
        "co",
        "corp",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "u.s",
        "u.k",
        "dept",
        "gen",
        "gov",
        "sen",
        "rep",
        "rev",
        "mt",
        "ft",
    ]
)
_WORD_BEFORE_DOT = re.compile(r"([\w.]+)\.[”’\"')\]]*\s*$")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def normalize_space(text: str) -> str:
    """Collapse every run of whitespace (including non-breaking spaces) to one space."""
    return _WS.sub(" ", text).strip()


def _ends_with_abbreviation(chunk: str) -> bool:
    m = _WORD_BEFORE_DOT.search(chunk)
    if not m:
        return False
    word = m.group(1).lower()
    if word in _ABBREVIATIONS:
        return True
    # An initial ("J. Smith", "U. S.") is one letter, possibly after another initial.
    return len(word.rsplit(".", 1)[-1]) == 1 and word[-1:].isalpha()


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, keeping each sentence's own punctuation.

    Blank lines always separate sentences. Abbreviations (``Dr.``, ``e.g.``) and initials
    (``J. R. R. Tolkien``) do not end a sentence. Returns stripped, non-empty sentences.
    """
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        block = normalize_space(block)
        start = 0
        for m in _BOUNDARY.finditer(block):
            end = m.end()
            piece = block[start:end]
            if piece.rstrip().endswith(".") and _ends_with_abbreviation(piece.rstrip()):
                continue
            if piece.strip():
                out.append(piece.strip())
            start = end
        if block[start:].strip():
            out.append(block[start:].strip())
    return out


def is_substantive(sentence: str, min_words: int = 6, min_cjk_chars: int = 12) -> bool:
    """A sentence that carries content: enough words, or enough CJK characters."""
    if len(_CJK.findall(sentence)) >= min_cjk_chars:
        return True
    return len(sentence.split()) >= min_words


def count_substantive_sentences(text: str) -> int:
    return sum(1 for s in split_sentences(text) if is_substantive(s))
