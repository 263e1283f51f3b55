"""Finding the main text of a parsed page: the reading behind ``pipeline.extract``.

The approach is the one reader views use (Arc90 Readability, as Mozilla's Readability documents
it): drop what is never content (scripts, styles, navigation, headers/footers, asides, form
controls, hidden elements, comments), score paragraphs by their length and commas, give each
paragraph's score to its ancestors, take the best-scoring container (discounted by its link
density) plus siblings that look like they belong to it, then drop what is never content inside
it, link lists, link-only blocks and stray labels. ``PASSES`` lists the removal settings to try,
strictest first; ``extract_html`` moves to the next when a pass leaves too little text.

Speed: Python-level work per element is the cost, so the whole tree is never walked in Python.
Paragraphs come from CSS queries; ancestors are judged once each (memoised) when a paragraph
is scored; only the chosen container is walked, and its paragraphs come out of one ``text()``
call with markers inserted before each block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

from pipeline.extract_rules import (
    CLEAN_CONDITIONALLY,
    HIDDEN_SELECTOR,
    SHARE,
    SKIP_TAGS,
    STRIP_UNLIKELY,
    WEIGHT_CLASSES,
    is_hidden,
    judge,
)

# Text-bearing elements that are never shown: removed from the whole tree up front.
_INVISIBLE = "script, style, noscript, template"
_TAG_SCORE = {"div": 5, "pre": 3, "td": 3, "blockquote": 3, "address": -3, "ol": -3, "ul": -3,
              "dl": -3, "dd": -3, "dt": -3, "li": -3, "form": -3, "h1": -5, "h2": -5, "h3": -5,
              "h4": -5, "h5": -5, "h6": -5, "th": -5}  # fmt: skip
_CONDITIONAL = frozenset({"div", "section", "ul", "ol", "table", "form", "fieldset", "figure"})
_SCORED = "p, pre, td, section, h2, h3, h4, h5, h6"
_LEAF_DIV = "div:not(:has(blockquote, dl, div, img, ol, p, pre, table, ul))"
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_STRONG_TAGS = frozenset({"p", "li", "dt", "dd", "pre", "blockquote", "figcaption", "address",
                          "summary"})  # fmt: skip
_LAYOUT_TAGS = frozenset({"div", "section", "article", "main", "tr", "figure", "table", "ul",
                          "ol", "dl", "details", "center", "br", "hr"})  # fmt: skip
# The kind of paragraph each block element starts: heading, paragraph-like, or layout.
_HEADING, _STRONG, _LAYOUT, _CELL = "h", "p", "l", "c"
_BLOCK_KIND = (
    dict.fromkeys(_HEADINGS, _HEADING)
    | dict.fromkeys(_STRONG_TAGS, _STRONG)
    | dict.fromkeys(_LAYOUT_TAGS, _LAYOUT)
    | dict.fromkeys(("td", "th"), _CELL)
)
# Elements whose class/id/role are checked in the chosen container (inline ones are not).
_CHECKED = frozenset(
    {*_BLOCK_KIND, "form", "fieldset", "header", "section", "aside", "nav", "footer"}
)
# Paragraph markers inserted into the tree: "\x1e<block number>\x1e". The control character
# is removed from the page first, so page text can never fake a marker.
MARK = "\x1e"
MARK_SPLIT = re.compile("\x1e(\\d*)\x1e")
_ALL = STRIP_UNLIKELY | WEIGHT_CLASSES | CLEAN_CONDITIONALLY
# Removal settings to try, strictest first.
PASSES = (_ALL, _ALL & ~STRIP_UNLIKELY, CLEAN_CONDITIONALLY, 0)
_DIVIDERS = (1, 2, 6, 9, 12)  # a paragraph's points shared with its ancestors, by level
_DIV_TEXT_NEEDED = 3500  # characters of <p> text below which divs are scored too


@dataclass
class Block:
    """One paragraph (or heading) of main text, whitespace collapsed."""

    text: str
    heading: bool = False
    # The element that started the paragraph ("p", "li", "td", "pre", "figcaption"...), or "br"
    # for a line of a paragraph broken by <br>s: lets retrieval keep list items, cells, lines
    # and code apart from running prose. "" when the text precedes every block element.
    tag: str = ""


# --- helpers ---------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(text.split())


def _size(node: LexborNode) -> int:
    """Text length of a node without whitespace-only text nodes (source indentation).

    Close to the length of the whitespace-collapsed text, at the cost of one C call.
    """
    return len(node.text(deep=True, skip_empty=True))


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


def _contains(ancestor: LexborNode, node: LexborNode) -> bool:
    key, parent = ancestor.mem_id, node.parent
    while parent is not None:
        if parent.mem_id == key:
            return True
        parent = parent.parent
    return False


def _outermost(nodes: list[LexborNode], stop: set[int]) -> list[LexborNode]:
    """The nodes that are not inside another of them (each once): decomposing a node frees its
    subtree, so a node inside an already removed one must never be touched again."""
    ids = {node.mem_id for node in nodes}
    unique = {node.mem_id: node for node in nodes}.values()
    out = []
    for node in unique:
        parent = node.parent
        while parent is not None and parent.mem_id not in ids and parent.mem_id not in stop:
            parent = parent.parent
        if parent is None or parent.mem_id not in ids:
            out.append(node)
    return out


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
            found = self._own[key] = judge(node, self.flags)
        return found

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

    def _ancestors(self, first: LexborNode) -> list[int]:
        """Candidate keys of up to 5 ancestors, starting with the paragraph's parent."""
        keys: list[int] = []
        ancestor: LexborNode | None = first
        while ancestor is not None and len(keys) < 5:
            parent = ancestor.parent
            if parent is None or ancestor.tag == "html":
                break
            keys.append(self._candidate(ancestor))
            ancestor = parent
        return keys

    def _score_all(self, paragraphs: list[LexborNode]) -> int:
        total = 0
        chains: dict[int, list[int]] = {}  # parent -> candidate keys of the 5 ancestors
        scores = self.scores
        for para in paragraphs:
            text = para.text(deep=True, skip_empty=True)
            size = len(text)
            if size < 25 or self.skipped(para):
                continue
            total += size
            commas = text.count(",") + text.count("\uff0c") + text.count("\u3001")
            points = 1 + commas + min(size // 100, 3)
            first = para.parent
            if first is None:
                continue
            chain = chains.get(first.mem_id)
            if chain is None:
                chain = chains[first.mem_id] = self._ancestors(first)
            for level, key in enumerate(chain):
                scores[key] += points / _DIVIDERS[level]
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
        conditional = bool(self.flags & CLEAN_CONDITIONALLY)
        for root in roots:
            root_id = root.mem_id
            for node in root.traverse():
                tag = node.tag
                if tag in _BLOCK_KIND:
                    breaks.append((node, _BLOCK_KIND[tag]))
                elif tag == "a":
                    links.append(node)
                if tag not in SKIP_TAGS and (tag not in _CHECKED or not len(node.attrs)):
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
                    elif SHARE.search(f"{node.attrs.get('class')} {node.attrs.get('id')}"):
                        doomed.append(node)
            for node in root.css(HIDDEN_SELECTOR):
                if node.mem_id != root_id and is_hidden(node.attributes):
                    doomed.append(node)
        index_of = {node.mem_id: i for i, (node, _kind) in enumerate(breaks)}
        kinds = [kind for _node, kind in breaks]
        tags = [node.tag or "" for node, _kind in breaks]
        link_sizes = [0.0] * len(kinds)
        root_ids = {root.mem_id for root in roots}
        for index, (node, _kind) in enumerate(breaks):
            node.insert_before(f"{MARK}{index}{MARK}")
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
                tail.insert_after(f"{MARK}{outer}{MARK}")
        if conditional:
            for a in links:
                block = a.parent
                while block is not None and block.mem_id not in index_of:
                    block = None if block.mem_id in root_ids else block.parent
                if block is not None:
                    hash_link = (a.attrs.get("href") or "").startswith("#")
                    link_sizes[index_of[block.mem_id]] += _size(a) * (0.3 if hash_link else 1.0)
        for node in _outermost(doomed, root_ids):
            node.decompose()
        pieces = MARK_SPLIT.split(MARK.join(root.text(deep=True) for root in roots))
        # pieces: text, number, text, number, text ... (the first text precedes any block)
        out: list[Block] = []
        for i in range(0, len(pieces), 2):
            text = _norm(pieces[i])
            if not text:
                continue
            index = int(pieces[i - 1]) if i and pieces[i - 1] else -1
            kind = kinds[index] if index >= 0 else _LAYOUT
            if conditional:
                if index >= 0 and link_sizes[index] > 0.5 * len(text) and kind != _CELL:
                    continue  # a link list, a link-only block
                if kind == _LAYOUT and len(text) < 25:
                    continue  # a label between blocks ("Advertisement", "Share")
            out.append(Block(text=text, heading=kind == _HEADING, tag=_tag(tags, pieces, i)))
        return out


def _tag(tags: list[str], pieces: list[str], i: int) -> str:
    """The tag of the block that the text ``pieces[i]`` belongs to, or "br" when a <br> marker
    is adjacent to it (only whitespace between): a line of a paragraph broken by <br>s."""
    for step in (-2, 2):
        j = i + step // 2  # the marker right before (after) the text
        while 0 < j < len(pieces):
            if pieces[j] and tags[int(pieces[j])] == "br":
                return "br"
            between = j + step // 2  # the text beyond that marker
            if not 0 <= between < len(pieces) or pieces[between].strip():
                break
            j += step
    return tags[int(pieces[i - 1])] if i and pieces[i - 1] else ""


def read_main_text(tree: LexborHTMLParser, flags: int) -> list[Block]:
    """Paragraphs of the main text of a freshly parsed tree (the tree is modified)."""
    for node in tree.css(_INVISIBLE):
        node.decompose()
    body = tree.body or tree.root
    if body is None:
        return []
    reading = _Reading(tree, flags)
    reading.score(body)
    top, top_score = reading.top(body)
    return reading.harvest(reading.siblings(top, top_score))
