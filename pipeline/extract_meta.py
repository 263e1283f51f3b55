"""Page metadata from ``<head>``: title, authors, site name, dates, language, description.

Sources, most trusted first: JSON-LD of an article type (schema.org), ``citation_*`` tags
(scholarly pages), Dublin Core, Open Graph / ``article:``, ``twitter:``, Parse.ly, and last the
``<title>`` element cleaned of site-name suffixes. The title rules follow the ones Mozilla's
Readability documents (site suffix after `` | `` / `` - `` dropped only when enough words remain,
``Part: Title`` reduced to the part after the colon), so titles agree with what a reader view shows.
Nothing is invented: a field no source gives stays ``None``.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

from selectolax.lexbor import LexborHTMLParser

_JSONLD_ARTICLE = re.compile(
    r"^Article|AdvertiserContentArticle|NewsArticle|AnalysisNewsArticle|AskPublicNewsArticle|"
    r"BackgroundNewsArticle|OpinionNewsArticle|ReportageNewsArticle|ReviewNewsArticle|Report|"
    r"SatiricalArticle|ScholarlyArticle|MedicalScholarlyArticle|SocialMediaPosting|BlogPosting|"
    r"LiveBlogPosting|DiscussionForumPosting|TechArticle|APIReference$"
)
_SCHEMA_ORG = re.compile(r"^https?://schema\.org/?$")
_PROPERTY_KEY = re.compile(
    r"\s*(article|dc|dcterm|og|twitter)\s*:\s*"
    r"(author|creator|description|published_time|modified_time|title|site_name|locale|url)\s*"
)  # matched against the lower-cased attribute
_NAME_KEY = re.compile(
    r"^\s*(?:(dc|dcterm|og|twitter|parsely|weibo:(?:article|webpage))\s*[-.:]\s*)?"
    r"(author|creator|pub-date|description|title|site_name)\s*$"
)  # matched against the lower-cased attribute
_SEPARATORS = r"\|\-–—\\/>»"
_SEP_SPACED = re.compile(rf" [{_SEPARATORS}] ")
_HIERARCHICAL = re.compile(r" [\\/>»] ")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_LETTER = re.compile(r"[^\W\d_]")
_HEADINGS = 50  # first <h1>/<h2>s compared with a "Part: Title" title


@dataclass
class PageMeta:
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    site_name: str | None = None
    published: str | None = None
    modified: str | None = None
    language: str | None = None
    description: str | None = None
    canonical_url: str | None = None


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = html.unescape(value).strip()
    return value or None


def _word_count(text: str) -> int:
    return len(text.split())


def _similarity(a: str, b: str) -> float:
    tokens_a = {t for t in re.split(r"\W+", a.lower()) if t}
    tokens_b = [t for t in re.split(r"\W+", b.lower()) if t]
    if not tokens_a or not tokens_b:
        return 0.0
    unique_b = [t for t in tokens_b if t not in tokens_a]
    return 1 - len(" ".join(unique_b)) / len(" ".join(tokens_b))


def _meta_values(tree: LexborHTMLParser) -> tuple[dict[str, str], list[str]]:
    """``{normalised key: content}`` for the meta tags we read; ``citation_author`` repeats."""
    values: dict[str, str] = {}
    citation_authors: list[str] = []
    for node in tree.css("meta[content]"):  # not only <head>: broken markup moves them
        attrs = node.attributes
        content = (attrs.get("content") or "").strip()
        if not content:
            continue
        prop = (attrs.get("property") or "").lower()
        if ":" in prop:
            for m in _PROPERTY_KEY.finditer(prop):
                values.setdefault(f"{m.group(1)}:{m.group(2)}", content)
        name = (attrs.get("name") or attrs.get("itemprop") or "").strip().lower()
        if name == "citation_author":
            citation_authors.append(content)
        elif name.startswith("citation_") or name in {"language", "parsely-pub-date"}:
            values.setdefault(name, content)
        elif name and _NAME_KEY.match(name):
            key = re.sub(r"\s+", "", name).replace(".", ":")
            values.setdefault(key, content)
        equiv = (attrs.get("http-equiv") or "").lower()
        if equiv == "content-language":
            values.setdefault("content-language", content)
    return values, citation_authors


def _jsonld(tree: LexborHTMLParser) -> dict[str, Any] | None:
    """The first JSON-LD object of an article type, as Readability picks it."""
    for node in tree.css('script[type="application/ld+json"]'):
        raw = re.sub(r"^\s*<!\[CDATA\[|\]\]>\s*$", "", node.text(deep=True))
        try:
            parsed = json.loads(raw)
        except ValueError:
            continue
        if isinstance(parsed, list):
            parsed = next((it for it in parsed if _is_article(it)), None)
        if not isinstance(parsed, dict):
            continue
        context = parsed.get("@context")
        if isinstance(context, dict):
            context = context.get("@vocab")
        if not (isinstance(context, str) and _SCHEMA_ORG.match(context)):
            continue
        if "@type" not in parsed and isinstance(parsed.get("@graph"), list):
            parsed = next((it for it in parsed["@graph"] if _is_article(it)), None)
        if isinstance(parsed, dict) and _is_article(parsed):
            return parsed
    return None


def _is_article(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("@type"), str)
        and bool(_JSONLD_ARTICLE.search(item["@type"]))
    )


def _jsonld_authors(author: Any) -> list[str]:
    items = author if isinstance(author, list) else [author]
    names = []
    for item in items:
        name = _clean(item.get("name")) if isinstance(item, dict) else _clean(item)
        if name:
            names.append(name)
    return names


def title_from_title_tag(raw: str, headings: list[str]) -> str:
    """The article title hidden in a ``<title>``: site names after separators removed."""
    orig = re.sub(r"\s+", " ", raw).strip()
    cur = orig
    hierarchical = False
    if _SEP_SPACED.search(cur):
        hierarchical = bool(_HIERARCHICAL.search(cur))
        cur = re.sub(rf"(.*)[{_SEPARATORS}] .*", r"\1", orig)
        if _word_count(cur) < 3:
            cur = re.sub(rf"^[^{_SEPARATORS}]*[{_SEPARATORS}](.*)", r"\1", orig)
    elif ": " in cur and not any(h.strip() == cur for h in headings):
        cur = orig[orig.rfind(":") + 1 :]
        if _word_count(cur) < 3:
            cur = orig[orig.find(":") + 1 :]
        elif _word_count(orig[: orig.find(":")]) > 5:
            cur = orig
    cur = cur.strip()
    words = _word_count(cur)
    without_separators = re.sub(rf"[{_SEPARATORS}]+", "", orig)
    if words <= 4 and (not hierarchical or words != _word_count(without_separators) - 1):
        cur = orig
    return cur


def _title_tag_title(tree: LexborHTMLParser) -> str | None:
    node = tree.css_first("title")
    raw = node.text(deep=True) if node is not None else ""
    if not raw.strip():
        return None
    # Headings only matter for "Part: Title" titles. Capped: each heading's text() reads its
    # whole subtree, and nested headings would make that quadratic.
    headings = (
        [re.sub(r"\s+", " ", h.text(deep=True)).strip() for h in tree.css("h1, h2")[:_HEADINGS]]
        if ":" in raw
        else []
    )
    cur = title_from_title_tag(raw, headings)
    if len(cur) > 150 or len(cur) < 15:
        h1s = tree.css("h1")
        if len(h1s) == 1:
            cur = re.sub(r"\s+", " ", h1s[0].text(deep=True)).strip() or cur
    return cur or None


def script_language(text: str) -> str | None:
    """``zh``/``ja``/``ko`` when the text is mostly CJK; other scripts are not guessed."""
    sample = text[:4000]
    cjk = len(_CJK.findall(sample))
    kana = len(_KANA.findall(sample))
    hangul = len(_HANGUL.findall(sample))
    if not (cjk or kana or hangul):
        return None  # the common case, decided without counting letters
    letters = len(_LETTER.findall(sample))
    if hangul > letters * 0.3:
        return "ko"
    if kana > letters * 0.1:
        return "ja"
    if cjk > letters * 0.3:
        return "zh"
    return None


def _primary_language(tag: str | None) -> str | None:
    if not tag:
        return None
    primary = re.split(r"[-_]", tag.strip())[0].lower()
    return primary if re.fullmatch(r"[a-z]{2,3}", primary) else None


def extract_meta(tree: LexborHTMLParser) -> PageMeta:
    """Read every metadata source of a parsed page (call before the tree is cleaned)."""
    values, citation_authors = _meta_values(tree)
    ld = _jsonld(tree) or {}
    meta = PageMeta()

    ld_title = None
    name, headline = _clean(ld.get("name")), _clean(ld.get("headline"))
    if name and headline and name != headline:
        title_tag = _title_tag_title(tree) or ""
        name_ok = _similarity(name, title_tag) > 0.75
        headline_ok = _similarity(headline, title_tag) > 0.75
        ld_title = headline if headline_ok and not name_ok else name
    else:
        ld_title = name or headline
    meta.title = (
        ld_title
        or _first(values, "citation_title", "dc:title", "dcterm:title", "og:title")
        or _first(values, "weibo:article:title", "weibo:webpage:title", "title")
        or _first(values, "twitter:title", "parsely-title")
        or _title_tag_title(tree)
    )
    meta.authors = _jsonld_authors(ld.get("author")) or citation_authors
    if not meta.authors:
        byline = _first(values, "dc:creator", "dcterm:creator", "author", "parsely-author")
        meta.authors = [byline] if byline else []
    publisher = ld.get("publisher")
    meta.site_name = (
        _clean(publisher.get("name")) if isinstance(publisher, dict) else None
    ) or _first(values, "og:site_name", "citation_journal_title")
    meta.published = _clean(ld.get("datePublished")) or _first(
        values,
        "citation_publication_date",
        "citation_date",
        "article:published_time",
        "parsely-pub-date",
    )
    meta.modified = _clean(ld.get("dateModified")) or _first(values, "article:modified_time")
    meta.description = _clean(ld.get("description")) or _first(
        values, "dc:description", "dcterm:description", "og:description", "description"
    )
    meta.description = meta.description or _first(values, "twitter:description")
    html_node = tree.css_first("html")
    lang = html_node.attributes.get("lang") if html_node is not None else None
    meta.language = _primary_language(
        lang
        or values.get("content-language")
        or _clean(ld.get("inLanguage"))
        or values.get("citation_language")
        or values.get("og:locale")
        or values.get("language")
    )
    canonical = tree.css_first('link[rel="canonical"][href]')
    meta.canonical_url = (
        _clean(canonical.attributes.get("href")) if canonical is not None else None
    ) or values.get("og:url")
    return meta


def _first(values: dict[str, str], *keys: str) -> str | None:
    for key in keys:
        value = _clean(values.get(key))
        if value:
            return value
    return None
