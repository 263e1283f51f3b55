"""A nesting limit applied to HTML text before it is parsed.

The HTML tree builder (lexbor, like every parser following the WHATWG algorithm) scans the stack
of open elements on many start tags ("close a ``<p>`` in button scope" on every ``<div>``,
``<p>``, ``<li>``...), so a page whose elements nest *d* deep costs O(tags x d) to parse: 100,000
nested ``<div>``s take about 20 s of CPU before any extraction starts. ``limit_nesting`` drops
the start tags (and their end tags) of elements that would sit deeper than ``MAX_DEPTH``, so
their content joins the element at that depth and the parse stays linear. No text is removed.

Real pages nest 10 to 40 deep (the recorded corpus: at most 32), so the limit never touches
them; pages with fewer than ``_SCAN_ABOVE`` tags are not even scanned, because their worst
case parses in well under a tenth of a second.
"""

from __future__ import annotations

import re

MAX_DEPTH = 256  # elements nested deeper than this are flattened into their ancestor
_SCAN_ABOVE = 8000  # "<" characters: below this, even fully nested markup parses quickly
# Elements that never hold children (void) or that the parser closes by itself when a sibling
# starts (so they cannot build depth on their own): not counted.
_NOT_NESTING = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr", "keygen", "p", "li", "dt", "dd", "option", "optgroup", "tr",
     "td", "th", "tbody", "thead", "tfoot", "colgroup", "caption", "rb", "rt", "rp", "rtc"}
)  # fmt: skip
# A start or end tag (the name, then anything up to ">"), or the start of a comment. Comments and
# raw-text elements are skipped by position: a "<div>" inside a script or comment is not a tag.
_TOKEN = re.compile(r"<(/?)([a-zA-Z][^\s/>]*)[^>]*>|<!--")
_RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                       "noframes"})  # fmt: skip


_FOREIGN = frozenset({"svg", "math"})


def _raw_text_end(html: str, name: str, start: int) -> int:
    close = re.compile(rf"</{name}\s*>", re.IGNORECASE).search(html, start)
    return close.end() if close else len(html)


def limit_nesting(html: str, max_depth: int = MAX_DEPTH) -> tuple[str, int]:
    """``(html, tags dropped)``: the page with elements deeper than ``max_depth`` unwrapped.

    The open elements are modelled as a stack: an end tag pops up to its element (as the
    parser does when the element is in scope) and is ignored when none is open, so stray end
    tags cannot hide depth. A dropped start tag's end tag is dropped too.
    """
    if html.count("<") <= _SCAN_ABOVE:
        return html, 0
    # The loop runs once per tag of a hostile page (200,000 on 100,000 nested divs): locals
    # and bound methods keep it tight, it is the whole cost of such a page before parsing.
    stack: list[str] = []
    push, pop = stack.append, stack.pop
    open_count: dict[str, int] = {}
    dropped_open: dict[str, int] = {}
    cuts: list[tuple[int, int]] = []
    add_cut = cuts.append
    skip_until, foreign, depth = 0, 0, 0  # foreign: open <svg>/<math> elements
    not_nesting, raw_text = _NOT_NESTING, _RAW_TEXT
    for match in _TOKEN.finditer(html):
        slash, name = match.groups()
        if name is None:  # a comment
            if match.start() >= skip_until:
                close = html.find("-->", match.start() + 4)
                skip_until = close + 3 if close != -1 else len(html)
            continue
        if skip_until and match.start() < skip_until:
            continue
        name = name.lower()
        if name in not_nesting:
            continue
        if not slash:  # a start tag
            if name in raw_text:  # kept at any depth: its content must stay raw text
                skip_until = _raw_text_end(html, name, match.end())
                continue
            if depth >= max_depth:
                dropped_open[name] = dropped_open.get(name, 0) + 1
                add_cut(match.span())
                continue
            if foreign and match.group(0).endswith("/>"):
                continue  # "<path/>" closes itself inside SVG/MathML (and only there)
            push(name)
            depth += 1
            open_count[name] = open_count.get(name, 0) + 1
            if name in _FOREIGN:
                foreign += 1
        elif dropped_open.get(name):
            dropped_open[name] -= 1
            add_cut(match.span())
        elif open_count.get(name):
            while stack:  # each element is pushed once, so popping is linear overall
                top = pop()
                depth -= 1
                open_count[top] -= 1
                if top in _FOREIGN:
                    foreign -= 1
                if top == name:
                    break
    if not cuts:
        return html, 0
    pieces, start = [], 0
    for begin, end in cuts:
        pieces.append(html[start:begin])
        start = end
    pieces.append(html[start:])
    return "".join(pieces), len(cuts)
