"""Structured source fields rendered as plain sentences, so facts can cite them.

Each adapter ends its evidence with one snippet of these sentences (``METADATA_SECTION``):
arXiv (title, authors, submission and update dates, categories, the authors' comment, journal
reference), GitHub (licence, language mix, stars and forks, creation and last push, latest
release and the first sentences of its notes, topics, default branch, archived) and pages
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

from pipeline.adapters.readme import markdown_passages
from pipeline.models import Source
from pipeline.text import ends_sentence, is_citable, normalize_space, split_units

MAX_AUTHORS = 5  # more are "A, B, C, D, E and 12 others"
MAX_TOPICS = 8
MAX_OTHER_LANGUAGES = 3  # "mostly in Python (82%), with C (12%), Cython (4%) and Shell (1%)"
MIN_LANGUAGE_SHARE = 1  # percent: smaller shares are not worth a mention
RELEASE_NOTES_SENTENCES = 2
RELEASE_NOTES_MAX_CHARS = 400
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


def _count(n: Any, one: str) -> str | None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return None
    return f"{n:,} {one}{'' if n == 1 else 's'}"


def language_mix(languages: dict[str, int]) -> list[tuple[str, int]]:
    """(language, whole percent of the code's bytes), largest first, shares under
    ``MIN_LANGUAGE_SHARE`` left out."""
    total = sum(languages.values())
    if total <= 0:
        return []
    shares = sorted(languages.items(), key=lambda kv: -kv[1])
    return [(plain(k), round(100 * v / total)) for k, v in shares if 100 * v / total >= 0.5]


def _languages_sentence(subject: str, languages: dict[str, int]) -> str | None:
    mix = [(name, pct) for name, pct in language_mix(languages) if pct >= MIN_LANGUAGE_SHARE]
    if not mix:
        return None
    (first, share), others = mix[0], mix[1 : 1 + MAX_OTHER_LANGUAGES]
    if not others:
        return f"{subject} is written in {first} ({share}%)."
    rest = _listing([f"{name} ({pct}%)" for name, pct in others], MAX_OTHER_LANGUAGES)
    return f"{subject} is written mostly in {first} ({share}%), with {rest}."


def release_notes_excerpt(notes: str) -> str:
    """The first citable sentences of release notes (Markdown), at most
    ``RELEASE_NOTES_SENTENCES`` and ``RELEASE_NOTES_MAX_CHARS``; "" when they open with none
    (a changelog of lines, links and @-handles says nothing a sentence can quote)."""
    kept: list[str] = []
    for passage in markdown_passages(notes):
        if passage.preformatted or passage.kind != "prose":
            continue
        for unit in split_units(passage.text):
            candidate = " ".join([*kept, unit.text])
            if not is_citable(unit) or "“" in unit.text or len(candidate) > RELEASE_NOTES_MAX_CHARS:
                return " ".join(kept)
            kept.append(unit.text)
            if len(kept) >= RELEASE_NOTES_SENTENCES:
                return " ".join(kept)
    return " ".join(kept)


def _release_sentences(name: str, release: Any) -> list[str]:
    if not isinstance(release, dict):
        return []
    tag, title = str(release.get("tag") or ""), plain(str(release.get("name") or ""))
    if not tag and not title:
        return []
    called = (
        f"{tag}"
        if not title or title == tag
        else f"{_quoted(title)} ({tag})"
        if tag
        else _quoted(title)
    )
    when = readable_date(release.get("published_at"))
    out = [
        _sentence(
            f"The latest release of {name} is {called}" + (f", published on {when}" if when else "")
        )
    ]
    if release.get("notes"):
        out.append(_sentence(f"The notes of that release begin: {_quoted(release['notes'])}"))
    return out


def github_sentences(source: Source) -> list[str]:
    """Sentences from the repository facts (the description is rendered separately, first)."""
    meta = source.metadata
    name = meta.get("full_name") or source.title or "The repository"
    subject = f"The repository {name}"
    out = []
    licence = str(meta.get("license") or "")
    if licence and licence.upper() not in _NO_LICENCE:
        out.append(f"{subject} is released under the {licence} licence.")
    languages = meta.get("languages")
    if mix := _languages_sentence(subject, languages if isinstance(languages, dict) else {}):
        out.append(mix)
    elif meta.get("language"):
        out.append(f"{subject} is mainly written in {meta['language']}.")
    stars, forks = _count(meta.get("stars"), "star"), _count(meta.get("forks"), "fork")
    if stars or forks:
        counts = " and ".join(c for c in (stars, forks) if c)
        out.append(f"{subject} has {counts} on GitHub.")
    created, pushed = readable_date(meta.get("created_at")), readable_date(meta.get("pushed_at"))
    if created:
        out.append(f"{subject} was created on {created}.")
    out += _release_sentences(name, meta.get("latest_release"))
    topics = [str(t) for t in meta.get("topics", [])][:MAX_TOPICS]
    if topics:
        out.append(f"The GitHub topics of {name} are {_listing(topics, MAX_TOPICS)}.")
    if meta.get("default_branch"):
        out.append(f"The default branch of {name} is {meta['default_branch']}.")
    if pushed:
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
