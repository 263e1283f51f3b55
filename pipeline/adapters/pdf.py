"""PDF responses: text of the first ``pdf_max_pages`` pages with pypdf, capped in characters.

The title and authors come only from the PDF's own metadata; a PDF without them has none
(the first line of a PDF is often a running header, so it is not promoted to a title).
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

from pypdf import PdfReader

from pipeline.adapters.base import (
    Passage,
    build_snippets,
    content_snippets,
    judge_coverage,
    make_evidence,
)
from pipeline.adapters.metadata import metadata_text, page_sentences
from pipeline.errors import UnsupportedContentError
from pipeline.extract_meta import script_language
from pipeline.fetch import FetchResponse, SafeFetcher
from pipeline.models import Evidence, ReadKind, Source
from pipeline.settings import Settings

log = logging.getLogger(__name__)

PDF_ACCEPT = "application/pdf,*/*;q=0.1"
_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")


def _paragraphs(page_text: str) -> list[str]:
    text = _HYPHEN_BREAK.sub(r"\1\2", page_text.replace("\r", ""))
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _pdf_date(value: object) -> str | None:
    """PDF dates look like ``D:20240131120000Z``; keep the ISO date part."""
    m = re.match(r"(?:D:)?(\d{4})(\d{2})?(\d{2})?", str(value or ""))
    if not m:
        return None
    return "-".join(part for part in m.groups() if part)


def read_pdf_pages(
    response: FetchResponse, max_pages: int, max_chars: int | None = None
) -> tuple[list[str], Any, int]:
    """The text of each page read (at most ``max_pages``; none after ``max_chars`` characters
    when given), the PDF's metadata and its page count. Raises UnsupportedContentError when the
    PDF is encrypted or unreadable."""
    try:
        reader = PdfReader(io.BytesIO(response.content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedContentError("the PDF is encrypted")
        pages: list[str] = []
        chars = 0
        for page in reader.pages[:max_pages]:
            if max_chars is not None and chars > max_chars:
                break
            text = page.extract_text() or ""
            pages.append(text)
            chars += len(text)
        return pages, reader.metadata, len(reader.pages)
    except UnsupportedContentError:
        raise
    except Exception as exc:  # a hostile PDF can break pypdf in any way
        log.info("unreadable PDF at %s: %s: %s", response.url, type(exc).__name__, exc)
        raise UnsupportedContentError(
            f"the PDF at {response.url} could not be read: {exc}",
            user_message="This PDF could not be read.",
        ) from None


class PdfAdapter:
    name = "PdfAdapter"

    def __init__(self, settings: Settings, fetcher: SafeFetcher) -> None:
        self.settings = settings
        self.fetcher = fetcher

    def read(self, url: str) -> Evidence:
        response = self.fetcher.get(url, accept=PDF_ACCEPT)
        if not response.is_pdf:
            raise UnsupportedContentError(f"{url} did not serve a PDF ({response.media_type})")
        return self.from_response(url, response)

    def from_response(self, url: str, response: FetchResponse) -> Evidence:
        s = self.settings
        pages, meta, total_pages = read_pdf_pages(response, s.pdf_max_pages, s.evidence_max_chars)
        passages = [Passage(para) for page in pages for para in _paragraphs(page)]
        read_pages = len(pages)
        title = str(meta.title).strip() if meta and meta.title else None
        author = str(meta.author).strip() if meta and meta.author else None
        text_sample = " ".join(p.text for p in passages[:20])
        source = Source(
            url=response.url,
            title=title or None,
            authors=[author] if author else [],
            published=_pdf_date(meta.get("/CreationDate")) if meta else None,
            language=script_language(text_sample),
            kind="pdf",
            metadata={"pages": total_pages, "pages_read": read_pages},
        )
        snippets, capped = build_snippets(
            passages, s, metadata=metadata_text(page_sentences(source))
        )
        truncated = capped or read_pages < total_pages or response.truncated
        detail = (
            f"{read_pages} of {total_pages} pages read"
            if read_pages < total_pages
            else f"first {sum(len(x.text) for x in content_snippets(snippets))} characters kept"
        )
        coverage, reason = judge_coverage(snippets, truncated, truncation=detail)
        return make_evidence(
            url,
            self.name,
            source,
            snippets,
            read=ReadKind.full_text,
            coverage=coverage,
            reason=reason,
            truncated=truncated,
        )
