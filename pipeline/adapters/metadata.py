"""Structured source fields rendered as plain sentences, so facts can cite them.

Each adapter ends its evidence with one snippet of these sentences (``METADATA_SECTION``):
arXiv (title, authors, submission and update dates, categories, the authors' comment, journal
reference), GitHub (language, licence, topics, default branch, last push, archived) and pages
and PDFs (title, site, authors, dates, pages). Only fields the source gave are rendered, each
value verbatim inside a fixed template, deterministically: nothing is guessed or summarised.

Templates follow the sentence splitter's rules (``pipeline.text``): every sentence starts with a
capital letter and ends with a period, and values that may contain periods or question marks
(titles, comments, journal references) sit inside curly quotes, which hold a sentence together.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Any

from pipeline.models import Source
from pipeline.text import ends_sentence, normalize_space

MAX_AUTHORS = 5  # more are "A, B, C, D, E and 12 others"
MAX_TOPICS = 8
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_NO_LICENCE = {"NOASSERTION", "OTHER", "NONE"}
# TeX accents in arXiv names and titles (Moraz\'an, G\"odel): \' \` \" \^ \~ over one letter.
_TEX_ACCENT = re.compile(r"""\\(['`"^~])\{?([A-Za-z])\}?""")
_COMBINING = {"'": "\u0301", "`": "\u0300", '"': "\u0308", "^": "\u0302", "~": "\u0303"}


# TeX text formatting, as arXiv abstracts and titles carry it: \emph{x}, {\em x}, ``x''.
_TEX_COMMAND = re.compile(r"\\(?:emph|textit|textbf|texttt|textsc|textsf|underline)\{([^{}$]*)\}")
_TEX_SWITCH = re.compile(r"\{\\(?:em|it|bf|tt|sc|sf|sl)\s+([^{}$]*)\}")
_TEX_QUOTES = re.compile(r"``([^`'$]*)''")


def plain(value: str) -> str:
    """Whitespace collapsed, TeX accents as letters and TeX text formatting dropped (math is
    kept as written): how a reader would see the value."""
    text = _TEX_ACCENT.sub(lambda m: m.group(2) + _COMBINING[m.group(1)], value)
    text = _TEX_SWITCH.sub(r"\1", _TEX_COMMAND.sub(r"\1", text))
    text = _TEX_QUOTES.sub(r"“\1”", text)
    return unicodedata.normalize("NFC", normalize_space(text))


def readable_date(value: Any) -> str | None:
    """``2014-09-02T08:35:27-04:00`` -> ``2 September 2014`` (the date as the source wrote it)."""
    m = _ISO_DATE.match(str(value or ""))
    if not m:
        return None
    try:
        day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _quoted(value: str) -> str:
    """A value inside curly quotes; its own curly quotes become straight ones (they would
    unbalance the quotation)."""
    return "“" + plain(value).replace("“", '"').replace("”", '"') + "”"


def _listing(names: list[str], limit: int) -> str:
    names = [plain(n) for n in names if plain(n)]
    shown, rest = names[:limit], len(names) - limit
    if rest > 0:
        return ", ".join(shown) + f" and {rest} other{'s' if rest > 1 else ''}"
    if len(shown) <= 2:
        return " and ".join(shown)
    return ", ".join(shown[:-1]) + f" and {shown[-1]}"


def _sentence(text: str) -> str:
    """``text`` ending like a sentence (a quoted value may end with its own period)."""
    return text if ends_sentence(text) else text + "."


def _dates(subject: str, published: Any, updated: Any, verb: str = "submitted") -> str | None:
    first, last = readable_date(published), readable_date(updated)
    if first and last and last != first:
        return f"{subject} was first {verb} on {first} and last updated on {last}."
    if first or last:
        return f"{subject} was {verb if first else 'last updated'} on {first or last}."
    return None


def arxiv_sentences(source: Source) -> list[str]:
    meta = source.metadata
    out = []
    if source.title:
        by = f" by {_listing(source.authors, MAX_AUTHORS)}" if source.authors else ""
        out.append(f"The paper {_quoted(source.title)} was posted to arXiv{by}.")
    if dates := _dates("The paper", source.published, source.updated):
        out.append(dates)
    primary = meta.get("primary_category")
    others = [c for c in meta.get("categories", []) if c != primary]
    if primary:
        also = f", and it is also listed under {_listing(others, 10)}" if others else ""
        out.append(f"The paper's primary arXiv category is {primary}{also}.")
    elif others:
        out.append(f"The paper is listed under the arXiv categories {_listing(others, 10)}.")
    if meta.get("comment"):
        out.append(_sentence(f"The authors' comment on the paper reads {_quoted(meta['comment'])}"))
    if meta.get("journal_ref"):
        out.append(_sentence(f"The journal reference is {_quoted(meta['journal_ref'])}"))
    return out


def github_description(full_name: str, description: str) -> str:
    """The repository's description as one sentence (kept as is when it already is one)."""
    description = normalize_space(description)
    if ends_sentence(description) and description[:1].isupper() and len(description.split()) >= 6:
        return description
    return _sentence(
        f"The GitHub repository {full_name} describes itself as {_quoted(description)}"
    )


def github_sentences(source: Source) -> list[str]:
    """Sentences from the repository facts (the description is rendered separately, first)."""
    meta = source.metadata
    name = meta.get("full_name") or source.title or "The repository"
    subject = f"The repository {name}"
    out = []
    if meta.get("language"):
        out.append(f"{subject} is mainly written in {meta['language']}.")
    licence = str(meta.get("license") or "")
    if licence and licence.upper() not in _NO_LICENCE:
        out.append(f"{subject} is released under the {licence} licence.")
    topics = [str(t) for t in meta.get("topics", [])][:MAX_TOPICS]
    if topics:
        out.append(f"The GitHub topics of {name} are {_listing(topics, MAX_TOPICS)}.")
    if meta.get("default_branch"):
        out.append(f"The default branch of {name} is {meta['default_branch']}.")
    if pushed := readable_date(meta.get("pushed_at")):
        out.append(f"The last push to {name} was on {pushed}.")
    if meta.get("archived") is True:
        out.append(f"{subject} is archived, so it is read-only.")
    return out


def page_sentences(source: Source) -> list[str]:
    """Title, site, authors, dates and pages of a page or PDF that has a title."""
    if not source.title:
        return []
    what = "The document" if source.kind == "pdf" else "The page"
    parts = []
    if source.site_name and source.site_name.lower() not in source.title.lower():
        parts.append(f"on {normalize_space(source.site_name)}")
    if source.authors:
        parts.append(f"by {_listing(source.authors, MAX_AUTHORS)}")
    first = readable_date(source.published)
    if first:
        parts.append(f"on {first}")
    out = []
    if parts:
        out.append(f"{what} {_quoted(source.title)} was published {' '.join(parts)}.")
    else:
        out.append(f"{what} is titled {_quoted(source.title)}.")
    last = readable_date(source.updated)
    if last and last != first:
        out.append(f"{what} {_quoted(source.title)} was last updated on {last}.")
    pages = source.metadata.get("pages")
    if isinstance(pages, int) and pages > 0:
        out.append(f"{what} {_quoted(source.title)} has {pages} page{'s' if pages > 1 else ''}.")
    return out


def metadata_text(sentences: list[str]) -> str | None:
    return " ".join(sentences) or None
