"""The "For our themes" bullets of ``offline/extractive``: keyword evidence, never a guess.

A theme matches when the facts really speak about it, measured by its keywords and stack
entries found in the facts (whole words, plural allowed, case-insensitive; CJK as written):

- weight: a multi-word keyword, a stack entry (a named tool), an acronym written in capitals
  ("GPT", "ETL") or a CJK keyword of 3+ characters is specific (2); an ordinary word is
  generic (1);
- repetition: a keyword found in 2 facts counts 1.5 times, in 3 or more twice;
- title: a keyword found in the facts that is also in the source's title adds ``TITLE_BONUS``
  (the source is about it); the title itself, quoted in a fact, is no evidence;
- a theme matches on evidence that reinforces itself: two of its keywords in one fact, a
  specific keyword in two facts, ``BROAD_KEYWORDS`` different keywords, or a title keyword
  found in the facts. A generic word or two in passing, in unrelated sentences ("installation
  instructions", "input prompts"), is not a match. Matching themes are ranked by score.

Each matching theme gets one bullet quoting the fact that shows the most of its keywords
(preferring short sentences no other bullet quotes). Fewer than ``floor`` bullets are completed
with ONE ``**General**`` bullet (what the thing is); when no theme matches at all, a second
General bullet says so instead of forcing a weak match.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from pipeline.context import ProjectContext, Theme
from pipeline.offline_selection import Candidate, without_title

TITLE_BONUS = 2.0
BROAD_KEYWORDS = 3  # this many different keywords are evidence even in separate facts
MAX_THEME_BULLETS = 4
QUOTE_MAX_CHARS = 200
MAX_WEAK_SHOWN = 2
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    if _CJK.search(keyword):
        return re.compile(re.escape(keyword))
    # A hyphen is a word boundary: "pure-Python" and "node-celery" name Python and Celery.
    return re.compile(rf"(?<!\w){re.escape(keyword)}(?:s|es)?(?!\w)", re.I)


def keyword_weight(keyword: str, is_stack: bool, texts: list[str]) -> float:
    """2 for a specific keyword: a stack entry, several words, 3+ CJK characters, or an acronym
    (written in capitals in the facts: "GPT", "LLM", "ETL"); 1 for an ordinary word."""
    cjk = len(_CJK.findall(keyword))
    words = len(re.split(r"[\s-]+", keyword.strip()))
    acronym = re.compile(rf"(?<!\w){re.escape(keyword.upper())}s?(?!\w)")
    specific = (
        is_stack
        or cjk >= 3
        or (not cjk and words > 1)
        or (keyword.isalnum() and not cjk and any(acronym.search(t) for t in texts))
    )
    return 2.0 if specific else 1.0


def _repetition(n: int) -> float:
    return 1.0 if n <= 1 else 1.5 if n == 2 else 2.0


@dataclass
class ThemeMatch:
    theme: Theme
    order: int  # the theme's place in the team context (ties)
    hits: dict[str, list[Candidate]]  # keyword -> the facts that contain it
    weights: dict[str, float]
    in_title: set[str]

    @property
    def score(self) -> float:
        found = sum(self.weights[k] * _repetition(len(cs)) for k, cs in self.hits.items())
        return found + TITLE_BONUS * len(self.in_title)

    @property
    def matches(self) -> bool:
        per_fact = Counter(c.position for cs in self.hits.values() for c in cs)
        together = any(n >= 2 for n in per_fact.values())
        specific_twice = any(self.weights[k] >= 2 and len(cs) >= 2 for k, cs in self.hits.items())
        broad = len(self.hits) >= BROAD_KEYWORDS
        return together or specific_twice or broad or bool(self.in_title)

    def shown_keywords(self, limit: int = 3) -> list[str]:
        ranked = sorted(self.hits, key=lambda k: (-self.weights[k], -len(self.hits[k]), k))
        return ranked[:limit]


def theme_matches(
    found: list[Candidate], context: ProjectContext | None, title: str
) -> list[ThemeMatch]:
    """Every theme with at least one keyword in the facts, best first."""
    out = []
    for order, theme in enumerate(context.themes if context else []):
        stack = {s.lower() for s in theme.stack}
        hits: dict[str, list[Candidate]] = {}
        weights: dict[str, float] = {}
        in_title: set[str] = set()
        for keyword in dict.fromkeys([*theme.keywords, *theme.stack]):
            key = keyword.lower()
            if key in hits:
                continue
            pattern = keyword_pattern(keyword)
            matched = [c for c in found if pattern.search(without_title(c.text, title))]
            if matched:  # in the text itself: the title alone is no evidence
                hits[key] = matched
                weights[key] = keyword_weight(keyword, key in stack, [c.text for c in matched])
                if pattern.search(title):
                    in_title.add(key)
        if hits:
            out.append(ThemeMatch(theme, order, hits, weights, in_title))
    return sorted(out, key=lambda m: (-m.score, m.order))


def _quote(match: ThemeMatch, quoted: set[int]) -> Candidate:
    per_fact: dict[int, float] = {}
    by_position: dict[int, Candidate] = {}
    for keyword, facts in match.hits.items():
        for c in facts:
            per_fact[c.position] = per_fact.get(c.position, 0.0) + match.weights[keyword]
            by_position[c.position] = c
    return min(
        by_position.values(),
        key=lambda c: (
            c.position in quoted,  # a fact no other bullet quotes
            len(c.text) > QUOTE_MAX_CHARS,  # short enough to read in a bullet
            not c.sentence,
            -(2 * per_fact[c.position] + c.score),  # shows the theme, and says something
            c.position,
        ),
    )


def _what_it_is(
    found: list[Candidate], tldr: list[Candidate], quoted: set[int]
) -> Candidate | None:
    """The fact saying what the thing is, that no bullet quotes yet: a definition, else the
    first TL;DR item left, else the best fact left."""
    definitions = [c for c in found if c.defines and c.position not in quoted]
    if definitions:
        return max(definitions, key=lambda c: (c.score, -c.position))
    for c in tldr:
        if c.position not in quoted:
            return c
    rest = [c for c in found if c.position not in quoted]
    return max(rest, key=lambda c: (c.score, -c.position), default=None)


def _no_match_note(matches: list[ThemeMatch]) -> str:
    weak = [m for m in matches if m.hits][:MAX_WEAK_SHOWN]
    if not weak:
        return "none of the team's themes is mentioned in this source."
    signals = "; ".join(f"{', '.join(m.shown_keywords(2))} ({m.theme.name})" for m in weak)
    return f"no team theme clearly matches this source (only passing mentions: {signals})."


def project_bullets(
    found: list[Candidate],
    tldr: list[Candidate],
    context: ProjectContext | None,
    title: str,
    floor: int,
    ceiling: int,
) -> tuple[list[str], list[str]]:
    """(bullets, tags): one bullet per matching theme, completed up to ``floor``."""
    matches = theme_matches(found, context, title)
    accepted = [m for m in matches if m.matches][: min(ceiling, MAX_THEME_BULLETS)]
    bullets: list[str] = []
    quoted: set[int] = set()
    keyword_weight_total: Counter[str] = Counter()
    for match in accepted:
        quote = _quote(match, quoted)
        quoted.add(quote.position)
        shown = ", ".join(match.shown_keywords())
        bullets.append(f"**{match.theme.name}** — matches {shown}: “{quote.text}”")
        keyword_weight_total.update({k: match.weights[k] * len(cs) for k, cs in match.hits.items()})
    if len(bullets) < floor and (general := _what_it_is(found, tldr, quoted)) is not None:
        quoted.add(general.position)
        bullets.append(f"**General** — “{general.text}”")
    if not accepted and len(bullets) < floor:
        bullets.append(f"**General** — {_no_match_note(matches)}")
    for c in sorted(found, key=lambda c: (-c.score, c.position)):  # a floor above the default
        if len(bullets) >= floor:
            break
        if c.position not in quoted:
            quoted.add(c.position)
            bullets.append(f"**General** — “{c.text}”")
    tags = [k for k, _ in sorted(keyword_weight_total.items(), key=lambda kv: (-kv[1], kv[0]))]
    return bullets, tags
