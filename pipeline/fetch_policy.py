"""What the fetcher accepts: the content-type allowlist and the HTTP status -> error mapping.

Allowed: HTML/XHTML, plain text, Markdown, reStructuredText, JSON (and ``+json``), Atom/RSS/XML
(and ``+xml``), GitHub's raw README type, and PDF (by type or by its ``%PDF-`` magic). Anything
else is an ``UnsupportedContentError`` with a reason that names the type.
"""

from __future__ import annotations

import email.utils
import time

import httpx

from pipeline.errors import (
    SourceUnavailableError,
    UnsupportedContentError,
    UpstreamRateLimited,
    UpstreamServerError,
)

TEXT_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "text/plain",
        "text/markdown",
        "text/x-markdown",
        "text/x-rst",
        "application/json",
        "application/atom+xml",
        "application/rss+xml",
        "application/xml",
        "text/xml",
        "application/vnd.github.raw",
    }
)
PDF_TYPE = "application/pdf"


def parse_media_type(header: str | None) -> tuple[str, str | None]:
    """``"text/html; charset=UTF-8"`` -> ``("text/html", "utf-8")``."""
    if not header:
        return "", None
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'").lower()
    return media.strip().lower(), charset


def is_text_type(media: str) -> bool:
    return media in TEXT_TYPES or media.endswith(("+json", "+xml"))


def effective_media_type(media: str, first: bytes, url: str) -> str:
    """Allowlist check, sniffing PDFs and untyped bodies. Raises UnsupportedContentError."""
    if media == PDF_TYPE or first.lstrip()[:5] == b"%PDF-":
        return PDF_TYPE
    if is_text_type(media):
        return media
    if not media:
        head = first.lstrip()[:1]
        if head == b"<":
            return "text/html"
        if first and b"\x00" not in first[:1024]:
            return "text/plain"
    kind = media or "binary content without a type"
    raise UnsupportedContentError(
        f"unsupported content type {kind!r} at {url}: only HTML, text, Markdown, JSON, "
        "Atom/XML and PDF are read",
        user_message=f"This link serves {kind}, which the bot cannot read.",
    )


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value:
        if value.strip().isdigit():
            return float(value.strip())
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is not None:
            return max(0.0, parsed.timestamp() - time.time())
    reset = headers.get("x-ratelimit-reset")
    if reset and reset.strip().isdigit():
        return max(0.0, float(reset) - time.time())
    return None


def raise_for_status(status: int, headers: httpx.Headers, url: str) -> None:
    """Map an HTTP error status to the error tree (2xx returns)."""
    if 200 <= status < 300:
        return
    if status == 429 or (
        status == 403 and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)
    ):
        raise UpstreamRateLimited(f"HTTP {status} from {url}", retry_after=_retry_after(headers))
    if status >= 500:
        raise UpstreamServerError(f"HTTP {status} from {url}", retry_after=_retry_after(headers))
    raise SourceUnavailableError(f"HTTP {status} from {url}")
