"""arXiv links (abs/pdf/html, old and new identifiers): the paper's full text when arXiv has it.

The export API (``ARXIV_API_URL``, Atom) gives the record: title, authors, dates, categories,
comment, journal reference, abstract. Then the body is read, in order, from:

1. the HTML version (``ARXIV_HTML_URL``/<id>, LaTeXML: ``pipeline.adapters.arxiv_html``);
2. the PDF (``ARXIV_PDF_URL``/<id>, pypdf text structured by ``pipeline.adapters.arxiv_pdf``);
3. else the abstract alone, as coverage ``partial`` ("abstract only: HTML and PDF unavailable
   (404)").

A full text keeps the paper's structure: the abstract, then each section's paragraphs with its
heading as the snippet section, captions and equations as items. A long paper is shared out
between its sections (``fit_sections``) so the method, results and limitations all stay within
the evidence caps. Coverage is ``full`` when the body was read (every section represented) and
``coverage_reason`` names the format read. The record's fields follow the text as plain
sentences (``pipeline.adapters.metadata``), so facts can cite them.

A missing or unreadable format (404 - arXiv has no HTML for some papers -, not LaTeXML, not a
PDF, a network error) falls through to the next: the abstract is the floor, as before. The
reads stay within the fetch stage's bound of two full fetches (``tasks.app.FETCHES_PER_STAGE``):
a fallback starts only while one fetch deadline is left.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET  # noqa: S405 - DTDs are refused before parsing, see _parse
from dataclasses import dataclass
from urllib.parse import quote

from pipeline.adapters.arxiv_html import ABSTRACT_SECTION, fit_sections, is_latexml, read_latexml
from pipeline.adapters.arxiv_pdf import pdf_passages
from pipeline.adapters.base import (
    Passage,
    build_snippets,
    judge_coverage,
    make_evidence,
)
from pipeline.adapters.metadata import arxiv_sentences, metadata_text, plain
from pipeline.adapters.pdf import PDF_ACCEPT, read_pdf_pages
from pipeline.errors import SourceUnavailableError, TechnoShareError, UnsupportedContentError
from pipeline.fetch import SafeFetcher
from pipeline.links import arxiv_id_from_url
from pipeline.models import Coverage, Evidence, ReadKind, Snippet, Source
from pipeline.settings import Settings

_NS = {"atom": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom"}
_VERSION = re.compile(r"v(\d+)$")
_HTTP_STATUS = re.compile(r"HTTP (\d{3})")
HTML_ACCEPT = "text/html,application/xhtml+xml;q=0.9"
FETCH_BUDGET = 2  # full fetch deadlines per read: the io queue's time limit (tasks.app)
SNIPPET_FIT_TRIES = 4  # budget shrinks by a fifth per try when the snippet count cap cuts


def _parse(content: bytes) -> ET.Element:
    # A DTD is the only way to declare entities (billion laughs, external entities): the API
    # never sends one, so any answer with one is refused instead of parsed.
    if b"<!DOCTYPE" in content or b"<!ENTITY" in content:
        raise UnsupportedContentError("arXiv answer contains a DTD; refused")
    try:
        return ET.fromstring(content)  # noqa: S314 - no DTD, size capped by the fetcher
    except ET.ParseError as exc:
        raise UnsupportedContentError(f"arXiv answer is not valid Atom: {exc}") from None


def _text(entry: ET.Element, path: str) -> str | None:
    node = entry.find(path, _NS)
    if node is None or node.text is None:
        return None
    return " ".join(node.text.split()) or None


@dataclass
class _Record:
    source: Source
    abstract: str | None
    metadata: str | None


@dataclass
class _FullText:
    passages: list[Passage]
    fmt: str  # "arXiv HTML (LaTeXML)" or "the PDF"
    complete: bool  # the whole body was read (not cut by a page cap or the byte cap)
    title: str | None = None
    authors: list[str] | None = None


def _miss(exc: TechnoShareError) -> str:
    """Why a format could not be read, in a few words: "unavailable (404)", "unreadable"."""
    status = _HTTP_STATUS.search(str(exc))
    if isinstance(exc, SourceUnavailableError):
        return f"unavailable ({status.group(1)})" if status else "unavailable"
    if isinstance(exc, UnsupportedContentError):
        return "unreadable"
    return f"unreachable ({type(exc).__name__})"


class ArxivAdapter:
    name = "ArxivAdapter"

    def __init__(self, settings: Settings, fetcher: SafeFetcher) -> None:
        self.settings = settings
        self.fetcher = fetcher

    def read(self, url: str) -> Evidence:
        arxiv_id = arxiv_id_from_url(url)
        if not arxiv_id:
            raise UnsupportedContentError(f"no arXiv identifier in {url}")
        started = time.monotonic()
        record = self._record(arxiv_id)
        misses: list[tuple[str, str]] = []
        for label, reader in (("HTML", self._html), ("PDF", self._pdf)):
            spent = time.monotonic() - started
            if spent > (FETCH_BUDGET - 1) * self.settings.fetch_total_timeout:
                misses.append((label, "not tried (time budget spent)"))
                continue
            try:
                full = reader(arxiv_id)
            except TechnoShareError as exc:
                misses.append((label, _miss(exc)))
                continue
            evidence = self._full_evidence(url, record, full)
            if evidence is not None:
                return evidence
            misses.append((label, "has no body text"))
        return self._abstract_evidence(url, record, misses)

    # --- the export API record ----------------------------------------------------------
    def _record(self, arxiv_id: str) -> _Record:
        api = f"{self.settings.arxiv_api_url}?id_list={quote(arxiv_id)}&max_results=1"
        response = self.fetcher.get(api, accept="application/atom+xml")
        entry = _parse(response.content).find("atom:entry", _NS)
        entry_id = _text(entry, "atom:id") if entry is not None else None
        if entry is None or not entry_id or "/api/errors" in entry_id:
            raise SourceUnavailableError(f"arXiv has no record {arxiv_id}")
        version = _VERSION.search(entry_id)
        pdf = entry.find("atom:link[@title='pdf']", _NS)
        primary = entry.find("arxiv:primary_category", _NS)
        categories = [c.get("term", "") for c in entry.findall("atom:category", _NS)]
        metadata = {
            "arxiv_id": arxiv_id,
            "version": int(version.group(1)) if version else None,
            "primary_category": primary.get("term") if primary is not None else None,
            "categories": [c for c in categories if c],
            "pdf_url": pdf.get("href") if pdf is not None else None,
            "comment": _text(entry, "arxiv:comment"),
            "journal_ref": _text(entry, "arxiv:journal_ref"),
            "doi": _text(entry, "arxiv:doi"),
        }
        source = Source(
            url=f"https://arxiv.org/abs/{arxiv_id}",
            title=_text(entry, "atom:title"),
            authors=[
                name
                for author in entry.findall("atom:author", _NS)
                if (name := _text(author, "atom:name"))
            ],
            published=_text(entry, "atom:published"),
            updated=_text(entry, "atom:updated"),
            site_name="arXiv",
            kind="paper",
            metadata={k: v for k, v in metadata.items() if v not in (None, [])},
        )
        abstract = _text(entry, "atom:summary")
        abstract = plain(abstract) if abstract else None  # TeX formatting, as a reader sees it
        return _Record(source, abstract, metadata_text(arxiv_sentences(source)))

    # --- the full-text formats ------------------------------------------------------------
    def _html(self, arxiv_id: str) -> _FullText:
        url = f"{self.settings.arxiv_html_url.rstrip('/')}/{quote(arxiv_id)}"
        response = self.fetcher.get(url, accept=HTML_ACCEPT)
        if response.is_pdf or not is_latexml(response.content):
            raise UnsupportedContentError(f"{url} is not LaTeXML HTML ({response.media_type})")
        paper = read_latexml(response.text())
        return _FullText(
            paper.passages,
            "arXiv HTML (LaTeXML)",
            complete=not response.truncated and paper.has_body,
            title=paper.title,
            authors=paper.authors,
        )

    def _pdf(self, arxiv_id: str) -> _FullText:
        url = f"{self.settings.arxiv_pdf_url.rstrip('/')}/{quote(arxiv_id)}"
        response = self.fetcher.get(url, accept=PDF_ACCEPT)
        if not response.is_pdf:
            raise UnsupportedContentError(f"{url} did not serve a PDF ({response.media_type})")
        pages, _meta, total = read_pdf_pages(response, self.settings.pdf_max_pages)
        passages, reached_references = pdf_passages(pages)
        return _FullText(passages, "the PDF", complete=reached_references or len(pages) == total)

    # --- evidence -------------------------------------------------------------------------
    def _full_evidence(self, url: str, record: _Record, full: _FullText) -> Evidence | None:
        passages = full.passages
        if not any(p.section != ABSTRACT_SECTION for p in passages):
            return None  # an error page or an empty conversion: try the next format
        if record.abstract and not any(p.section == ABSTRACT_SECTION for p in passages):
            passages = [Passage(record.abstract, ABSTRACT_SECTION), *passages]
        source = record.source
        if full.title and not source.title:
            source = source.model_copy(update={"title": full.title})
        if full.authors and not source.authors:
            source = source.model_copy(update={"authors": full.authors})
        snippets, capped, shortened = self._fit(passages, record.metadata)
        coverage, reason = judge_coverage(snippets, capped or not full.complete)
        if coverage == Coverage.full:
            reason = f"full text from {full.fmt}"
            if shortened:
                reason += f"; {shortened} long sections shortened to fit the evidence cap"
        else:
            reason = f"{reason} (text from {full.fmt})"
        return make_evidence(
            url,
            self.name,
            source,
            snippets,
            read=ReadKind.full_text,
            coverage=coverage,
            reason=reason,
            truncated=capped or not full.complete,
        )

    def _fit(
        self, passages: list[Passage], metadata: str | None
    ) -> tuple[list[Snippet], bool, int]:
        """Snippets of every section within both caps: the character budget is shared between
        sections; when the snippet count cap still cuts (many tiny paragraphs), it shrinks."""
        budget = self.settings.evidence_max_chars - len(metadata or "") - 200
        for _ in range(SNIPPET_FIT_TRIES):
            kept, shortened = fit_sections(passages, budget)
            snippets, capped = build_snippets(kept, self.settings, metadata=metadata)
            if not capped:
                return snippets, False, shortened
            budget = budget * 4 // 5
        return snippets, capped, shortened

    def _abstract_evidence(
        self, url: str, record: _Record, misses: list[tuple[str, str]]
    ) -> Evidence:
        abstract = record.abstract
        snippets, truncated = build_snippets(
            [Passage(abstract, ABSTRACT_SECTION)] if abstract else [],
            self.settings,
            metadata=record.metadata,
        )
        why = {why for _, why in misses}
        if len(why) == 1:
            detail = f"{' and '.join(label for label, _ in misses)} {why.pop()}"
        else:
            detail = ", ".join(f"{label} {why}" for label, why in misses)
        return make_evidence(
            url,
            self.name,
            record.source,
            snippets,
            read=ReadKind.abstract if abstract else ReadKind.metadata_only,
            coverage=Coverage.partial if abstract else Coverage.metadata_only,
            reason=f"abstract only: {detail}" if abstract else "no abstract in the arXiv record",
            truncated=truncated,
        )
