"""Main text of an HTML page, with selectolax's lexbor parser.

The approach is the one reader views use (Arc90 Readability, as Mozilla's Readability documents
it): drop what is never content (scripts, styles, navigation, headers/footers, asides, forms'
controls, hidden elements, comments), score paragraphs by their length and commas, give each
paragraph's score to its ancestors, take the best-scoring container (discounted by its link
density) plus siblings that look like they belong to it, then remove link lists, widgets and
image galleries inside it. When that leaves too little text the page is read again with fewer
removals. Metadata (title, authors, dates, language) comes from ``pipeline.extract_meta``.

``extract_html(html, url) -> ExtractedPage``; ``decode_html(bytes, charset)`` decodes a body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from selectolax.lexbor import LexborHTMLParser, LexborNode

from pipeline.extract_meta import PageMeta, extract_meta, script_language

# Text-bearing elements that are never shown: removed from the whole tree up front.
_INVISIBLE = "script, style, noscript, template"
# Never content: paragraphs inside these are not scored, and they are cut from the result.
_SKIP_TAGS = frozenset(
    {"nav", "aside", "footer", "header", "button", "input", "select", "textarea", "dialog",
     "iframe", "object", "embed", "svg", "canvas", "menu", "link", "meta"}
)  # fmt: skip
_NEVER_UNLIKELY = frozenset({"html", "body", "a", "article", "main"})
_HIDDEN = "[hidden], [aria-hidden], [style]"
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_UNLIKELY_ROLES = {"menu", "menubar", "complementary", "navigation", "alert", "alertdialog",
                   "dialog"}  # fmt: skip
# Class/id words (Readability's lists), matched against the lower-cased value: a case-sensitive
# alternation is several times faster than re.IGNORECASE on the long class attributes of some
# sites.
_UNLIKELY_WORDS = (
    "-ad-", "ai2html", "banner", "breadcrumbs", "combx", "comment", "community", "cover-wrap",
    "disqus", "extra", "footer", "gdpr", "header", "legends", "menu", "related", "remark",
    "replies", "rss", "shoutbox", "sidebar", "skyscraper", "social", "sponsor", "supplemental",
    "ad-break", "agegate", "pagination", "pager", "popup", "yom-remote",
)  # fmt: skip
_MAYBE_WORDS = ("and", "article", "body", "column", "content", "main", "mathjax", "shadow")
_POSITIVE_WORDS = ("article", "body", "content", "entry", "hentry", "h-entry", "main", "page",
             "pagination", "post", "text", "blog", "story")  # fmt: skip
_NEGATIVE_WORDS = (
    "-ad-", "hidden", "banner", "combx", "comment", "com-", "contact", "footer", "gdpr",
    "masthead", "media", "meta", "outbrain", "promo", "related", "scroll", "share", "shoutbox",
    "sidebar", "skyscraper", "sponsor", "shopping", "tags", "widget",
)  # fmt: skip


def _words(words: tuple[str, ...], extra: str = "") -> re.Pattern[str]:
    return re.compile("|".join([*map(re.escape, words), *([extra] if extra else [])]))


_UNLIKELY, _MAYBE = _words(_UNLIKELY_WORDS), _words(_MAYBE_WORDS)
_POSITIVE, _NEGATIVE = _words(_POSITIVE_WORDS), _words(_NEGATIVE_WORDS, r"(?:^|\s)hid(?:\s|$)")
_SHARE = re.compile(r"(\b|_)(share|sharedaddy)(\b|_)", re.IGNORECASE)
_TAG_SCORE = {"div": 5, "pre": 3, "td": 3, "blockquote": 3, "address": -3, "ol": -3, "ul": -3,
              "dl": -3, "dd": -3, "dt": -3, "li": -3, "form": -3, "h1": -5, "h2": -5, "h3": -5,
              "h4": -5, "h5": -5, "h6": -5, "th": -5}  # fmt: skip
_CONDITIONAL = frozenset({"div", "section", "ul", "ol", "table", "form", "fieldset", "figure"})
_SCORED = "p, pre, td, section, h2, h3, h4, h5, h6"
_LEAF_DIV = "div:not(:has(blockquote, dl, div, img, ol, p, pre, table, ul))"
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_STRONG_TAGS = frozenset({"p", "li", "dt", "dd", "td", "th", "pre", "blockquote", "figcaption",
                          "address", "summary"})  # fmt: skip
_LAYOUT_TAGS = frozenset({"div", "section", "article", "main", "tr", "figure", "table", "ul",
                          "ol", "dl", "details", "center", "br", "hr"})  # fmt: skip
# The kind of paragraph each block element starts: heading, paragraph-like, or layout.
_HEADING, _STRONG, _LAYOUT = "h", "p", "l"
_BLOCK_KIND = (
    dict.fromkeys(_HEADINGS, _HEADING)
    | dict.fromkeys(_STRONG_TAGS, _STRONG)
    | dict.fromkeys(_LAYOUT_TAGS, _LAYOUT)
)
# Paragraph markers inserted into the tree: "\x1e<block number>\x1e". The control character
# is removed from the page first, so page text can never fake a marker.
# Elements whose class/id/role are checked in the chosen container (inline ones are not).
_CHECKED = frozenset(
    {*_BLOCK_KIND, "form", "fieldset", "header", "section", "aside", "nav", "footer"}
)
_MARK = "\x1e"
_MARK_SPLIT = re.compile("\x1e(\\d*)\x1e")
_NEVER, _PLAIN = (True, 0), (False, 0)  # (never content, class weight)
_STRIP_UNLIKELY, _WEIGHT_CLASSES, _CLEAN_CONDITIONALLY = 1, 2, 4
_ALL = _STRIP_UNLIKELY | _WEIGHT_CLASSES | _CLEAN_CONDITIONALLY
_DIV_TEXT_NEEDED = 3500  # characters of <p> text below which divs are scored too
_MIN_TEXT = 500  # below this many characters the page is read again with fewer removals
_WS = re.compile(r"\s+")


@dataclass
class Block:
    """One paragraph (or heading) of main text, whitespace collapsed."""

    text: str
    heading: bool = False


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


# --- helpers ---------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(text.split())


def _weight(text: str) -> int:
    """Characters that are not whitespace: an indentation-proof measure of a string's size."""
    return len(text) - text.count(" ") - text.count("\n") - text.count("\t") - text.count("\r")


def _size(node: LexborNode) -> int:
    """Text length of a node without whitespace-only text nodes (source indentation).

    Close to the length of the whitespace-collapsed text, at the cost of one C call.
    """
    return len(node.text(deep=True, skip_empty=True))


# Class and id values repeat a lot within a page and across pages: match each value once.
@lru_cache(maxsize=4096)
def _value_weight(value: str) -> int:
    value = value.lower()
    return (25 if _POSITIVE.search(value) else 0) - (25 if _NEGATIVE.search(value) else 0)


@lru_cache(maxsize=4096)
def _looks_unlikely(class_and_id: str) -> bool:
    value = class_and_id.lower()
    return bool(_UNLIKELY.search(value)) and not _MAYBE.search(value)


def _is_hidden(attrs: dict[str, str | None]) -> bool:
    style = attrs.get("style") or ""
    return (
        "hidden" in attrs
        or attrs.get("aria-hidden") == "true"
        or bool(("none" in style or "hidden" in style) and _HIDDEN_STYLE.search(style))
    )


def _has_tail(block: LexborNode) -> bool:
    """Whether text or inline elements follow the block inside its parent."""
    sibling = block.next
    while sibling is not None:
        if sibling.is_element_node:
            return sibling.tag not in _BLOCK_KIND
        if sibling.is_text_node and (sibling.text_content or "").strip():
            return True
        sibling = sibling.next
    return False


def _has_ancestor(node: LexborNode, tags: set[str], depth: int = 0) -> bool:
    parent, level = node.parent, 0
    while parent is not None and (depth <= 0 or level < depth):
        if parent.tag in tags:
            return True
        parent, level = parent.parent, level + 1
    return False


def _contains(ancestor: LexborNode, node: LexborNode) -> bool:
    key, parent = ancestor.mem_id, node.parent
    while parent is not None:
        if parent.mem_id == key:
            return True
        parent = parent.parent
    return False


def _link_density(node: LexborNode, size: int) -> float:
    """Share of the text (``_size``) inside links; in-page ``#`` links count 30%."""
    if not size:
        return 0.0
    links: float = sum([_size(a) for a in node.css("a")])
    if links:
        links -= 0.7 * sum([_size(a) for a in node.css('a[href^="#"]')])
    return links / size


# --- one reading -----------------------------------------------------------------------------
class _Reading:
    """One pass over a freshly parsed tree with a given set of removals enabled.

    Removal is lazy: instead of walking the whole tree up front, a paragraph is skipped when it
    or an ancestor is hidden or unlikely (checked once per element and memoised), and only the
    chosen container is actually cleaned.
    """

    def __init__(self, tree: LexborHTMLParser, flags: int) -> None:
        self.tree = tree
        self.flags = flags
        self.scores: dict[int, float] = {}
        self.nodes: dict[int, LexborNode] = {}
        self._own: dict[int, tuple[bool, int]] = {}
        self._skip: dict[int, bool] = {}

    def own(self, node: LexborNode) -> tuple[bool, int]:
        """(is this element itself never content, its class weight), memoised."""
        key = node.mem_id
        found = self._own.get(key)
        if found is None:
            found = self._own[key] = self._judge(node)
        return found

    def _judge(self, node: LexborNode) -> tuple[bool, int]:
        tag = node.tag or ""
        if tag in _SKIP_TAGS:
            return _NEVER
        if not len(node.attrs):
            return _PLAIN
        a = node.attributes
        role = a.get("role")
        if _is_hidden(a) or (role and role.strip().lower() in _UNLIKELY_ROLES):
            return _NEVER
        cls, ident = a.get("class") or "", a.get("id") or ""
        if not (cls or ident):
            return _PLAIN
        if (
            self.flags & _STRIP_UNLIKELY
            and tag not in _NEVER_UNLIKELY
            and _looks_unlikely(f"{cls} {ident}")
            and not _has_ancestor(node, {"table", "code"}, 3)
        ):
            return _NEVER
        if not self.flags & _WEIGHT_CLASSES:
            return _PLAIN
        return False, (_value_weight(cls) if cls else 0) + (_value_weight(ident) if ident else 0)

    def skipped(self, node: LexborNode) -> bool:
        """True when the element or any ancestor is never content (memoised up the chain)."""
        chain: list[LexborNode] = []
        current: LexborNode | None = node
        result = False
        while current is not None:
            known = self._skip.get(current.mem_id)
            if known is not None:
                result = known
                break
            chain.append(current)
            if current.tag in {"body", "html"}:
                break
            current = current.parent
        for element in reversed(chain):
            result = result or self.own(element)[0]
            self._skip[element.mem_id] = result
        return result

    def _candidate(self, node: LexborNode) -> int:
        key = node.mem_id
        if key not in self.scores:
            self.scores[key] = _TAG_SCORE.get(node.tag or "", 0) + self.own(node)[1]
            self.nodes[key] = node
        return key

    def score(self, body: LexborNode) -> None:
        """Give each paragraph's points to its ancestors (5 levels, decaying).

        Text in ``<div>``s without block children counts as paragraphs too, but those are only
        looked at when the real paragraphs hold too little text for a full summary: most
        pages put their text in ``<p>`` and have hundreds of tiny layout divs.
        """
        scored = self._score_all(body.css(_SCORED))
        if scored < _DIV_TEXT_NEEDED:
            self._score_all(body.css(_LEAF_DIV))

    def _score_all(self, paragraphs: list[LexborNode]) -> int:
        total = 0
        for para in paragraphs:
            text = para.text(deep=True, skip_empty=True)
            size = len(text)
            if size < 25 or self.skipped(para):
                continue
            total += size
            commas = text.count(",") + text.count("\uff0c") + text.count("\u3001")
            points = 1 + commas + min(size // 100, 3)
            ancestor, level = para.parent, 0
            while ancestor is not None and level < 5:
                parent = ancestor.parent
                if parent is None or ancestor.tag == "html":
                    break
                key = self._candidate(ancestor)
                self.scores[key] += points / (1 if level == 0 else 2 if level == 1 else level * 3)
                ancestor, level = parent, level + 1
        return total

    def top(self, body: LexborNode) -> tuple[LexborNode, float]:
        """The best container: highest score discounted by link density, then widened."""
        final: dict[int, float] = {}
        for key in sorted(self.scores, key=self.scores.__getitem__, reverse=True):
            raw = self.scores[key]
            if len(final) >= 5 and raw <= sorted(final.values())[-5]:
                break
            node = self.nodes[key]
            final[key] = raw * (1 - _link_density(node, _size(node)))
        if not final:
            return body, 0.0
        ranked = sorted(final, key=final.__getitem__, reverse=True)
        top, top_score = self.nodes[ranked[0]], final[ranked[0]]
        self.scores.update(final)
        # Several near-best candidates under one ancestor: the ancestor is the article.
        close = [self.nodes[k] for k in ranked[1:5] if final[k] >= 0.75 * top_score]
        if len(close) >= 3:
            parent = top.parent
            while parent is not None and parent.tag not in {"body", "html"}:
                if sum(1 for c in close if _contains(parent, c)) >= 3:
                    top = parent
                    break
                parent = parent.parent
        # Climb while the parent scores better.
        last = self.scores.get(top.mem_id, top_score)
        parent = top.parent
        while parent is not None and parent.tag not in {"body", "html"}:
            parent_score = self.scores.get(parent.mem_id)
            if parent_score is not None:
                if parent_score < last / 3:
                    break
                if parent_score > last:
                    top = parent
                    break
                last = parent_score
            parent = parent.parent
        # A wrapper with a single child is the same container.
        while (
            top.parent is not None
            and top.parent.tag not in {"body", "html"}
            and sum(1 for c in top.parent.iter() if c.is_element_node) == 1
        ):
            top = top.parent
        return top, self.scores.get(top.mem_id, top_score)

    def siblings(self, top: LexborNode, top_score: float) -> list[LexborNode]:
        """The container plus siblings that score well or read like paragraphs."""
        parent = top.parent
        if parent is None or top.tag in {"body", "html"}:
            return [top]
        threshold = max(10.0, top_score * 0.2)
        top_class = top.attrs.get("class") or ""
        chosen = []
        for sib in parent.iter():
            if not sib.is_element_node:
                continue
            if sib.mem_id == top.mem_id:
                chosen.append(sib)
                continue
            if self.skipped(sib):
                continue
            bonus = top_score * 0.2 if top_class and sib.attrs.get("class") == top_class else 0
            score = self.scores.get(sib.mem_id)
            if score is not None and score + bonus >= threshold:
                chosen.append(sib)
            elif sib.tag == "p" or (sib.tag == "div" and sib.css_matches(_LEAF_DIV)):
                text = _norm(sib.text(deep=True))
                density = _link_density(sib, len(text))
                if (len(text) > 80 and density < 0.25) or (
                    0 < len(text) <= 80 and density == 0 and re.search(r"\.( |$)", text)
                ):
                    chosen.append(sib)
        return chosen

    def harvest(self, roots: list[LexborNode]) -> list[Block]:
        """Paragraphs of the chosen container, after removing what is never content.

        One walk over the container finds what to remove (hidden, unlikely, negatively
        weighted wrappers, share widgets), the block elements, ``<br>``s and links. A marker
        (the block's number) is inserted before each block, so that one ``text()`` call yields
        every paragraph; each link's length is credited to its nearest block, so that link
        lists and link-only blocks can be dropped.
        """
        doomed: list[LexborNode] = []
        breaks: list[tuple[LexborNode, str]] = []
        links: list[LexborNode] = []
        conditional = bool(self.flags & _CLEAN_CONDITIONALLY)
        for root in roots:
            root_id = root.mem_id
            for node in root.traverse():
                tag = node.tag
                if tag in _BLOCK_KIND:
                    breaks.append((node, _BLOCK_KIND[tag]))
                elif tag == "a":
                    links.append(node)
                if tag not in _SKIP_TAGS and (tag not in _CHECKED or not len(node.attrs)):
                    continue  # inline elements (hidden ones are found below), bare elements
                if node.mem_id == root_id:
                    continue
                skip, weight = self.own(node)
                if skip:
                    doomed.append(node)
                elif weight < 0 and conditional:
                    if tag in _CONDITIONAL or tag in {"h1", "h2"}:
                        if weight + self.scores.get(node.mem_id, 0.0) < 0:
                            doomed.append(node)
                    elif _SHARE.search(f"{node.attrs.get('class')} {node.attrs.get('id')}"):
                        doomed.append(node)
            for node in root.css(_HIDDEN):
                if node.mem_id != root_id and _is_hidden(node.attributes):
                    doomed.append(node)
        index_of = {node.mem_id: i for i, (node, _kind) in enumerate(breaks)}
        kinds = [kind for _node, kind in breaks]
        link_sizes = [0.0] * len(kinds)
        root_ids = {root.mem_id for root in roots}
        for index, (node, _kind) in enumerate(breaks):
            node.insert_before(f"{_MARK}{index}{_MARK}")
            # Up to the enclosing block: is this block inside a link (a teaser card)? Does
            # text follow it, or an inline ancestor, before the enclosing block goes on?
            tails = [node] if _has_tail(node) else []
            parent, in_link = node.parent, False
            while parent is not None and parent.mem_id not in index_of:
                in_link = in_link or parent.tag == "a"
                if parent.mem_id in root_ids:
                    parent = None
                    break
                if _has_tail(parent):
                    tails.append(parent)
                parent = parent.parent
            if in_link:
                link_sizes[index] = float("inf")
            outer = index_of[parent.mem_id] if parent is not None else ""
            for tail in tails:
                tail.insert_after(f"{_MARK}{outer}{_MARK}")
        if conditional:
            for a in links:
                block = a.parent
                while block is not None and block.mem_id not in index_of:
                    block = None if block.mem_id in root_ids else block.parent
                if block is not None:
                    hash_link = (a.attrs.get("href") or "").startswith("#")
                    link_sizes[index_of[block.mem_id]] += _size(a) * (0.3 if hash_link else 1.0)
        for node in reversed(doomed):
            node.decompose()
        pieces = _MARK_SPLIT.split(_MARK.join(root.text(deep=True) for root in roots))
        # pieces: text, number, text, number, text ... (the first text precedes any block)
        out: list[Block] = []
        for i in range(0, len(pieces), 2):
            text = _norm(pieces[i])
            if not text:
                continue
            index = int(pieces[i - 1]) if i and pieces[i - 1] else -1
            kind = kinds[index] if index >= 0 else _LAYOUT
            if conditional:
                if index >= 0 and link_sizes[index] > 0.5 * len(text):
                    continue  # a link list, a link-only block
                if kind == _LAYOUT and len(text) < 25:
                    continue  # a label between blocks ("Advertisement", "Share")
            out.append(Block(text=text, heading=kind == _HEADING))
        return out


def _read(html: str, flags: int) -> tuple[list[Block], PageMeta | None]:
    tree = LexborHTMLParser(html)
    meta = extract_meta(tree) if flags == _ALL else None
    for node in tree.css(_INVISIBLE):
        node.decompose()
    body = tree.body or tree.root
    if body is None:
        return [], meta
    reading = _Reading(tree, flags)
    reading.score(body)
    top, top_score = reading.top(body)
    roots = reading.siblings(top, top_score)
    return reading.harvest(roots), meta


def extract_html(html: str | bytes, url: str = "", charset: str | None = None) -> ExtractedPage:
    """Main text and metadata of one HTML page (``bytes`` are decoded with ``decode_html``)."""
    if isinstance(html, bytes):
        html = decode_html(html, charset)
    if _MARK in html:
        html = html.replace(_MARK, " ")
    best: list[Block] = []
    meta: PageMeta | None = None
    for flags in (_ALL, _ALL & ~_STRIP_UNLIKELY, _CLEAN_CONDITIONALLY, 0):
        blocks, found_meta = _read(html, flags)
        meta = meta or found_meta
        if sum(len(b.text) for b in blocks) > sum(len(b.text) for b in best):
            best = blocks
        if sum(len(b.text) for b in best) >= _MIN_TEXT:
            break
    assert meta is not None
    page = ExtractedPage(
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
    )
    return page
