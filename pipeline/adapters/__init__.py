"""Retrieval entry points: a URL in, an ``Evidence`` out.

- ``fetch_evidence(url, settings, fetcher) -> Evidence``: the adapter is chosen from the URL's
  parsed host (``arxiv.org`` -> ``ArxivAdapter``, ``github.com`` repository paths ->
  ``GitHubAdapter``, anything else -> ``WebPageAdapter``, which hands PDF responses to
  ``PdfAdapter``). Raises only ``pipeline.errors`` (network, HTTP status, SSRF, content type);
  returns ``coverage=failed`` when the source answered but had nothing readable.
- ``fetch_text_for_tool(url, settings, fetcher, max_chars) -> (title, text)``: the same path,
  flattened to text, for Stage A's ``fetch_url`` tool.

Every request goes through the given ``SafeFetcher`` (SSRF checks, caps, timeouts).
"""

from __future__ import annotations

from pipeline.adapters.arxiv import ArxivAdapter
from pipeline.adapters.github import GitHubAdapter
from pipeline.adapters.pdf import PdfAdapter
from pipeline.adapters.webpage import WebPageAdapter
from pipeline.fetch import SafeFetcher
from pipeline.links import arxiv_id_from_url, github_repo_from_url, normalize_url
from pipeline.models import Evidence
from pipeline.settings import Settings

Adapter = ArxivAdapter | GitHubAdapter | WebPageAdapter | PdfAdapter

__all__ = [
    "ArxivAdapter",
    "GitHubAdapter",
    "PdfAdapter",
    "WebPageAdapter",
    "adapter_for",
    "fetch_evidence",
    "fetch_text_for_tool",
]


def adapter_for(url: str, settings: Settings, fetcher: SafeFetcher) -> Adapter:
    """The adapter for a URL, decided from its parsed host and path (never a substring)."""
    if arxiv_id_from_url(url):
        return ArxivAdapter(settings, fetcher)
    if github_repo_from_url(url):
        return GitHubAdapter(settings, fetcher)
    return WebPageAdapter(settings, fetcher)


def fetch_evidence(url: str, settings: Settings, fetcher: SafeFetcher) -> Evidence:
    """Read one link into Evidence (sources, numbered snippets, coverage)."""
    url = normalize_url(url)
    return adapter_for(url, settings, fetcher).read(url)


def fetch_text_for_tool(
    url: str, settings: Settings, fetcher: SafeFetcher, max_chars: int
) -> tuple[str | None, str]:
    """``(title, text)`` of a link for a model tool call, at most ``max_chars`` of text.

    The text is the evidence's snippets in order (``[S1] ...`` lines are not added: the tool's
    caller numbers what it keeps). Errors are the same as ``fetch_evidence``'s.
    """
    evidence = fetch_evidence(url, settings, fetcher)
    text = evidence.text()
    if len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        text = text[: cut if cut > max_chars // 2 else max_chars].rstrip() + " …"
    return evidence.title, text
