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
# Comments and raw-text elements are skipped whole (a "<div>" inside a script is not a tag);
# otherwise a start or end tag, its attributes possibly quoted.
_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<(script|style|textarea|title|xmp|iframe|noembed|noframes)\b.*?(?:</\1\s*>|\Z)"
    r"""|<(/?)([a-zA-Z][^\s/>]*)(?:[^>"']|"[^"]*"|'[^']*')*>""",
    re.IGNORECASE | re.DOTALL,
)


def limit_nesting(html: str, max_depth: int = MAX_DEPTH) -> tuple[str, int]:
    """``(html, tags dropped)``: the page with elements deeper than ``max_depth`` unwrapped.

    The open elements are modelled as a stack: an end tag pops up to its element (as the
    parser does when the element is in scope) and is ignored when none is open, so stray end
    tags cannot hide depth. A dropped start tag's end tag is dropped too.
    """
    if html.count("<") <= _SCAN_ABOVE:
        return html, 0
    stack: list[str] = []
    open_count: dict[str, int] = {}
    dropped_open: dict[str, int] = {}
    cuts: list[tuple[int, int]] = []
    for match in _TOKEN.finditer(html):
        name = match.group(3)
        if name is None:
            continue  # a comment or a raw-text element
        name = name.lower()
        if name in _NOT_NESTING:
            continue
        if not match.group(2):  # a start tag
            foreign = open_count.get("svg", 0) or open_count.get("math", 0)
            if foreign and match.group(0).endswith("/>"):
                continue  # "<path/>" closes itself inside SVG/MathML (and only there)
            if len(stack) >= max_depth:
                dropped_open[name] = dropped_open.get(name, 0) + 1
                cuts.append(match.span())
                continue
            stack.append(name)
            open_count[name] = open_count.get(name, 0) + 1
        elif dropped_open.get(name):
            dropped_open[name] -= 1
            cuts.append(match.span())
        elif open_count.get(name):
            while stack:  # each element is pushed once, so popping is linear overall
                top = stack.pop()
                open_count[top] -= 1
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
