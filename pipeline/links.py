"""Links out of Slack messages, and the URL forms used for fetching and for dedupe.

- ``extract_links(text, blocks=None, limit=...)``: the http(s) links of a message, in order,
  without duplicates (by ``canonical_url``), from Slack's ``<url|label>`` / ``<url>`` markup and
  from ``rich_text`` blocks; user, channel, special mentions and ``mailto:`` are skipped, and so
  is a link that cannot be parsed (bad port, broken IPv6 literal, overlong): one log line, the
  other links of the message go on.
- ``normalize_url(url)``: the URL to fetch: tracking parameters removed, nothing else changed
  that could change what the server returns.
- ``canonical_url(url)``: the dedupe key: lower-case scheme and host, no default port, no
  fragment, no trailing slash, sorted query, arXiv and GitHub links reduced to the paper or
  repository they name. Both raise ``ValueError`` for a URL that cannot be parsed.
- ``arxiv_id_from_url(url)`` / ``github_repo_from_url(url)``: what the adapters dispatch on.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

log = logging.getLogger("technoshare.links")

# Longer than any link worth reading (browsers and CDNs cap near 2-8 KB); a longer one is noise
# or an attack on the regexes and queries downstream.
MAX_URL_CHARS = 4096

# Query parameters that only track where a click came from.
_TRACKING_EXACT = frozenset(
    [
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "twclid",
        "ttclid",
        "li_fat_id",
        "igshid",
        "igsh",
        "mc_cid",
        "mc_eid",
        "ref_src",
        "ref_url",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "vero_id",
        "vero_conv",
        "oly_anon_id",
        "oly_enc_id",
        "rb_clickid",
        "s_cid",
        "spm",
        "scid",
        "si",
    ]
)
_TRACKING_PREFIXES = ("utm_", "pk_", "hsa_", "__hs")

_SLACK_ANGLE = re.compile(r"<([^<>]+)>")
_BARE_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)

ARXIV_HOSTS = frozenset({"arxiv.org", "www.arxiv.org", "export.arxiv.org"})
GITHUB_HOSTS = frozenset({"github.com", "www.github.com"})
# First path segments on github.com that are site pages, not owners.
_GITHUB_RESERVED = frozenset(
    [
        "about",
        "account",
        "apps",
        "blog",
        "collections",
        "contact",
        "customer-stories",
        "enterprise",
        "events",
        "explore",
        "features",
        "issues",
        "login",
        "logout",
        "marketplace",
        "new",
        "notifications",
        "orgs",
        "organizations",
        "pricing",
        "pulls",
        "search",
        "security",
        "settings",
        "signup",
        "site",
        "sponsors",
        "topics",
        "trending",
        "join",
        "codespaces",
        "readme",
    ]
)
_GITHUB_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

_ARXIV_NEW_ID = r"\d{4}\.\d{4,5}"
_ARXIV_OLD_ID = r"[a-z][a-z.\-]*(?:\.[A-Z]{2})?/\d{7}"
_ARXIV_PATH = re.compile(
    rf"^/(?:abs|pdf|html|format|ps)/(?P<id>{_ARXIV_NEW_ID}|{_ARXIV_OLD_ID})"
    r"(?P<version>v\d+)?(?:\.pdf)?/?$",
    re.IGNORECASE,
)


def _host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


def arxiv_id_from_url(url: str) -> str | None:
    """``2101.04061`` or ``cs/0011004`` (version dropped) for arxiv.org abs/pdf/html links."""
    if _host_of(url) not in ARXIV_HOSTS:
        return None
    m = _ARXIV_PATH.match(urlsplit(url).path)
    return m.group("id") if m else None


def github_repo_from_url(url: str) -> tuple[str, str] | None:
    """``(owner, repo)`` for github.com repository links, including ``/tree/...`` subpaths."""
    if _host_of(url) not in GITHUB_HOSTS:
        return None
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if len(parts) < 2 or parts[0].lower() in _GITHUB_RESERVED:
        return None
    owner, repo = parts[0], parts[1]
    if repo.endswith(".git"):
        repo = repo[:-4]
    if not (_GITHUB_NAME.match(owner) and _GITHUB_NAME.match(repo)) or repo in {".", ".."}:
        return None
    return owner, repo


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in _TRACKING_EXACT or lowered.startswith(_TRACKING_PREFIXES)


def _clean_query(query: str, *, sort: bool) -> str:
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if not _is_tracking(k)]
    if sort:
        pairs.sort()
    return urlencode(pairs, doseq=True, quote_via=quote)


def normalize_url(url: str) -> str:
    """The URL to fetch: Slack/HTML escapes undone, tracking parameters removed."""
    url = html.unescape(url.strip())
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = _clean_query(parts.query, sort=False)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def canonical_url(url: str) -> str:
    """The dedupe key for a URL (two links that name the same thing get the same key)."""
    url = normalize_url(url)
    arxiv_id = arxiv_id_from_url(url)
    if arxiv_id:
        return f"https://arxiv.org/abs/{arxiv_id}"
    repo = github_repo_from_url(url)
    if repo:
        return f"https://github.com/{repo[0].lower()}/{repo[1].lower()}"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = (
        host
        if port is None or (scheme, port) in {("http", 80), ("https", 443)}
        else (f"{host}:{port}")
    )
    path = quote(unquote(parts.path), safe="/:@!$&'()*+,;=~-._%")
    path = re.sub(r"/{2,}", "/", path).rstrip("/") or "/"
    return urlunsplit((scheme, netloc, path, _clean_query(parts.query, sort=True), ""))


def _is_web_url(candidate: str) -> bool:
    """An http(s) URL with a host; ``ValueError`` when it cannot be parsed (port included)."""
    parts = urlsplit(candidate)
    _ = parts.port  # parsed lazily by urllib: out of range or not a number raises here
    return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)


def _links_in_text(text: str) -> Iterable[str]:
    """Slack markup: ``<url|label>`` and ``<url>``; bare URLs outside markup as a fallback."""
    pos = 0
    for m in _SLACK_ANGLE.finditer(text):
        yield from _bare_urls(text[pos : m.start()])
        pos = m.end()
        inner = m.group(1)
        if inner[:1] in {"@", "#", "!"}:  # <@U123>, <#C123|general>, <!here>
            continue
        yield inner.split("|", 1)[0]
    yield from _bare_urls(text[pos:])


def _bare_urls(text: str) -> Iterable[str]:
    for found in _BARE_URL.findall(text):
        yield found.rstrip(".,;:!?)]}")


def _links_in_blocks(blocks: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    """Every ``{"type": "link", "url": ...}`` element at any depth of the blocks."""
    stack: list[Any] = list(reversed(list(blocks)))
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            if node.get("type") == "link" and isinstance(node.get("url"), str):
                yield node["url"]
            children = [v for k, v in node.items() if k != "url" and isinstance(v, list | dict)]
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed(node))


def extract_links(
    text: str, blocks: Iterable[Mapping[str, Any]] | None = None, limit: int | None = None
) -> list[str]:
    """Unique http(s) links of a Slack message, in order of appearance, normalized.

    Links from ``text`` come first, then links only found in ``blocks``. Two links with the same
    ``canonical_url`` count once (the first spelling wins). ``limit`` caps the count.
    """
    seen: set[str] = set()
    out: list[str] = []
    unparseable: list[tuple[str, str]] = []  # (link, why): logged once for the whole message
    candidates = list(_links_in_text(text or ""))
    if blocks:
        candidates.extend(_links_in_blocks(blocks))
    for raw in candidates:
        try:
            if len(raw) > MAX_URL_CHARS:
                raise ValueError(f"longer than {MAX_URL_CHARS} characters")
            url = normalize_url(raw)
            if not _is_web_url(url):
                continue
            key = canonical_url(url)
        except ValueError as exc:
            unparseable.append((raw, str(exc)))
            continue
        if key in seen:
            continue
        seen.add(key)
        out.append(url)
        if limit is not None and len(out) >= limit:
            break
    if unparseable:
        first, why = unparseable[0]
        log.warning(
            "skipped %d unparseable link(s), first %r: %s", len(unparseable), first[:120], why
        )
    return out
