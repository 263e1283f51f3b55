"""Per-element rules of the main-text reading: what is never content, and class weights.

The word lists are Readability's (class and id values that mark comments, sidebars, ads...
as unlikely, or articles and posts as likely). Matching lower-cases the value and uses a
case-sensitive alternation: several times faster than ``re.IGNORECASE`` on the very long class
attributes some sites generate. Results per value are cached: values repeat within a site.
"""

from __future__ import annotations

import re
from functools import lru_cache

from selectolax.lexbor import LexborNode

from pipeline.extract_style import HIDDEN, LIGHT_TEXT, style_visibility

# Removal flags: the strictest reading uses all three.
STRIP_UNLIKELY, WEIGHT_CLASSES, CLEAN_CONDITIONALLY = 1, 2, 4

# Never content: paragraphs inside these are not scored, and they are cut from the result.
SKIP_TAGS = frozenset(
    {"nav", "aside", "footer", "header", "button", "input", "select", "textarea", "dialog",
     "iframe", "object", "embed", "svg", "canvas", "menu", "link", "meta"}
)  # fmt: skip
_NEVER_UNLIKELY = frozenset({"html", "body", "a", "article", "main"})
_UNLIKELY_ROLES = {"menu", "menubar", "complementary", "navigation", "alert", "alertdialog",
                   "dialog"}  # fmt: skip
# Class/id words (Readability's lists), matched against the lower-cased value.
_UNLIKELY_WORDS = (
    "-ad-", "ai2html", "banner", "breadcrumbs", "combx", "comment", "community", "cover-wrap",
    "disqus", "extra", "footer", "gdpr", "header", "legends", "menu", "related", "remark",
    "replies", "rss", "shoutbox", "sidebar", "skyscraper", "social", "sponsor", "supplemental",
    "ad-break", "agegate", "pagination", "pager", "popup", "yom-remote",
)  # fmt: skip
_MAYBE_WORDS = ("and", "article", "body", "column", "content", "main", "mathjax", "shadow")
_POSITIVE_WORDS = ("article", "body", "content", "entry", "hentry", "h-entry", "main", "page",
                   "pagination", "post", "text", "blog", "story")  # fmt: skip
_NEGATIVE_WORDS = (
    "-ad-", "hidden", "banner", "combx", "comment", "com-", "contact", "footer", "gdpr",
    "masthead", "media", "meta", "outbrain", "promo", "related", "scroll", "share", "shoutbox",
    "sidebar", "skyscraper", "sponsor", "shopping", "tags", "widget",
)  # fmt: skip


def _words(words: tuple[str, ...], extra: str = "") -> re.Pattern[str]:
    return re.compile("|".join([*map(re.escape, words), *([extra] if extra else [])]))


_UNLIKELY, _MAYBE = _words(_UNLIKELY_WORDS), _words(_MAYBE_WORDS)
_POSITIVE, _NEGATIVE = _words(_POSITIVE_WORDS), _words(_NEGATIVE_WORDS, r"(?:^|\s)hid(?:\s|$)")
SHARE = re.compile(r"(\b|_)(share|sharedaddy)(\b|_)", re.IGNORECASE)
_NEVER, _PLAIN = (True, 0), (False, 0)  # (never content, class weight)


@lru_cache(maxsize=4096)
def _value_weight(value: str) -> int:
    value = value.lower()
    return (25 if _POSITIVE.search(value) else 0) - (25 if _NEGATIVE.search(value) else 0)


@lru_cache(maxsize=4096)
def _looks_unlikely(class_and_id: str) -> bool:
    value = class_and_id.lower()
    return bool(_UNLIKELY.search(value)) and not _MAYBE.search(value)


def is_hidden(attrs: dict[str, str | None]) -> bool:
    """Hidden whatever the ancestors: the ``hidden`` attribute, ``aria-hidden``, or an inline
    style that hides it (``pipeline.extract_style``). White-ish text is decided by the reading,
    which knows the ancestors' backgrounds (``light_text``)."""
    if "hidden" in attrs or (attrs.get("aria-hidden") or "").strip().lower() == "true":
        return True
    style = attrs.get("style")
    return style_visibility(style) == HIDDEN if style else False


def light_text(attrs: dict[str, str | None]) -> bool:
    """White-ish text without a background of its own: hidden on a light page."""
    style = attrs.get("style")
    return style_visibility(style) == LIGHT_TEXT if style else False


def has_ancestor(node: LexborNode, tags: set[str], depth: int = 0) -> bool:
    parent, level = node.parent, 0
    while parent is not None and (depth <= 0 or level < depth):
        if parent.tag in tags:
            return True
        parent, level = parent.parent, level + 1
    return False


def judge(node: LexborNode, flags: int) -> tuple[bool, int]:
    """(is this element itself never content, its class weight) under the removal ``flags``."""
    tag = node.tag or ""
    if tag in SKIP_TAGS:
        return _NEVER
    if not len(node.attrs):
        return _PLAIN
    a = node.attributes
    role = a.get("role")
    if is_hidden(a) or (role and role.strip().lower() in _UNLIKELY_ROLES):
        return _NEVER
    cls, ident = a.get("class") or "", a.get("id") or ""
    if not (cls or ident):
        return _PLAIN
    if (
        flags & STRIP_UNLIKELY
        and tag not in _NEVER_UNLIKELY
        and _looks_unlikely(f"{cls} {ident}")
        and not has_ancestor(node, {"table", "code"}, 3)
    ):
        return _NEVER
    if not flags & WEIGHT_CLASSES:
        return _PLAIN
    return False, (_value_weight(cls) if cls else 0) + (_value_weight(ident) if ident else 0)
