"""Finding the main text of a parsed page: the reading behind ``pipeline.extract``.

The approach is the one reader views use (Arc90 Readability, as Mozilla's Readability documents
it): drop what is never content (scripts, styles, navigation, headers/footers, asides, form
controls, hidden elements, comments), score paragraphs by their length and commas, give each
paragraph's score to its ancestors, take the best-scoring container (discounted by its link
density) plus siblings that look like they belong to it, then drop what is never content inside
it, link lists, link-only blocks and stray labels. ``PASSES`` lists the removal settings to try,
strictest first; ``extract_html`` moves to the next when a pass leaves too little text.

Cost: linear in the page whatever its shape. One iterative walk (``TreeIndex``) sums text
lengths, commas and link text up the tree, so scoring a paragraph or a container is O(1), not a
``text()`` call or CSS query over its subtree per element (nested ``<section>``s or ``<div>``s
made that quadratic). Per-element judgements are memoised and climbs up the tree stop at the
first element already judged; only the chosen container is then harvested
(``pipeline.extract_harvest``).
"""

from __future__ import annotations

import heapq
import re

from selectolax.lexbor import LexborHTMLParser

from pipeline.extract_harvest import MARK, Block, harvest, norm
from pipeline.extract_rules import (
    CLEAN_CONDITIONALLY,
    STRIP_UNLIKELY,
    WEIGHT_CLASSES,
    is_hidden,
    judge,
    light_text,
)
from pipeline.extract_style import background_is_dark
from pipeline.extract_tree import Budget, TreeIndex

__all__ = ["MARK", "PASSES", "Block", "read_main_text"]

_TAG_SCORE = {"div": 5, "pre": 3, "td": 3, "blockquote": 3, "address": -3, "ol": -3, "ul": -3,
              "dl": -3, "dd": -3, "dt": -3, "li": -3, "form": -3, "h1": -5, "h2": -5, "h3": -5,
              "h4": -5, "h5": -5, "h6": -5, "th": -5}  # fmt: skip
_SCORED = frozenset({"p", "pre", "td", "section", "h2", "h3", "h4", "h5", "h6"})
_ALL = STRIP_UNLIKELY | WEIGHT_CLASSES | CLEAN_CONDITIONALLY
# Removal settings to try, strictest first.
PASSES = (_ALL, _ALL & ~STRIP_UNLIKELY, CLEAN_CONDITIONALLY, 0)
_DIVIDERS = (1, 2, 6, 9, 12)  # a paragraph's points shared with its ancestors, by level
_DIV_TEXT_NEEDED = 3500  # characters of <p> text below which divs are scored too
_NEVER = (True, 0)
_TOP_LEVEL = frozenset({"body", "html"})


class _Reading:
    """One pass over a freshly parsed tree with a given set of removals enabled.

    Removal is lazy: a paragraph is skipped when it or an ancestor is hidden or unlikely
    (checked once per element and memoised), and only the chosen container is cleaned.
    """

    def __init__(self, ix: TreeIndex, flags: int, budget: Budget) -> None:
        self.ix = ix
        self.flags = flags
        self.budget = budget
        self.scores: dict[int, float] = {}  # candidate element -> score
        self._own: dict[int, tuple[bool, int]] = {}
        self._skip: dict[int, bool] = {}
        self._dark: dict[int, bool] = {}

    def own(self, i: int) -> tuple[bool, int]:
        """(is this element itself never content, its class weight), memoised."""
        found = self._own.get(i)
        if found is None:
            found = judge(self.ix.nodes[i], self.flags)
            if not found[0] and self._light_on_light(i):
                found = _NEVER
            self._own[i] = found
        return found

    def hidden(self, i: int) -> bool:
        """Whether an element is hidden (attributes, inline style, white on a light page)."""
        if is_hidden(self.ix.nodes[i].attributes):
            return True
        return self._light_on_light(i)

    def _light_on_light(self, i: int) -> bool:
        style = self.ix.nodes[i].attrs.get("style")
        return bool(style) and light_text({"style": style}) and not self._dark_backdrop(i)

    def _dark_backdrop(self, i: int) -> bool:
        """Whether the nearest ancestor with an inline background colour has a dark one (no
        such ancestor: the page is assumed light). Memoised up the chain."""
        parent, nodes = self.ix.parent, self.ix.nodes
        chain: list[int] = []
        current, result = parent[i], False
        while current >= 0:
            known = self._dark.get(current)
            if known is not None:
                result = known
                break
            chain.append(current)
            style = nodes[current].attrs.get("style")
            verdict = background_is_dark(style) if style else None
            if verdict is not None:
                result = verdict
                break
            current = parent[current]
        for element in chain:
            self._dark[element] = result
        return result

    def skipped(self, i: int) -> bool:
        """True when the element or any ancestor is never content (memoised up the chain)."""
        parent, tags = self.ix.parent, self.ix.tags
        chain: list[int] = []
        current, result = i, False
        while current >= 0:
            known = self._skip.get(current)
            if known is not None:
                result = known
                break
            chain.append(current)
            if tags[current] in _TOP_LEVEL:
                break
            current = parent[current]
        for element in reversed(chain):
            result = result or self.own(element)[0]
            self._skip[element] = result
        self.budget.visits += len(chain)
        return result

    def _candidate(self, i: int) -> int:
        if i not in self.scores:
            self.scores[i] = _TAG_SCORE.get(self.ix.tags[i], 0) + self.own(i)[1]
        return i

    def score(self) -> None:
        """Give each paragraph's points to its ancestors (5 levels, decaying).

        Text in ``<div>``s without block children counts as paragraphs too, but those are only
        looked at when the real paragraphs hold too little text for a full summary: most
        pages put their text in ``<p>`` and have hundreds of tiny layout divs.
        """
        tags = self.ix.tags
        self.budget.visits += len(tags)
        scored = self._score_all([i for i, tag in enumerate(tags) if tag in _SCORED])
        if scored < _DIV_TEXT_NEEDED:
            inside = self.ix.breaker_inside
            self.budget.visits += len(tags)
            self._score_all([i for i, tag in enumerate(tags) if tag == "div" and not inside(i)])

    def _ancestors(self, first: int) -> list[int]:
        """Candidates among up to 5 ancestors, starting with the paragraph's parent."""
        keys: list[int] = []
        ancestor = first
        while ancestor >= 0 and len(keys) < 5 and self.ix.tags[ancestor] != "html":
            keys.append(self._candidate(ancestor))
            ancestor = self.ix.parent[ancestor]
        return keys

    def _score_all(self, paragraphs: list[int]) -> int:
        total = 0
        chains: dict[int, list[int]] = {}  # parent -> candidate keys of the 5 ancestors
        scores, size, commas, parent = self.scores, self.ix.size, self.ix.commas, self.ix.parent
        for para in paragraphs:
            length = size(para)
            if length < 25 or self.skipped(para):
                continue
            total += length
            points = 1 + commas(para) + min(length // 100, 3)
            first = parent[para]
            if first < 0:
                continue
            chain = chains.get(first)
            if chain is None:
                chain = chains[first] = self._ancestors(first)
            for level, key in enumerate(chain):
                scores[key] += points / _DIVIDERS[level]
        self.budget.visits += 6 * len(paragraphs)
        return total

    def _density(self, i: int, length: int) -> float:
        return self.ix.links(i) / length if length else 0.0

    def top(self) -> tuple[int, float]:
        """The best container: highest score discounted by link density, then widened."""
        ix = self.ix
        final: dict[int, float] = {}
        best_five: list[float] = []  # min-heap of the five best discounted scores
        for key in sorted(self.scores, key=self.scores.__getitem__, reverse=True):
            raw = self.scores[key]
            if len(best_five) >= 5 and raw <= best_five[0]:
                break
            final[key] = raw * (1 - self._density(key, ix.size(key)))
            if len(best_five) < 5:
                heapq.heappush(best_five, final[key])
            else:
                heapq.heappushpop(best_five, final[key])
        self.budget.visits += len(final)
        if not final:
            return 0, 0.0
        ranked = sorted(final, key=final.__getitem__, reverse=True)
        top, top_score = ranked[0], final[ranked[0]]
        self.scores.update(final)
        # Several near-best candidates under one ancestor: the ancestor is the article.
        close = [k for k in ranked[1:5] if final[k] >= 0.75 * top_score]
        if len(close) >= 3:
            above = ix.parent[top]
            while above >= 0 and ix.tags[above] not in _TOP_LEVEL:
                if sum(1 for c in close if ix.contains(above, c)) >= 3:
                    top = above
                    break
                above = ix.parent[above]
        # A wrapper with a single child is the same container.
        while (
            ix.parent[top] >= 0
            and ix.tags[ix.parent[top]] not in _TOP_LEVEL
            and ix.element_children[ix.parent[top]] == 1
        ):
            top = ix.parent[top]
        return top, self.scores.get(top, top_score)

    def siblings(self, top: int, top_score: float) -> list[int]:
        """The container plus siblings that score well or read like paragraphs."""
        ix = self.ix
        up = ix.parent[top]
        if up < 0 or ix.tags[top] in _TOP_LEVEL:
            return [top]
        threshold = max(10.0, top_score * 0.2)
        top_class = ix.nodes[top].attrs.get("class") or ""
        chosen = []
        for sib in ix.children(up):
            if sib == top:
                chosen.append(sib)
                continue
            if self.skipped(sib):
                continue
            node = ix.nodes[sib]
            bonus = top_score * 0.2 if top_class and node.attrs.get("class") == top_class else 0
            score = self.scores.get(sib)
            tag = ix.tags[sib]
            if score is not None and score + bonus >= threshold:
                chosen.append(sib)
            # A <div> qualifies when it, or a <div> inside it, holds no block elements: the
            # reading the recorded pages were tuned on (what lexbor's css_matches gave).
            elif tag == "p" or (tag == "div" and ix.leaf_div_within(sib)):
                text = norm(node.text(deep=True))  # siblings are disjoint: linear overall
                density = self._density(sib, len(text))
                if (len(text) > 80 and density < 0.25) or (
                    0 < len(text) <= 80 and density == 0 and re.search(r"\.( |$)", text)
                ):
                    chosen.append(sib)
        return chosen

    def harvest(self, roots: list[int]) -> list[Block]:
        return harvest(
            self.ix,
            roots,
            conditional=bool(self.flags & CLEAN_CONDITIONALLY),
            own=self.own,
            hidden=self.hidden,
            scores=self.scores,
            budget=self.budget,
        )


def read_main_text(tree: LexborHTMLParser, flags: int, budget: Budget | None = None) -> list[Block]:
    """Paragraphs of the main text of a freshly parsed tree (the tree is modified)."""
    budget = budget or Budget()
    root = tree.body or tree.root
    if root is None:
        return []
    ix = TreeIndex(root, budget)
    reading = _Reading(ix, flags, budget)
    reading.score()
    top, top_score = reading.top()
    return reading.harvest(reading.siblings(top, top_score))
