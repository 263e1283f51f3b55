"""README text (Markdown or reStructuredText) to plain-text passages under their headings.

What a reader of the rendered README would take in: headings become each passage's section;
badges, images, raw HTML tags, link targets, reference definitions and directive options are
dropped; paragraphs become prose passages, list items, field lists and table rows become item
passages (never run into the next one as a sentence), code blocks are kept short (the first
``CODE_MAX_LINES`` lines) because an install line is evidence but a long listing is not. A short
list item with a paragraph indented under it (``- **Fast**`` then the text) reads as one
``Term: text`` paragraph. Sponsor, backer, donation and acknowledgement parts (a heading and
everything under it) advertise or thank, they do not describe the project: they are left out.
The format is sniffed from the text, since GitHub's raw README answer carries no file name.
"""

from __future__ import annotations

import html
import re

from pipeline.adapters.base import ITEM, PROSE, Passage
from pipeline.text import ends_sentence

CODE_MAX_LINES = 8
TERM_MAX_WORDS = 6

# --- Markdown --------------------------------------------------------------------------------
_MD_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_MD_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_HTML_HEADING = re.compile(r"^\s*<h([1-6])[^>]*>(.*?)</h\1>\s*$", re.IGNORECASE)
_MD_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_MD_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_MD_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+(.*)$")
_MD_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
_MD_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*\S+")
_MD_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_MD_ALERT = re.compile(r"^\[!(NOTE|TIP|IMPORTANT|WARNING|CAUTION)\]\s*", re.IGNORECASE)

_MD_INLINE = [
    (re.compile(r"<!--.*?-->", re.DOTALL), ""),
    (re.compile(r"\[!\[[^\]]*\]\([^)]*\)\]\([^)]*\)"), ""),  # badge: linked image
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),  # image
    (re.compile(r"!\[[^\]]*\]\[[^\]]*\]"), ""),  # reference image
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),  # link
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference link
    (re.compile(r"<(https?://[^>\s]+)>"), r"\1"),  # autolink
    (re.compile(r"<img\b[^>]*>", re.IGNORECASE), ""),
    (re.compile(r"</?[A-Za-z][^>]*>"), ""),  # any other tag: keep its text
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"~~(.+?)~~"), r"\1"),
    (re.compile(r"`+([^`]+)`+"), r"\1"),
]


def _md_inline(text: str) -> str:
    for pattern, replacement in _MD_INLINE:
        text = pattern.sub(replacement, text)
    return " ".join(html.unescape(text).split())


def _code(lines: list[str], section: str | None) -> Passage | None:
    lines = [ln.rstrip() for ln in lines]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return None
    shown = lines[:CODE_MAX_LINES]
    if len(lines) > CODE_MAX_LINES:
        shown.append(f"… ({len(lines) - CODE_MAX_LINES} more lines)")
    indent = min(len(ln) - len(ln.lstrip()) for ln in shown if ln.strip())
    return Passage("\n".join(ln[indent:] for ln in shown), section, preformatted=True)


# Parts of a README that advertise sponsors, ask for money or thank people: never what the
# project is or does.
_SKIPPED_HEADING = re.compile(
    r"^\W*(?:(?:our|gold|silver|bronze|platinum|keystone|corporate|financial|special)\s+)?"
    r"(?:sponsors?|sponsorship|sponsored by|donations?|donate|backers?|funding|supporters|"
    r"acknowledge?ments?|credits|thanks|thank you)\W*$",
    re.IGNORECASE,
)


class _Outline:
    """The current heading, and whether it lies in a sponsors or thanks part (skipped up to the
    next heading of the same or a higher level)."""

    def __init__(self) -> None:
        self.section: str | None = None
        self.skip_level: int | None = None

    def enter(self, name: str, level: int) -> None:
        if self.skip_level is not None and level <= self.skip_level:
            self.skip_level = None
        if self.skip_level is None and _SKIPPED_HEADING.match(name):
            self.skip_level = level
        self.section = name or self.section

    @property
    def skipping(self) -> bool:
        return self.skip_level is not None


def _is_term(text: str) -> bool:
    """A list item that names what the indented paragraph under it describes (``- **Fast**``)."""
    return len(text.split()) <= TERM_MAX_WORDS and not ends_sentence(text)


def _add_paragraph(
    out: list[Passage], text: str, section: str | None, kind: str, under_term: bool
) -> None:
    """Append a paragraph; the first paragraph indented under a term item joins it as
    ``Term: paragraph`` (a definition reads as one sentence, not as a label and a sentence)."""
    if kind == PROSE and under_term:
        out[-1] = Passage(f"{out[-1].text}: {text}", section)
    else:
        out.append(Passage(text, section, kind=kind))


def markdown_passages(text: str) -> list[Passage]:
    out: list[Passage] = []
    outline = _Outline()
    para: list[str] = []
    kind = PROSE  # of the paragraph being collected: an item when it started with a marker
    indent = 0  # of the paragraph's first line (of the marker, for an item)
    term: tuple[int, int] | None = None  # (index in out, marker indent) of a term item
    fence: str | None = None
    code: list[str] = []

    def flush() -> None:
        nonlocal kind, term
        if para:
            joined = _md_inline(" ".join(para))
            if joined and not outline.skipping:
                under = term is not None and term == (len(out) - 1, term[1]) and indent > term[1]
                _add_paragraph(out, joined, outline.section, kind, under)
                term = (len(out) - 1, indent) if kind == ITEM and _is_term(joined) else None
            para.clear()
        kind = PROSE

    def emit(passage: Passage | None) -> None:
        if passage is not None and not outline.skipping:
            out.append(passage)

    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    for raw in text.splitlines():
        line = raw
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
                emit(_code(code, outline.section))
                code = []
            else:
                code.append(line)
            continue
        if m := _MD_FENCE.match(line):
            flush()
            fence = m.group(1)[0] * 3
            continue
        heading = _MD_ATX.match(line) or _MD_HTML_HEADING.match(line)
        if heading:
            flush()
            level = int(heading.group(1)) if heading.group(1).isdigit() else len(heading.group(1))
            outline.enter(_md_inline(heading.group(2)), level)
            continue
        if len(para) == 1 and (setext := _MD_SETEXT.match(line)) and para[0].strip():
            outline.enter(_md_inline(para[0]), 1 if setext.group(1)[0] == "=" else 2)
            para.clear()
            continue
        if not line.strip() or _MD_RULE.match(line) or _MD_REF_DEF.match(line):
            flush()
            continue
        if line.lstrip().startswith("|"):  # a table row is a passage of its own
            flush()
            if not _MD_TABLE_SEP.match(line):
                cells = [_md_inline(c) for c in line.strip().strip("|").split("|")]
                row = " — ".join(c for c in cells if c)
                if row:
                    emit(Passage(row, outline.section, kind=ITEM))
            continue
        if m := _MD_ITEM.match(line):
            flush()
            line, kind = m.group(1), ITEM
        elif m := _MD_QUOTE.match(line):
            line = _MD_ALERT.sub(lambda a: a.group(1).capitalize() + ": ", m.group(1))
        if not _md_inline(line):  # a line of tags only (<p align=center>, badges)
            flush()
            continue
        if not para:
            indent = len(raw) - len(raw.lstrip())
        para.append(line.strip())
    flush()
    if fence is not None:
        emit(_code(code, outline.section))
    return out


# --- reStructuredText ------------------------------------------------------------------------
_RST_ADORN = re.compile(r"^([=\-~^\"'`#*+<>:._])\1{2,}\s*$")
_RST_ITEM = re.compile(r"^\s*(?:[-*+•]|#\.|\d{1,9}[.)])\s+(.*)$")
_RST_FIELD = re.compile(r"^:([^:]+):\s*(.*)$")
_RST_CODE = re.compile(r"^\.\.\s+(?:code-block|code|sourcecode)::")
_RST_TABLE_BORDER = re.compile(r"^\s*[+=][-=+]+[+=]?\s*$|^\s*=+(\s+=+)+\s*$")
_RST_INLINE = [
    (re.compile(r"`([^`<]+?)\s*<[^>]+>`_{1,2}"), r"\1"),  # `text <url>`_
    (re.compile(r":[\w:+-]+:`([^`]+)`"), r"\1"),  # :role:`text`
    (re.compile(r"``([^`]+)``"), r"\1"),
    (re.compile(r"`([^`]+)`_{0,2}"), r"\1"),
    (re.compile(r"\|[^|\s][^|]*\|_{0,2}"), ""),  # |substitution|
    (re.compile(r"\*\*(.+?)\*\*"), r"\1"),
    (re.compile(r"(?<!\w)\*(\S.*?)\*(?!\w)"), r"\1"),
    (re.compile(r"(?<=\w)_(?=[\s,.;:)]|$)"), ""),  # reference_
]


def _rst_inline(text: str) -> str:
    for pattern, replacement in _RST_INLINE:
        text = pattern.sub(replacement, text)
    return " ".join(html.unescape(text).split())


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _indented_block(lines: list[str], start: int, indent: int = 0) -> int:
    """Index after the block indented deeper than ``indent`` that starts at ``start``."""
    i = start
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
        i += 1
    while i > start and not lines[i - 1].strip():
        i -= 1  # trailing blank lines are not part of it
    return i


def rst_passages(text: str) -> list[Passage]:
    lines = text.splitlines()
    out: list[Passage] = []
    outline = _Outline()
    styles: list[tuple[bool, str]] = []  # title adornments in order of first use: the levels
    para: list[str] = []
    kind = PROSE  # of the paragraph being collected: an item for list items, fields, rows
    indent = 0  # of the paragraph's first line (of the marker, for an item)
    term: tuple[int, int] | None = None  # (index in out, marker indent) of a term item
    literal_next = False  # the paragraph ended with "::": an indented literal block follows

    def flush() -> None:
        nonlocal literal_next, kind, term
        if para:
            joined = " ".join(para)
            literal_next = joined.endswith("::")
            joined = joined[:-1] if literal_next else joined
            joined = _rst_inline(joined.removesuffix(" :"))
            if joined and not outline.skipping:
                under = term is not None and term == (len(out) - 1, term[1]) and indent > term[1]
                _add_paragraph(out, joined, outline.section, kind, under)
                term = (len(out) - 1, indent) if kind == ITEM and _is_term(joined) else None
            para.clear()
        kind = PROSE

    def emit(passage: Passage | None) -> None:
        if passage is not None and not outline.skipping:
            out.append(passage)

    def title(name: str, style: tuple[bool, str]) -> None:
        if style not in styles:
            styles.append(style)
        outline.enter(_rst_inline(name), styles.index(style) + 1)

    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        after = lines[i + 2] if i + 2 < len(lines) else ""
        if _RST_ADORN.match(line) and nxt.strip() and _RST_ADORN.match(after):
            flush()  # overlined title
            title(nxt, (True, line.strip()[0]))
            i += 3
            continue
        if (
            not para
            and line.strip()
            and _RST_ADORN.match(nxt)
            and not _RST_ADORN.match(line)
            and len(nxt.rstrip()) >= len(line.rstrip()) - 2
        ):
            flush()  # underlined title
            title(line, (False, nxt.strip()[0]))
            i += 2
            continue
        if line.lstrip().startswith(".."):
            flush()
            end = _indented_block(lines, i + 1, _indent(line))
            if _RST_CODE.match(line.lstrip()):
                body = [ln for ln in lines[i + 1 : end] if not ln.strip().startswith(":")]
                emit(_code(body, outline.section))
            i = end  # images, substitutions, targets, comments and their options: dropped
            continue
        if not line.strip():
            flush()
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            if literal_next and i < len(lines) and lines[i][:1] in {" ", "\t"}:
                end = _indented_block(lines, i)
                emit(_code(lines[i:end], outline.section))
                i, literal_next = end, False
            continue
        if _RST_TABLE_BORDER.match(line) or not _rst_inline(line):
            flush()  # table borders; lines of substitutions only (badges)
            i += 1
            continue
        if m := _RST_ITEM.match(line):
            flush()
            line, kind = m.group(1), ITEM
        elif m := _RST_FIELD.match(line):
            flush()
            line, kind = f"{m.group(1)}: {m.group(2)}", ITEM
        elif line.lstrip().startswith("|") and line.rstrip().endswith("|"):
            line = " — ".join(c.strip() for c in line.strip().strip("|").split("|") if c.strip())
            kind = ITEM
        if not para:
            indent = _indent(lines[i])
        para.append(line.strip())
        i += 1
    flush()
    return out


# --- sniffing --------------------------------------------------------------------------------
def looks_like_rst(text: str) -> bool:
    """reStructuredText signals (underlined titles, directives, `link <url>`_) beat Markdown's."""
    lines = text.splitlines()
    rst = sum(1 for ln in lines if ln.startswith((".. ", "..\t")))
    rst += len(re.findall(r"`[^`]+<[^>]+>`_", text))
    rst += sum(
        1
        for a, b in zip(lines, lines[1:], strict=False)
        if a.strip() and _RST_ADORN.match(b) and not _RST_ADORN.match(a) and b[0] != "-"
    )
    md = sum(1 for ln in lines if _MD_ATX.match(ln) or _MD_FENCE.match(ln))
    md += len(re.findall(r"\]\([^)]+\)", text))
    return rst > md


def readme_passages(text: str, file_name: str | None = None) -> list[Passage]:
    """Passages of a README; the file name decides the format when known, else sniffing."""
    suffix = (file_name or "").lower().rsplit(".", 1)[-1] if file_name and "." in file_name else ""
    if suffix in {"rst", "rest"} or (suffix not in {"md", "markdown"} and looks_like_rst(text)):
        return rst_passages(text)
    return markdown_passages(text)


# --- names the README marks up ---------------------------------------------------------------
# Link texts and code spans: a README marks a project name this way ("builds on `requests`",
# "comparable to [textract](...)"), so a lower-case word marked up can still be read as a name
# (``pipeline.similar``). Markdown links and code; reStructuredText `text <url>`_, `text`_,
# name_ references and ``code``.
_MARKED = [
    re.compile(r"(?<!!)\[([^\]\[]{1,60})\]\([^)]*\)"),
    re.compile(r"(?<!!)\[([^\]\[]{1,60})\]\[[^\]]*\]"),
    re.compile(r"(?<!`)`([^`\n]{1,60})`(?!`)"),
    re.compile(r"``([^`\n]{1,60})``"),
    re.compile(r"`([^`<\n]{1,60}?)\s*(?:<[^>]+>)?`_{1,2}"),
    re.compile(r"(?<![\w`|/-])([A-Za-z][\w.-]{0,40}[A-Za-z0-9])_(?=[\s,.;:)]|$)", re.M),
]
MARKED_MAX_WORDS = 4


def marked_names(text: str) -> set[str]:
    """Short link texts, code spans and references of a README (Markdown or RST), as written."""
    out = set()
    for pattern in _MARKED:
        for m in pattern.finditer(text):
            name = " ".join(m.group(1).split()).strip("*_ ")
            if name and len(name.split()) <= MARKED_MAX_WORDS and "://" not in name:
                out.add(name)
    return out
