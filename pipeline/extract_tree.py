"""One pass over a parsed page, and the time budget of an extraction.

``TreeIndex`` walks the page once, iteratively (a page nested 200,000 deep cannot reach Python's
recursion limit), and keeps per element what the reading needs: its parent, where its subtree
ends, its text length and commas, the text inside its links, whether a block element is inside
it. Everything is summed up the tree in a second, reverse pass, so asking about an element's
subtree costs O(1) instead of a walk or a CSS query per element: the extraction stays linear in
the page size whatever the page's shape.

``Budget`` bounds the work: phases check the clock every ``CHECK_EVERY`` nodes and, when time
is out, stop and drop what they have not read, so that the result is a clean prefix of the
page (hidden text cannot slip through an unread part) marked as partial.
"""

from __future__ import annotations

import time
from collections.abc import Callable

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
        stack: list[tuple[LexborNode, int]] = [(root, -1)]
        visits, next_check, truncated = 0, CHECK_EVERY, False
        while stack:
            if visits >= next_check and len(nodes) >= MIN_ELEMENTS:
                next_check = visits + CHECK_EVERY
                if budget.out_of_time(WALK_SHARE):
                    truncated = True
                    break
            node, up = stack.pop()
            index = len(nodes)
            nodes.append(node)
            tags.append(node.tag or "")
            parent.append(up)
            own_size = own_commas = 0
            children: list[tuple[LexborNode, int]] = []
            child = node.child
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
                        children.append((child, index))
                child = child.next
            size.append(own_size)
            commas.append(own_commas)
            if children:
                children.reverse()  # popped first-child first: document order
                stack.extend(children)
        if truncated:
            budget.stop()
            for node, _up in stack:  # subtrees never visited: not part of what was read
                node.decompose()
        for node in invisible:
            node.decompose()

        count = len(nodes)
        end = list(range(count))  # index of the last element of each subtree
        links = [0.0] * count  # text inside <a> (in-page "#" links count 30%)
        breaker_inside = [False] * count
        leaf_div_within = [False] * count  # it or a descendant is a <div> without breakers
        element_children = [0] * count
        for i in range(count - 1, -1, -1):  # children before parents: sums are final
            tag = tags[i]
            if tag == "a":
                href = nodes[i].attrs.get("href") or ""
                links[i] += size[i] * (0.3 if href.startswith("#") else 1.0)
            if tag == "div" and not breaker_inside[i]:
                leaf_div_within[i] = True
            up = parent[i]
            if up < 0:
                continue
            size[up] += size[i]
            commas[up] += commas[i]
            links[up] += links[i]
            if end[i] > end[up]:
                end[up] = end[i]
            if breaker_inside[i] or tag in _PARAGRAPH_BREAKERS:
                breaker_inside[up] = True
            if leaf_div_within[i]:
                leaf_div_within[up] = True
            element_children[up] += 1
        budget.visits += visits + count
        self.nodes, self.tags, self.parent, self.end = nodes, tags, parent, end
        self.size, self.commas, self.links = size, commas, links
        self.breaker_inside, self.element_children = breaker_inside, element_children
        self.leaf_div_within = leaf_div_within
        self.truncated = truncated

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
