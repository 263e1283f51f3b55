"""arXiv links (abs/pdf/html, old and new identifiers) read through the export API (Atom).

Only the abstract is read, so coverage is always ``partial`` ("abstract only"); its TeX text
formatting (emphasis commands, accents) is rendered as plain text, math kept. The record's
fields (title, authors, dates, categories, comment, journal reference) follow the abstract as
plain sentences (``pipeline.adapters.metadata``), so facts can cite them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: S405 - DTDs are refused before parsing, see _parse
from urllib.parse import quote

from pipeline.adapters.base import Passage, build_snippets, make_evidence
from pipeline.adapters.metadata import arxiv_sentences, metadata_text, plain
from pipeline.errors import SourceUnavailableError, UnsupportedContentError
from pipeline.fetch import SafeFetcher
from pipeline.links import arxiv_id_from_url
from pipeline.models import Coverage, Evidence, ReadKind, Source
from pipeline.settings import Settings

_NS = {"atom": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom"}
_VERSION = re.compile(r"v(\d+)$")


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


class ArxivAdapter:
    name = "ArxivAdapter"

    def __init__(self, settings: Settings, fetcher: SafeFetcher) -> None:
        self.settings = settings
        self.fetcher = fetcher

    def read(self, url: str) -> Evidence:
        arxiv_id = arxiv_id_from_url(url)
        if not arxiv_id:
            raise UnsupportedContentError(f"no arXiv identifier in {url}")
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
        snippets, truncated = build_snippets(
            [Passage(abstract, "Abstract")] if abstract else [],
            self.settings,
            metadata=metadata_text(arxiv_sentences(source)),
        )
        return make_evidence(
            url,
            self.name,
            source,
            snippets,
            read=ReadKind.abstract if abstract else ReadKind.metadata_only,
            coverage=Coverage.partial if abstract else Coverage.metadata_only,
            reason="abstract only" if abstract else "no abstract in the arXiv record",
            truncated=truncated,
        )
