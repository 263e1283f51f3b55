"""Generic links: an HTML page (main text via ``pipeline.extract``), plain text or Markdown.

A link that turns out to serve a PDF is handed to ``PdfAdapter``; JSON, XML and other data
formats are refused as pages (the fetcher accepts them only for the source APIs). Each extracted
block keeps its kind: list items, table cells, captions and ``<br>`` lines are items, ``<pre>`` is
code (``pipeline.adapters.base`` keeps both apart from running prose). The page's title, site,
authors and dates follow the text as plain sentences (``pipeline.adapters.metadata``).
"""

from __future__ import annotations

import re

from pipeline.adapters.base import (
    CODE,
    ITEM,
    METADATA_SECTION,
    PROSE,
    Passage,
    build_snippets,
    content_snippets,
    judge_coverage,
    make_evidence,
)
from pipeline.adapters.metadata import metadata_text, page_sentences
from pipeline.adapters.pdf import PdfAdapter
from pipeline.adapters.readme import markdown_passages
from pipeline.errors import UnsupportedContentError
from pipeline.extract import ExtractedPage, extract_html
from pipeline.extract_meta import script_language
from pipeline.fetch import FetchResponse, SafeFetcher
from pipeline.models import Coverage, Evidence, ReadKind, Snippet, Source
from pipeline.settings import Settings
from pipeline.text import ends_sentence

PAGE_ACCEPT = (
    "text/html,application/xhtml+xml;q=0.9,application/pdf;q=0.8,text/plain;q=0.7,*/*;q=0.1"
)
_HTML = {"text/html", "application/xhtml+xml"}
_TEXT = {"text/plain", "text/markdown", "text/x-markdown"}


_ITEM_TAGS = frozenset({"li", "dt", "dd", "td", "th", "figcaption", "summary"})
_CODE_TAGS = frozenset({"pre"})
# A bullet typed as text at the start of a line ("+ Added X", "* Fixed Y", "- Z").
_TYPED_BULLET = re.compile(r"^[+*•·▪◦‣-]\s+")


def block_kind(tag: str, text: str) -> str:
    """List items, cells and captions are items; a <br> line is one unless it ends like a
    sentence (then it reads on as prose); <pre> is code; the rest is prose."""
    if tag in _CODE_TAGS:
        return CODE
    if tag in _ITEM_TAGS or (tag == "br" and not ends_sentence(text)):
        return ITEM
    return PROSE


def page_passages(page: ExtractedPage) -> list[Passage]:
    """Paragraphs under their most recent heading, each with its kind (prose, item, code)."""
    passages: list[Passage] = []
    section: str | None = None
    for block in page.blocks:
        if block.heading:
            section = block.text[:200]
            continue
        kind = block_kind(block.tag, block.text)
        lined = kind == ITEM or block.tag == "br"
        text = _TYPED_BULLET.sub("", block.text) if lined else block.text
        passages.append(Passage(text, section, kind=kind))
    return passages


class WebPageAdapter:
    name = "WebPageAdapter"

    def __init__(self, settings: Settings, fetcher: SafeFetcher) -> None:
        self.settings = settings
        self.fetcher = fetcher

    def read(self, url: str) -> Evidence:
        return self.from_response(url, self.fetcher.get(url, accept=PAGE_ACCEPT))

    def from_response(self, url: str, response: FetchResponse) -> Evidence:
        if response.is_pdf:
            return PdfAdapter(self.settings, self.fetcher).from_response(url, response)
        if response.media_type in _HTML:
            page = extract_html(response.content, response.url, charset=response.charset)
            source = Source(
                url=response.url,
                title=page.title,
                authors=page.authors,
                published=page.published,
                updated=page.modified,
                site_name=page.site_name,
                language=page.language,
                kind="page",
                metadata={
                    k: v
                    for k, v in (
                        ("description", page.description),
                        ("canonical_url", page.canonical_url),
                    )
                    if v
                },
            )
            return self._evidence(
                url,
                response,
                source,
                page_passages(page),
                page.description,
                extraction_cut=page.partial_reason if page.truncated else None,
            )
        if response.media_type in _TEXT:
            text = response.text()
            passages = (
                markdown_passages(text)
                if response.media_type != "text/plain"
                else [Passage(p) for p in text.split("\n\n")]
            )
            source = Source(url=response.url, language=script_language(text), kind="page")
            return self._evidence(url, response, source, passages, None)
        raise UnsupportedContentError(
            f"{response.media_type} at {response.url} is data, not a page",
            user_message=f"This link serves {response.media_type}, not a readable page.",
        )

    def _evidence(
        self,
        url: str,
        response: FetchResponse,
        source: Source,
        passages: list[Passage],
        description: str | None,
        *,
        extraction_cut: str | None = None,
    ) -> Evidence:
        """``extraction_cut``: why the HTML extraction stopped before the end of the page (its
        time budget ran out): the text read is then a prefix, so coverage is partial."""
        metadata = metadata_text(page_sentences(source))
        snippets, capped = build_snippets(passages, self.settings, metadata=metadata)
        truncated = capped or response.truncated or extraction_cut is not None
        if content_snippets(snippets):
            reason_detail = response.truncated_reason if response.truncated else extraction_cut
            coverage, reason = judge_coverage(snippets, truncated, truncation=reason_detail)
            read = ReadKind.full_text
        elif description:
            snippets = [Snippet(id="S1", text=description, section="description")]
            if metadata:
                snippets.append(Snippet(id="S2", text=metadata, section=METADATA_SECTION))
            coverage, reason, read = (
                Coverage.metadata_only,
                "no main text found; only the page's description",
                ReadKind.metadata_only,
            )
        else:
            snippets = []  # the page's fields alone say nothing worth a reply
            coverage, reason, read = Coverage.failed, "no readable text", ReadKind.metadata_only
        if extraction_cut and coverage != Coverage.partial:
            reason = f"{reason} ({extraction_cut})"
        return make_evidence(
            url,
            self.name,
            source,
            snippets,
            read=read,
            coverage=coverage,
            reason=reason,
            truncated=truncated,
        )
