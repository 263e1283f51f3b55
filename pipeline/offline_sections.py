"""Section roles for the offline model's facts: a paper read in full says what was proposed, how,
what was measured and where it falls short, each in its own sections. Stage A's EVIDENCE block
names each snippet's section (``[S12] (section: 4 Experiments) ...``); the offline model then
makes sure its facts hold the best sentence of each role that the source has, a measured one
(with a number) for the results, before filling the rest by salience.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SECTION_PREFIX = re.compile(r"^\(section: (?P<name>[^)\n]{1,120})\) ")

# role -> section headings that hold it (numbering and case aside); in the order facts list them
ROLES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("proposal", re.compile(r"\b(abstract|introduction|overview|summary|contributions?)\b", re.I)),
    ("method", re.compile(r"\b(method(s|ology)?|approach|model|architecture|design|algorithms?|"
                          r"framework|implementation|system|background)\b", re.I)),
    ("results", re.compile(r"\b(experiments?|results?|evaluation|benchmarks?|performance|"
                           r"ablations?|analysis|measurements?|test suite)\b", re.I)),
    ("limits", re.compile(r"\b(limitations?|discussion|conclusions?|future work|threats|"
                          r"caveats|broader impact)\b", re.I)),
)  # fmt: skip
_NUMBER = re.compile(r"\d")


def section_line(section: str | None, text: str) -> str:
    """A snippet as Stage A sees it: its section named first, when it has one (not for the
    source's metadata or a page the tool fetched)."""
    if not section or section.startswith("fetch_url ") or section == "Source metadata":
        return text
    name = " ".join(section.replace(")", " ").split())[:120]
    return f"(section: {name}) {text}"


def split_section(text: str) -> tuple[str | None, str]:
    match = SECTION_PREFIX.match(text)
    return (match.group("name"), text[match.end() :]) if match else (None, text)


def role_of(section: str | None) -> str | None:
    if not section:
        return None
    for role, pattern in ROLES:
        if pattern.search(section):
            return role
    return None


def role_picks(candidates: Sequence, sections: dict[str, str | None]) -> list:
    """The best sentence of each role the source's sections cover (a results sentence with a
    number when there is one); nothing when the source has no such sections."""
    picks = []
    for role, _ in ROLES:
        pool = [
            c
            for c in candidates
            if c.sentence and not c.boilerplate and role_of(sections.get(c.source_id)) == role
        ]
        if role == "results":
            pool = [c for c in pool if _NUMBER.search(c.text)] or pool
        if pool:
            picks.append(max(pool, key=lambda c: (c.score, -c.position)))
    return picks
