"""Main text and metadata of an HTML page, with selectolax's lexbor parser.

``extract_html(html, url) -> ExtractedPage`` (paragraph blocks, title, authors, site name,
dates, language, description, canonical URL); ``decode_html(bytes, charset)`` decodes a body.
The main text comes from ``pipeline.extract_main`` (Readability-style scoring), the metadata
from ``pipeline.extract_meta``; a page whose strict reading keeps under ``MIN_TEXT`` characters
is read again with fewer removals, and the longest reading wins.

Hostile pages: nesting deeper than ``extract_depth.MAX_DEPTH`` is flattened before parsing (the
parser itself is quadratic in depth), the reading is linear in the page size, and the whole
extraction has a time budget (``budget_s``): when it runs out, what was read so far is returned
with ``truncated`` set and a ``partial_reason``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser

from pipeline.extract_depth import limit_nesting
from pipeline.extract_main import MARK, PASSES, Block, read_main_text
from pipeline.extract_meta import PageMeta, extract_meta, script_language
from pipeline.extract_tree import EXTRACTION_BUDGET_S, WALK_SHARE, Budget

__all__ = ["EXTRACTION_BUDGET_S", "Block", "ExtractedPage", "decode_html", "extract_html"]

MIN_TEXT = 500  # characters: below this the page is read again with fewer removals


@dataclass
class ExtractedPage:
    url: str
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    site_name: str | None = None
    published: str | None = None
    modified: str | None = None
    language: str | None = None
    description: str | None = None
    canonical_url: str | None = None
    blocks: list[Block] = field(default_factory=list)
    # The time budget ran out: ``blocks`` are what was read of the page before it did.
    truncated: bool = False
    partial_reason: str | None = None
    # Nodes looked at by Python code: the work done, linear in the page size.
    node_visits: int = 0

    @property
    def byline(self) -> str | None:
        return ", ".join(self.authors) or None

    @property
    def text(self) -> str:
        return "\n\n".join(b.text for b in self.blocks)


# --- decoding --------------------------------------------------------------------------------
_CHARSET_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
                    "iso-8859-1": "cp1252", "latin1": "cp1252", "us-ascii": "cp1252",
                    "ascii": "cp1252", "shift-jis": "shift_jis", "x-sjis": "shift_jis"}  # fmt: skip
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    name = _CHARSET_ALIASES.get(label, label)
    try:
        "".encode(name)
    except LookupError:
        return None
    return name


def decode_html(content: bytes, declared: str | None = None) -> str:
    """Decode an HTML body: BOM, then valid UTF-8, then the HTTP charset, then ``<meta>``.

    Bytes that are valid UTF-8 are read as UTF-8 even when a label says otherwise: pages saved
    or re-served as UTF-8 often keep their old ``<meta charset=gb2312>``, while text really in
    a legacy encoding is almost never valid UTF-8.
    """
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"),
                       (b"\xfe\xff", "utf-16-be")):  # fmt: skip
        if content.startswith(bom):
            return content[len(bom) :].decode(codec, errors="replace")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    m = _META_CHARSET.search(content[:4096])
    codec = _codec(declared) or _codec(m.group(1).decode("ascii") if m else None) or "cp1252"
    return content.decode(codec, errors="replace")


def extract_html(
    html: str | bytes,
    url: str = "",
    charset: str | None = None,
    *,
    budget_s: float = EXTRACTION_BUDGET_S,
    clock: Callable[[], float] = time.thread_time,
) -> ExtractedPage:
    """Main text and metadata of one HTML page (``bytes`` are decoded with ``decode_html``).

    ``budget_s`` bounds the CPU time of the extraction as measured by ``clock``.
    """
    budget = Budget(budget_s, clock)
    if isinstance(html, bytes):
        html = decode_html(html, charset)
    if MARK in html:  # page text must not be able to forge paragraph markers
        html = html.replace(MARK, " ")
    html, _flattened = limit_nesting(html)
    best: list[Block] = []
    meta: PageMeta | None = None
    for number, flags in enumerate(PASSES):
        if number and budget.out_of_time(WALK_SHARE):
            budget.stop()  # no time left to read the page again with fewer removals
            break
        tree = LexborHTMLParser(html)
        meta = meta or extract_meta(tree)  # before reading: the reading edits the tree
        blocks = read_main_text(tree, flags, budget)
        if sum(len(b.text) for b in blocks) > sum(len(b.text) for b in best):
            best = blocks
        if budget.stopped or sum(len(b.text) for b in best) >= MIN_TEXT:
            break
    assert meta is not None
    return ExtractedPage(
        url=url,
        title=meta.title,
        authors=meta.authors,
        site_name=meta.site_name,
        published=meta.published,
        modified=meta.modified,
        language=meta.language or script_language(" ".join(b.text for b in best[:20])),
        description=meta.description,
        canonical_url=meta.canonical_url,
        blocks=best,
        truncated=budget.stopped,
        partial_reason=budget.partial_reason,
        node_visits=budget.visits,
    )
