"""PDF responses: text of the first ``pdf_max_pages`` pages with pypdf, capped in characters.

The title and authors come only from the PDF's own metadata; a PDF without them has none
(the first line of a PDF is often a running header, so it is not promoted to a title).
"""

from __future__ import annotations

import io
import logging
import re

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
        try:
            reader = PdfReader(io.BytesIO(response.content))
            if reader.is_encrypted and not reader.decrypt(""):
                raise UnsupportedContentError("the PDF is encrypted")
            meta = reader.metadata
            total_pages = len(reader.pages)
            passages: list[Passage] = []
            chars = 0
            read_pages = 0
            for page in reader.pages[: s.pdf_max_pages]:
                if chars > s.evidence_max_chars:
                    break
                for para in _paragraphs(page.extract_text() or ""):
                    passages.append(Passage(para))
                    chars += len(para)
                read_pages += 1
        except UnsupportedContentError:
            raise
        except Exception as exc:  # a hostile PDF can break pypdf in any way
            log.info("unreadable PDF at %s: %s: %s", response.url, type(exc).__name__, exc)
            raise UnsupportedContentError(
                f"the PDF at {response.url} could not be read: {exc}",
                user_message="This PDF could not be read.",
            ) from None
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
