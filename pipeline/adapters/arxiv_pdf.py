"""A paper's sections from its PDF text (pypdf), for arXiv papers without an HTML version.

A PDF has no markup, so the structure is read from the lines: a short line that looks like a
section heading (``3 Experiments``, ``4.2 Ablations``, ``Limitations``, ``A Proofs``) starts a
section; a line that ends a sentence and is clearly shorter than the lines around it ends a
paragraph; words hyphenated at a line end are joined. Reading stops at the references
heading: the bibliography is not the paper's content.
"""

from __future__ import annotations

import re
import statistics

from pipeline.adapters.base import Passage
from pipeline.text import ends_sentence, normalize_space

_NUMBERED = re.compile(
    r"^(?:\d{1,2}(?:\.\d{1,2}){0,2}|[A-H](?:\.\d{1,2})?)\.?\s+[A-Z][^.!?]{2,70}$"
)
_NAMED = re.compile(
    r"^(?:abstract|introduction|background|related work|methods?|methodology|approach|"
    r"experiments?|experimental (?:setup|results)|evaluation|results(?: and discussion)?|"
    r"discussion|limitations?|conclusions?(?: and future work)?|future work|appendix)$",
    re.I,
)
_REFERENCES = re.compile(r"^(?:\d{1,2}\.?\s+)?(?:references|bibliography)$", re.I)
_BACK_MATTER = re.compile(r"^(?:\d{1,2}\.?\s+)?(?:acknowledge?ments?|author contributions)", re.I)
_MAX_HEADING_WORDS = 8
_MAX_UNNUMBERED_WORDS = 6
_PAGE_NUMBER = re.compile(r"^\d{1,3}$")


def _heading(line: str, after_paragraph: bool, full: float) -> bool:
    """A numbered or well-known heading anywhere; an unnumbered short capitalised line without
    end punctuation only right after a paragraph ended (a wrapped sentence never is one)."""
    words = line.split()
    if not words or len(words) > _MAX_HEADING_WORDS or line.endswith((",", ";", "-", ":")):
        return False
    if _NUMBERED.match(line) or _NAMED.match(line) or _REFERENCES.match(line):
        return True
    return (
        after_paragraph
        and len(words) <= _MAX_UNNUMBERED_WORDS
        and len(line) < 0.6 * full
        and line[:1].isupper()
        and not ends_sentence(line)
        and not re.search(r"[=()\[\]{}|<>$%]|\d{3}", line)
    )


def pdf_passages(pages: list[str]) -> tuple[list[Passage], bool]:
    """Paragraphs under their headings, and whether the references heading was reached."""
    lines = [" ".join(x.split()) for page in pages for x in page.replace("\r", "").split("\n")]
    lines = [x for x in lines if x and not _PAGE_NUMBER.match(x)]
    lengths = [len(x) for x in lines if len(x) > 20]
    full = statistics.median(lengths) if lengths else 80
    passages: list[Passage] = []
    section: str | None = None
    skipping = False
    current = ""

    def flush() -> None:
        nonlocal current, section
        if current and not skipping:
            passages.append(Passage(normalize_space(current), section))
            if section and section.lower() == "abstract":
                section = None  # one paragraph: unheaded text after it is the introduction
        current = ""

    for line in lines:
        if _heading(line, not current, full):
            flush()
            if _REFERENCES.match(line):
                return passages, True
            section, skipping = line, bool(_BACK_MATTER.match(line))
            continue
        if current.endswith("-") and line[:1].islower():
            current = current[:-1] + line
        else:
            current = f"{current} {line}".strip()
        if ends_sentence(line) and len(line) < 0.8 * full:
            flush()
    flush()
    return passages, False
