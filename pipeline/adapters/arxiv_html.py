"""A paper's text from LaTeXML HTML (what ``https://arxiv.org/html/<id>`` serves: ``ltx_*`` classes).

Kept, in reading order: the title, the authors, the abstract, every section's paragraphs under
their heading (``3 Experiments``, ``3.1 Datasets``), list items, figure and table captions and
the first rows of tables (items), display equations (items) and code listings; math is its
``alttext`` (the TeX the author wrote). Dropped: the bibliography, footnotes, numeric citation
marks (``[12]``: noise in a sentence; author-year citations are words and stay), navigation and
page chrome (``ltx_page_header/footer/navbar``, ``ltx_role_*`` navigation links, the arXiv HTML
banner and alerts, scripts, buttons) and back matter that says nothing about the work
(acknowledgements, author contributions, competing interests, consortium lists).

``fit_sections`` shares the evidence budget between the sections, so a long paper keeps the
opening of every section (method, results, limitations...) instead of only its first pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser, LexborNode

from pipeline.adapters.base import CODE, ITEM, PROSE, Passage
from pipeline.text import normalize_space

ABSTRACT_SECTION = "Abstract"
MAX_AUTHORS = 50
MAX_TABLE_ROWS = 12  # a results table's first rows carry its headline numbers
MAX_DEPTH = 200  # LaTeXML nests a few levels; deeper is hostile markup, not a paper
_DROP = ", ".join(
    (
        ".ltx_bibliography",
        ".ltx_page_header",
        ".ltx_page_footer",
        ".ltx_page_navbar",
        ".ltx_page_logo",
        ".ltx_TOC",
        ".ltx_note",  # footnotes: inline they would run into the sentence they hang on
        ".ltx_listing_data",  # the listing's download link
        ".ltx_role_prev",
        ".ltx_role_next",
        ".ltx_role_up",
        ".ltx_role_start",
        ".ltx_role_contents",
        ".ltx_role_navigation",
        ".package-alerts",  # arXiv's "HTML conversions sometimes display errors" banner
        ".desktop_header",
        ".mobile_header",
        "[role=banner]",
        "[role=status]",
        "header",
        "footer",
        "nav",
        "script",
        "style",
        "noscript",
        "button",
        "svg",
        "img",
        "object",
    )
)
_SECTION_TITLES = frozenset(
    {
        "ltx_title_section",
        "ltx_title_subsection",
        "ltx_title_subsubsection",
        "ltx_title_paragraph",
        "ltx_title_appendix",
        "ltx_title_chapter",
        "ltx_title_part",
    }
)
_BACK_MATTER = re.compile(
    r"^(?:[A-Z\d.]+\s+)?(?:acknowledg|author(?:s'?)? contributions?|competing interests?|"
    r"conflicts? of interests?|declaration of (?:competing|interest)|consortium|"
    r"references$|bibliography$)",
    re.I,
)
_NUMERIC_CITE = re.compile(r"^[\[(]?[\d,;\s–-]+[\])]?$")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:)\]])")
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


@dataclass
class LatexmlPaper:
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    abstract: str | None = None
    passages: list[Passage] = field(default_factory=list)  # the abstract first, then the body

    @property
    def sections(self) -> list[str]:
        """Section headings in order (each once)."""
        return list(dict.fromkeys(p.section for p in self.passages if p.section))

    @property
    def has_body(self) -> bool:
        return any(p.section not in (None, ABSTRACT_SECTION) for p in self.passages)


def is_latexml(content: bytes) -> bool:
    head = content[:200_000]
    return b"ltx_document" in head or b"ltx_page_main" in head


def _classes(node: LexborNode) -> set[str]:
    return set((node.attributes.get("class") or "").split())


def _text(node: LexborNode) -> str:
    text = normalize_space(node.text(deep=True, separator=""))
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def _prepare(tree: LexborHTMLParser) -> None:
    """Chrome out; math to its alttext; numeric citation marks out; heading numbers spaced."""
    for node in tree.css(_DROP):
        node.decompose()
    for math in tree.css("math"):
        alt = math.attributes.get("alttext")
        math.replace_with(f" {alt.strip()} " if alt else " ")
    for cite in tree.css("cite"):
        if _NUMERIC_CITE.match(normalize_space(cite.text(deep=True))):
            cite.decompose()
    for tag in tree.css(".ltx_tag_section, .ltx_tag_subsection, .ltx_tag_subsubsection"):
        tag.replace_with(f"{normalize_space(tag.text(deep=True))} ")
    for tag in tree.css(".ltx_tag_item"):
        tag.decompose()  # the bullet or number; items get their own


def _root(tree: LexborHTMLParser) -> LexborNode | None:
    for selector in ("article.ltx_document", ".ltx_page_content", ".ltx_document", "body"):
        node = tree.css_first(selector)
        if node is not None:
            return node
    return None


def _authors(root: LexborNode) -> list[str]:
    names: list[str] = []
    for person in root.css(".ltx_authors .ltx_personname"):
        lines = [normalize_space(x) for x in person.text(deep=True, separator="\n").split("\n")]
        first = next((x for x in lines if x), "")
        for name in re.split(r"\s*(?:,|\band\b)\s*", first):
            if name and name not in names and len(name) < 80:
                names.append(name)
    return names[:MAX_AUTHORS]


def _table_rows(table: LexborNode) -> Iterable[str]:
    for row in table.css("tr")[:MAX_TABLE_ROWS]:
        cells = [_text(cell) for cell in row.css("td, th")]
        if any(cells):
            yield " | ".join(cells)


class _Walker:
    def __init__(self) -> None:
        self.section: str | None = None
        self.passages: list[Passage] = []

    def add(self, text: str, kind: str = PROSE) -> None:
        if text:
            self.passages.append(Passage(text, self.section, kind=kind))

    def walk(self, node: LexborNode, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            return
        tag, classes = node.tag, _classes(node)
        if tag in _HEADINGS:
            if classes & _SECTION_TITLES:
                self.section = _text(node)[:200] or self.section
            return  # the document title, the abstract's and theorems' labels: not text
        if "ltx_abstract" in classes or "ltx_authors" in classes:
            return  # read apart
        if tag == "section" or classes & {"ltx_section", "ltx_appendix", "ltx_subsection"}:
            heading = node.css_first("h1, h2, h3, h4, h5, h6")
            if heading is not None and _BACK_MATTER.match(_text(heading)):
                return
        if tag == "p":
            self.add(_text(node))
        elif (
            tag == "figcaption"
            or tag == "li"
            or tag == "table"
            and classes & {"ltx_equation", "ltx_equationgroup"}
        ):
            self.add(_text(node), ITEM)
        elif tag == "table":
            for row in _table_rows(node):
                self.add(row, ITEM)
        elif "ltx_listing" in classes:
            lines = [normalize_space(x.text(deep=True)) for x in node.css(".ltx_listingline")]
            self.add("\n".join(lines).strip(), CODE)
        else:
            child = node.child
            while child is not None:
                if child.tag not in ("-text", "-comment"):
                    self.walk(child, depth + 1)
                elif child.tag == "-text" and (loose := normalize_space(child.text())):
                    self.add(loose)  # text straight in a block (older LaTeXML, theorems)
                child = child.next


def read_latexml(html: str) -> LatexmlPaper:
    """The paper in LaTeXML HTML ``html`` (see the module docstring)."""
    tree = LexborHTMLParser(html)
    _prepare(tree)
    root = _root(tree)
    paper = LatexmlPaper()
    if root is None:
        return paper
    title = root.css_first(".ltx_title_document") or tree.css_first("title")
    paper.title = _text(title) if title is not None else None
    paper.authors = _authors(root)
    abstract = root.css_first(".ltx_abstract")
    if abstract is not None:
        paragraphs = [_text(p) for p in abstract.css("p")] or [_text(abstract)]
        paper.abstract = " ".join(p for p in paragraphs if p) or None
        paper.passages += [Passage(p, ABSTRACT_SECTION) for p in paragraphs if p]
    walker = _Walker()
    walker.walk(root)
    paper.passages += walker.passages
    return paper


def fit_sections(passages: list[Passage], budget: int) -> tuple[list[Passage], int]:
    """``passages`` within ``budget`` characters, shared fairly between sections: a section
    under its share keeps everything and leaves the rest to the others; a longer one keeps its
    first paragraphs (which say what the section does) up to its share. Returns the passages
    kept, in order, and how many sections were shortened."""
    order: list[str | None] = []
    sizes: dict[str | None, int] = {}
    for p in passages:
        if p.section not in sizes:
            order.append(p.section)
            sizes[p.section] = 0
        sizes[p.section] += len(p.text) + 1
    if sum(sizes.values()) <= budget:
        return passages, 0
    allowance: dict[str | None, int] = {}
    left, pending = budget, sorted(order, key=lambda s: sizes[s])
    while pending:
        share = left // len(pending)
        section = pending.pop(0)
        allowance[section] = min(sizes[section], share)
        left -= allowance[section]
    kept: list[Passage] = []
    used: dict[str | None, int] = dict.fromkeys(order, 0)
    for p in passages:
        room = allowance[p.section] - used[p.section]
        if len(p.text) < room or used[p.section] == 0:
            kept.append(p if len(p.text) <= max(room, 200) else Passage(
                p.text[: max(room, 200)].rsplit(" ", 1)[0] + " …", p.section, kind=p.kind
            ))  # fmt: skip
            used[p.section] += len(p.text) + 1
        else:
            used[p.section] = allowance[p.section]  # the section ends here: no later jumps
    shortened = sum(1 for s in order if allowance[s] < sizes[s])
    return kept, shortened
