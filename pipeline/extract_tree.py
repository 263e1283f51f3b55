"""One pass over a parsed page, and the time budget of an extraction.

``TreeIndex`` walks the page once, iteratively (a page nested 200,000 deep cannot reach Python's
recursion limit), and numbers the elements in document order, so that every subtree is a
contiguous range of numbers. It keeps each element's parent, where its subtree ends and its own
text length and commas; prefix sums over those answer "text length / commas / link text /
block elements below this element" in O(1), instead of a ``text()`` call, a walk or a CSS query
per element: the extraction stays linear in the page size whatever the page's shape.

``Budget`` bounds the work: phases check the clock every ``CHECK_EVERY`` nodes and, when time
is out, stop and drop what they have not read, so that the result is a clean prefix of the
page (hidden text cannot slip through an unread part) marked as partial.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from itertools import accumulate

from selectolax.lexbor import LexborNode

EXTRACTION_BUDGET_S = 2.0  # of CPU time (this thread) per page: real pages need milliseconds
CHECK_EVERY = 512  # nodes between two looks at the clock
# Elements always indexed, whatever the budget: even an exhausted budget gives the page's start.
MIN_ELEMENTS = 1000
WALK_SHARE = 0.5  # of the budget the indexing walk may use; the rest is for reading
# Text-bearing elements that are never shown: removed from the tree, not indexed.
_INVISIBLE = frozenset({"script", "style", "noscript", "template"})
# A <div> containing one of these is a layout container, not a paragraph.
_PARAGRAPH_BREAKERS = frozenset({"blockquote", "dl", "div", "img", "ol", "p", "pre", "table", "ul"})


class Budget:
    """Time and node visits spent by one extraction; ``clock`` is injectable for tests."""

    def __init__(
        self, seconds: float = EXTRACTION_BUDGET_S, clock: Callable[[], float] = time.thread_time
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self.started = clock()
        self.visits = 0  # nodes looked at by Python code: the measure of work the tests assert
        self.stopped = False
        self.spent = 0.0  # seconds when it stopped

    def out_of_time(self, share: float = 1.0) -> bool:
        return self.clock() - self.started >= self.seconds * share

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.spent = self.clock() - self.started

    @property
    def partial_reason(self) -> str | None:
        if not self.stopped:
            return None
        return (
            f"extraction stopped after {self.spent:.1f} s of its {self.seconds:.1f} s budget "
            "(page too complex)"
        )


class TreeIndex:
    """The elements under ``root`` in document order (index 0 is ``root``), with per-subtree
    sums. ``script``/``style``/``noscript``/``template`` are removed from the tree first.

    When the budget runs out during the walk, the unvisited rest of the page is removed from
    the tree, so the tree and the index agree and the reading sees a prefix of the page.
    """

    def __init__(self, root: LexborNode, budget: Budget) -> None:
        nodes: list[LexborNode] = []
        tags: list[str] = []
        parent: list[int] = []
        size: list[int] = []  # text length without whitespace-only text nodes
        commas: list[int] = []
        invisible: list[LexborNode] = []
        # Three parallel stacks (node, its parent's index, its tag): children are pushed last
        # first, walking back from the last child, so they pop in document order.
        stack: list[LexborNode] = [root]
        ups: list[int] = [-1]
        pending_tags: list[str] = [root.tag or ""]
        visits, next_check, truncated = 0, CHECK_EVERY, False
        while stack:
            if visits >= next_check and len(nodes) >= MIN_ELEMENTS:
                next_check = visits + CHECK_EVERY
                if budget.out_of_time(WALK_SHARE):
                    truncated = True
                    break
            node = stack.pop()
            index = len(nodes)
            nodes.append(node)
            tags.append(pending_tags.pop())
            parent.append(ups.pop())
            own_size = own_commas = 0
            child = node.last_child
            while child is not None:
                visits += 1
                tag = child.tag
                if tag == "-text":
                    text = child.text_content
                    if text and not text.isspace():
                        own_size += len(text)
                        own_commas += text.count(",")
                        if not text.isascii():
                            own_commas += text.count("\uff0c") + text.count("\u3001")
                elif tag and tag[0] != "-":  # an element ("-comment", "-text" are not)
                    if tag in _INVISIBLE:
                        invisible.append(child)
                    else:
                        stack.append(child)
                        ups.append(index)
                        pending_tags.append(tag)
                child = child.prev
            size.append(own_size)
            commas.append(own_commas)
        if truncated:
            budget.stop()
            for node in stack:  # subtrees never visited: not part of what was read
                node.decompose()
        for node in invisible:
            node.decompose()

        count = len(nodes)
        end = list(range(count))  # index of the last element of each subtree
        for i in range(count - 1, 0, -1):  # children before parents: a subtree's end is final
            up = parent[i]
            if end[i] > end[up]:
                end[up] = end[i]
        budget.visits += visits + count
        self.nodes, self.tags, self.parent, self.end = nodes, tags, parent, end
        self.truncated = truncated
        # A subtree is a contiguous range of indexes, so its sums are differences of prefix
        # sums (built in C by accumulate): O(1) per question, no per-element Python pass.
        self._size = [0, *accumulate(size)]
        self._commas = [0, *accumulate(commas)]
        self._breakers = [0, *accumulate(map(_PARAGRAPH_BREAKERS.__contains__, tags))]
        self.element_children = Counter(parent)
        link_weight = [0.0] * count
        leaf_div = [False] * count
        for i, tag in enumerate(tags):
            if tag == "a":
                href = nodes[i].attrs.get("href") or ""
                link_weight[i] = self.size(i) * (0.3 if href.startswith("#") else 1.0)
            elif tag == "div":
                leaf_div[i] = not self.breaker_inside(i)
        self._links = [0.0, *accumulate(link_weight)]
        self._leaf_divs = [0, *accumulate(leaf_div)]

    def size(self, i: int) -> int:
        """Text length of the subtree, whitespace-only text nodes left out."""
        return self._size[self.end[i] + 1] - self._size[i]

    def commas(self, i: int) -> int:
        return self._commas[self.end[i] + 1] - self._commas[i]

    def links(self, i: int) -> float:
        """Text inside the subtree's links (the element itself included); "#" links 30%."""
        return self._links[self.end[i] + 1] - self._links[i]

    def breaker_inside(self, i: int) -> bool:
        """A block element (``_PARAGRAPH_BREAKERS``) is below the element."""
        return self._breakers[self.end[i] + 1] - self._breakers[i + 1] > 0

    def leaf_div_within(self, i: int) -> bool:
        """The element, or an element below it, is a <div> without block elements below."""
        return self._leaf_divs[self.end[i] + 1] - self._leaf_divs[i] > 0

    def __len__(self) -> int:
        return len(self.nodes)

    def contains(self, ancestor: int, node: int) -> bool:
        return ancestor < node <= self.end[ancestor]

    def children(self, index: int) -> list[int]:
        """Element children of an element, in document order."""
        out, child, last = [], index + 1, self.end[index]
        while child <= last:
            out.append(child)
            child = self.end[child] + 1
        return out
