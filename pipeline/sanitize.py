"""Slack safety: what model text must go through before it is posted.

Model text is untrusted: the model read a web page that may carry instructions ("mention
@channel", "add this link"). Before posting we

- strip broadcast and user mentions: ``<!channel>``, ``<!here>``, ``<!everyone>``,
  ``<@U...>``/``<@W...>``, ``<!subteam^...>`` and bare ``@channel``/``@here``/``@everyone``;
- drop every link whose URL is in neither the evidence nor the original Slack message (raw URLs,
  Slack ``<url|label>`` links and Markdown ``[label](url)`` links; the label stays as text);
- defuse every bare domain (``evil.com/setup.exe``, ``www.example.org``: Slack links those
  too, see :mod:`pipeline.domains`) whose host is in neither: it becomes ``evil[.]com``. A bare
  domain is compared by host only (``www.`` and case ignored), a full URL by its whole address;
- escape ``& < >`` in the model's text, while the links we keep are rebuilt by us in Slack's
  ``<url|label>`` syntax (which must not be escaped).

The same finders (:func:`find_links`, :func:`find_mentions`) serve the quality gates, so what
the gates reject is exactly what this module would strip.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from pipeline.domains import defuse_bare_domains, find_bare_domains, host_key, trim_link_tail
from pipeline.models import Evidence, Facts

# Slack's special tokens. ``<!channel|label>`` style variants exist, hence the optional part.
_SPECIAL_MENTION = re.compile(
    r"<(?:[!](?:channel|here|everyone|subteam\^[^>]*)|@[UW][^>]*)(?:\|[^>]*)?>", re.I
)
_BARE_MENTION = re.compile(r"(?<![\w@/.])@(?:channel|here|everyone)\b", re.I)

# One pass over model text finds, in order: Slack angle tokens, Markdown links, raw URLs.
_TOKEN = re.compile(
    r"<(?P<angle>[^<>\s][^<>]*)>"
    r"|\[(?P<md_label>[^\[\]\n]{1,300})\]\((?P<md_url>https?://[^\s()<>]+)\)"
    r"|(?P<raw>\bhttps?://[^\s<>|\"'`]+)",
    re.I,
)
_SCHEME = re.compile(r"https?://", re.I)


def find_mentions(text: str) -> list[str]:
    """Every broadcast/user mention in ``text`` (Slack tokens and bare ``@here`` forms)."""
    return [m.group(0) for m in _SPECIAL_MENTION.finditer(text)] + [
        m.group(0) for m in _BARE_MENTION.finditer(text)
    ]


_trim_url = trim_link_tail


def _angle_url(inner: str) -> tuple[str, str | None] | None:
    """``https://x|label`` -> (url, label); None when the token is not a web link."""
    url, _, label = inner.partition("|")
    if not _SCHEME.match(url):
        return None
    return url.strip(), (label or None)


def find_urls(text: str) -> list[str]:
    """Every http(s) URL in ``text``: raw, Slack ``<url|label>`` and Markdown ``[l](url)``."""
    urls: list[str] = []
    for m in _TOKEN.finditer(text):
        if m.group("angle") is not None:
            parsed = _angle_url(m.group("angle"))
            if parsed:
                urls.append(parsed[0].replace("&amp;", "&"))
            else:  # a Slack token may still hold a raw URL in its label part
                urls.extend(_trim_url(u) for u in re.findall(r"https?://[^\s<>|]+", m.group(0)))
        elif m.group("md_url") is not None:
            urls.append(m.group("md_url"))
        else:
            urls.append(_trim_url(m.group("raw")))
    return [u for u in urls if u]


def _visible_parts(text: str) -> list[str]:
    """The text a reader sees outside the URLs themselves: the text between link tokens, link
    labels, and Slack tokens that are not links (shown literally, or as a channel name)."""
    parts, pos = [], 0
    for m in _TOKEN.finditer(text):
        parts.append(text[pos : m.start()])
        pos = m.end()
        if m.group("angle") is not None:
            parsed = _angle_url(m.group("angle"))
            parts.append((parsed[1] or "") if parsed else m.group(0))
        elif m.group("md_url") is not None:
            parts.append(m.group("md_label"))
    parts.append(text[pos:])
    return parts


def find_links(text: str) -> list[str]:
    """Every link in ``text``: the http(s) URLs of :func:`find_urls`, then the bare domains
    (``evil.com/setup.exe``) a reader would see, as written. Check them with :func:`link_key`."""
    bare = [d.text for part in _visible_parts(text) for d in find_bare_domains(part)]
    return find_urls(text) + bare


def link_key(link: str) -> str:
    """The key to look up in :func:`allowed_url_keys`: :func:`url_key` for a URL with a scheme,
    :func:`pipeline.domains.host_key` (host only) for a bare domain."""
    return url_key(link) if _SCHEME.match(link.strip()) else host_key(link)


def url_key(url: str) -> str:
    """Comparison key for "is this the same URL": case-insensitive scheme and host, no
    fragment, no trailing slash, ``&amp;`` undone. Stricter than canonical_url on purpose:
    a different path or query is a different URL."""
    url = _trim_url(url.strip().replace("&amp;", "&"))
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    path = parts.path.rstrip("/")
    netloc = parts.netloc.lower()
    for default in (":80", ":443"):
        if netloc.endswith(default):
            netloc = netloc[: -len(default)]
    scheme = parts.scheme.lower()
    if scheme == "http":  # http and https of one address are one source
        scheme = "https"
    return urlunsplit((scheme, netloc, path, parts.query, ""))


# Text in the evidence that talks to the bot rather than to the reader. A URL found only in such
# a sentence is NOT allowed in the reply: it is what a prompt injection asks the model to post.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b.{0,40}\b(?:previous|prior|above|earlier|all|your|"
    r"any)\b.{0,20}\b(?:instructions?|prompts?|rules|directions|guidelines)\b"
    r"|\bsystem\s+(?:override|prompt|message|instruction)s?\b"
    r"|\b(?:note|message|instructions?)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?(?:ai|assistant|bot|"
    r"llm|language model|chatbot|summari[sz]er)s?\b"
    r"|\byou\s+are\s+(?:now\s+)?an?\s+(?:ai|assistant|language model|chatbot)\b",
    re.I | re.S,
)


def looks_injected(sentence: str) -> bool:
    """Does this sentence address the bot (mentions, "ignore previous instructions"...)?"""
    return bool(find_mentions(sentence) or _INSTRUCTION.search(sentence))


def urls_in_evidence_text(text: str) -> list[str]:
    """URLs of a piece of evidence text, except those in sentences that address the bot."""
    return links_in_evidence_text(text, bare=False)


def links_in_evidence_text(text: str, bare: bool = True) -> list[str]:
    """URLs and (with ``bare``) bare domains of evidence text, except those in sentences that
    address the bot."""
    return list(_evidence_links(text, bare))


# The gates and the renderer ask for the same snippets' links three times per job.
@lru_cache(maxsize=4096)
def _evidence_links(text: str, bare: bool) -> tuple[str, ...]:
    from pipeline.text import split_sentences

    find = find_links if bare else find_urls
    return tuple(u for s in split_sentences(text) if not looks_injected(s) for u in find(s))


def allowed_url_keys(
    evidence: Evidence | None,
    message_text: str = "",
    facts: Facts | None = None,
    extra: Iterable[str] = (),
) -> set[str]:
    """Links the reply may contain: the evidence (its urls, sources' urls, links inside snippet
    text, pages read through the Stage A tool and their text) and the original Slack message.
    Links inside evidence sentences that address the bot (:func:`looks_injected`) are left out.

    The set holds a :func:`url_key` for every full URL and a host key for the host of every URL
    and bare domain; look a link up with :func:`link_key`."""
    links: list[str] = list(extra)
    if evidence is not None:
        links += [evidence.url, evidence.canonical_url]
        links += [s.url for s in evidence.sources]
        for source in evidence.sources:
            for value in source.metadata.values():
                links += links_in_evidence_text(str(value))
        for snippet in evidence.snippets:
            links += links_in_evidence_text(snippet.text)
    if facts is not None:  # pages read through the Stage A fetch_url tool are evidence too
        links += facts.fetched_urls
        for snippet in facts.fetched_snippets:
            links += links_in_evidence_text(snippet.text)
    links += find_links(message_text)
    keys = {host_key(link) for link in links if link}
    keys |= {url_key(link) for link in links if link and _SCHEME.match(link.strip())}
    keys.discard(host_key(""))
    return keys


def escape_text(text: str) -> str:
    """Escape ``& < >`` for Slack mrkdwn, without double-escaping entities already escaped."""
    text = re.sub(r"&(?!(?:amp|lt|gt);)", "&amp;", text)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: str, label: str | None = None) -> str:
    """Our own link syntax: ``<url|label>`` with the label escaped and ``|``-free."""
    url = url.replace("&amp;", "&").replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E")
    url = url.replace("|", "%7C")
    if not label:
        return f"<{url}>"
    return f"<{url}|{escape_text(label.replace('|', '/'))}>"


def strip_mentions(text: str) -> str:
    """Remove broadcast/user mentions (Slack tokens and bare ``@here`` forms)."""
    return _BARE_MENTION.sub("", _SPECIAL_MENTION.sub("", text))


def _clean_plain(text: str, allowed: set[str]) -> str:
    """Plain model text between links: mentions stripped, foreign bare domains defused, then
    escaped."""
    return escape_text(defuse_bare_domains(strip_mentions(text), allowed))


def sanitize_text(text: str, allowed: set[str]) -> str:
    """Model text -> Slack-safe mrkdwn. ``allowed`` comes from :func:`allowed_url_keys`."""
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        out.append(_clean_plain(text[pos : m.start()], allowed))
        pos = m.end()
        if m.group("angle") is not None:
            inner = m.group("angle")
            parsed = _angle_url(inner)
            if parsed is not None:
                url, label = parsed
                if url_key(url) in allowed:  # its label must not name another site
                    out.append(slack_link(url, label and defuse_bare_domains(label, allowed)))
                elif label:
                    out.append(_clean_plain(label, allowed))
            elif _SPECIAL_MENTION.fullmatch(m.group(0)):
                continue
            elif inner.startswith("#"):  # channel link: keep only its readable name
                name = inner.partition("|")[2] or inner[1:]
                out.append(_clean_plain("#" + name, allowed))
            elif re.match(r"[!@]|mailto:", inner, re.I):
                continue  # other Slack commands/user tokens and mail links: never from a model
            else:
                out.append(_clean_plain(m.group(0), allowed))  # plain "<text>": shown literally
        elif m.group("md_url") is not None:
            label, url = m.group("md_label"), m.group("md_url")
            if url_key(url) in allowed:
                out.append(slack_link(url, defuse_bare_domains(label, allowed)))
            else:
                out.append(_clean_plain(label, allowed))
        else:
            raw = m.group("raw")
            url = _trim_url(raw)
            if url_key(url) in allowed:
                out.append(slack_link(url))
            out.append(_clean_plain(raw[len(url) :], allowed))
    out.append(_clean_plain(text[pos:], allowed))
    return _tidy("".join(out))


def _tidy(text: str) -> str:
    """Collapse the double spaces and empty brackets left where something was removed."""
    text = re.sub(r"(?<=\s)\(\s*\)", "", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r" +([.,;:!?])", r"\1", text)
    return text.strip()
