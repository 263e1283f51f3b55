"""Paragraphs of the chosen container: the last step of the main-text reading.

One pass over the container's part of the ``TreeIndex`` (never into a removed subtree) finds
what to remove (hidden, unlikely, negatively weighted wrappers, share widgets), the block
elements and the links. A marker (the block's number) is inserted before each block and after
each inline element that holds a block and is followed by text, so one ``text()`` call yields
every paragraph; each link's length is credited to its nearest block, so that link lists and
link-only blocks can be dropped. Everything a block needs from its ancestors (its enclosing
block, whether it sits in a link) is carried down the pass, so no node is climbed from twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from selectolax.lexbor import LexborNode

from pipeline.extract_rules import SHARE, SKIP_TAGS
from pipeline.extract_tree import CHECK_EVERY, Budget, TreeIndex

_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_STRONG_TAGS = frozenset({"p", "li", "dt", "dd", "pre", "blockquote", "figcaption", "address",
                          "summary"})  # fmt: skip
_LAYOUT_TAGS = frozenset({"div", "section", "article", "main", "tr", "figure", "table", "ul",
                          "ol", "dl", "details", "center", "br", "hr"})  # fmt: skip
# The kind of paragraph each block element starts: heading, paragraph-like, or layout.
_HEADING, _STRONG, _LAYOUT, _CELL = "h", "p", "l", "c"
BLOCK_KIND = (
    dict.fromkeys(_HEADINGS, _HEADING)
    | dict.fromkeys(_STRONG_TAGS, _STRONG)
    | dict.fromkeys(_LAYOUT_TAGS, _LAYOUT)
    | dict.fromkeys(("td", "th"), _CELL)
)
# Elements whose class/id/role are checked in the chosen container (inline ones are only
# checked for being hidden).
_CHECKED = frozenset({*BLOCK_KIND, "form", "fieldset", "header", "section", "aside", "nav",
                      "footer"})  # fmt: skip
CONDITIONAL = frozenset({"div", "section", "ul", "ol", "table", "form", "fieldset", "figure"})
# Paragraph markers inserted into the tree: "\x1e<block number>\x1e". The control character
# is removed from the page first, so page text can never fake a marker.
MARK = "\x1e"
MARK_SPLIT = re.compile("\x1e(\\d*)\x1e")


@dataclass
class Block:
    """One paragraph (or heading) of main text, whitespace collapsed."""

    text: str
    heading: bool = False
    # The element that started the paragraph ("p", "li", "td", "pre", "figcaption"...), or "br"
    # for a line of a paragraph broken by <br>s: lets retrieval keep list items, cells, lines
    # and code apart from running prose. "" when the text precedes every block element.
    tag: str = ""


def norm(text: str) -> str:
    return " ".join(text.split())


def _has_tail(block: LexborNode) -> bool:
    """Whether text or inline elements follow the element inside its parent."""
    sibling = block.next
    while sibling is not None:
        if sibling.is_element_node:
            return sibling.tag not in BLOCK_KIND
        if sibling.is_text_node and (sibling.text_content or "").strip():
            return True
        sibling = sibling.next
    return False


def harvest(
    ix: TreeIndex,
    roots: list[int],
    *,
    conditional: bool,
    own: Callable[[int], tuple[bool, int]],
    hidden: Callable[[int], bool],
    scores: dict[int, float],
    budget: Budget,
) -> list[Block]:
    """Paragraphs of the elements ``roots`` (siblings), after removing what is never content.

    ``own(i)`` is (never content, class weight) of element ``i``; ``hidden(i)`` whether an
    inline element is hidden. The tree is modified (markers, removals).
    """
    nodes, tags, parent, end = ix.nodes, ix.tags, ix.parent, ix.end
    doomed: list[int] = []
    breaks: list[int] = []  # element index of each block, in document order
    number_of: dict[int, int] = {}  # block element -> its number
    context: dict[int, int] = {}  # element -> number of the block it is in (-1: none)
    in_link: dict[int, bool] = {}  # element -> an <a> between it and its block (inclusive)
    links: list[tuple[int, int]] = []  # (<a> element, number of its block)
    tails: list[tuple[int, int]] = []  # (element followed by text, number of its block)
    link_blocks: set[int] = set()  # blocks inside a link (teaser cards)
    climbed: set[int] = set()
    visits, next_check, read_roots, cut = 0, CHECK_EVERY, [], False
    for root in roots:
        if cut:
            break
        read_roots.append(root)
        tag = tags[root]
        if tag in BLOCK_KIND:
            number_of[root] = context[root] = len(breaks)
            breaks.append(root)
            in_link[root] = False
        else:
            context[root], in_link[root] = -1, tag == "a"
        i, last = root + 1, end[root]
        while i <= last:
            visits += 1
            if visits >= next_check:
                next_check = visits + CHECK_EVERY
                if budget.out_of_time():
                    budget.stop()
                    cut = True
                    while i <= last:  # not read: removed so that it cannot reach the text
                        nodes[i].decompose()
                        i = end[i] + 1
                    break
            tag = tags[i]
            if tag in SKIP_TAGS or _doomed(i, tag, nodes[i], conditional, own, hidden, scores):
                doomed.append(i)
                i = end[i] + 1
                continue
            up = parent[i]
            outer = context[up]
            if tag in BLOCK_KIND:
                number = len(breaks)
                number_of[i] = context[i] = number
                breaks.append(i)
                in_link[i] = False
                if in_link[up]:
                    link_blocks.add(number)
                if _has_tail(nodes[i]):
                    tails.append((i, outer))
                # Inline ancestors up to the enclosing block that text follows: a paragraph
                # goes on after them. Each is looked at once, however many blocks it holds.
                above = up
                while above not in number_of and above != root and above not in climbed:
                    climbed.add(above)
                    if _has_tail(nodes[above]):
                        tails.append((above, outer))
                    above = parent[above]
            else:
                context[i] = outer
                in_link[i] = tag == "a" or in_link[up]
                if tag == "a":
                    links.append((i, outer))
            i += 1
    budget.visits += visits
    return _blocks(ix, read_roots, breaks, tails, links, link_blocks, doomed, conditional)


def _doomed(
    i: int,
    tag: str,
    node: LexborNode,
    conditional: bool,
    own: Callable[[int], tuple[bool, int]],
    hidden: Callable[[int], bool],
    scores: dict[int, float],
) -> bool:
    attrs = node.attrs
    if not len(attrs):
        return False  # bare elements: nothing to judge
    if tag not in _CHECKED:
        return hidden(i)  # inline elements: only whether they are hidden
    skip, weight = own(i)
    if skip:
        return True
    if weight < 0 and conditional:
        if tag in CONDITIONAL or tag in {"h1", "h2"}:
            return weight + scores.get(i, 0.0) < 0
        return bool(SHARE.search(f"{attrs.get('class')} {attrs.get('id')}"))
    return False


def _blocks(
    ix: TreeIndex,
    roots: list[int],
    breaks: list[int],
    tails: list[tuple[int, int]],
    links: list[tuple[int, int]],
    link_blocks: set[int],
    doomed: list[int],
    conditional: bool,
) -> list[Block]:
    nodes, tags = ix.nodes, ix.tags
    roots_set = set(roots)
    kinds = [BLOCK_KIND[tags[b]] for b in breaks]
    block_tags = [tags[b] for b in breaks]
    link_sizes = [float("inf") if n in link_blocks else 0.0 for n in range(len(breaks))]
    for number, element in enumerate(breaks):
        if element not in roots_set:  # a marker before a root would be outside its text
            nodes[element].insert_before(f"{MARK}{number}{MARK}")
    for element, outer in tails:
        nodes[element].insert_after(f"{MARK}{outer if outer >= 0 else ''}{MARK}")
    if conditional:
        for a, number in links:
            if number >= 0:
                hash_link = (nodes[a].attrs.get("href") or "").startswith("#")
                link_sizes[number] += ix.size(a) * (0.3 if hash_link else 1.0)
    for element in doomed:  # outermost only: the pass never entered a removed subtree
        nodes[element].decompose()
    # Roots are joined by an empty marker: a root's text may itself start with a marker.
    joined = f"{MARK}{MARK}".join(nodes[root].text(deep=True) for root in roots)
    pieces = MARK_SPLIT.split(joined)
    # pieces: text, number, text, number, text ... (the first text precedes any block)
    out: list[Block] = []
    for i in range(0, len(pieces), 2):
        text = norm(pieces[i])
        if not text:
            continue
        index = int(pieces[i - 1]) if i and pieces[i - 1] else -1
        kind = kinds[index] if index >= 0 else _LAYOUT
        if conditional:
            if index >= 0 and link_sizes[index] > 0.5 * len(text) and kind != _CELL:
                continue  # a link list, a link-only block
            if kind == _LAYOUT and len(text) < 25:
                continue  # a label between blocks ("Advertisement", "Share")
        out.append(Block(text=text, heading=kind == _HEADING, tag=_tag(block_tags, pieces, i)))
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
