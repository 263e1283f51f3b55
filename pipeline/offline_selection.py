"""Sentence selection for ``offline/extractive``: candidates, salience, TL;DR and summary.

Candidates are the units of the evidence (or of Stage A's facts) as ``pipeline.text`` splits
them: citable sentences (substantive prose that ends like a sentence, without URLs, markup or
code; near-duplicates dropped, exactly as the summary-length gate counts them), and, as a last
resort for the TL;DR and the theme bullets only, substantive units that do not end like a
sentence (changelog lines, list items). Code, tables, lists of names and run-ons never are.

Salience, all deterministic:

- centrality: the mean document frequency (log) of the sentence's content words, so sentences
  about what the whole text is about rank high, whatever their length;
- lead: early sentences (the abstract's opening, the README's first paragraph, the GitHub
  description, a news lead) count more, decaying with rank;
- definition: a sentence in the lead that says what the thing is or does ("X is a ...", "We
  propose ...", "This paper presents ...") counts more, and opens the TL;DR;
- size: 12-35 words is ideal, fewer than 8 or more than 45 words much less so;
- penalties: list items, boilerplate (sponsors, subscriptions, cookies, "read more").

The TL;DR is the most informative distinct sentences (the first says what it is, the others
follow in source order); the summary is the next best distinct sentences in source order, not
repeating the TL;DR unless the evidence is too thin to avoid it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from pipeline.near_duplicates import NearDuplicates
from pipeline.text import (
    LIST_BULLET,
    Unit,
    content_tokens,
    ends_sentence,
    is_citable,
    is_substantive,
    split_units,
    word_count,
)

MAX_TLDR_CHARS = 300
MAX_TLDR_WORDS = 45
IDEAL_WORDS = (8, 35)
LEAD_DECAY = 4.0  # the lead weight halves after this many candidates
LEAD_MIN = 8  # a definition counts within the first max(LEAD_MIN, n / 6) prose sentences
REDUNDANCY = 1.0  # weight of the overlap with sentences already chosen
WEIGHTS = {
    "centrality": 0.7,
    "lead": 1.2,
    "size": 0.5,
    "title": 0.3,
    "defines": 0.6,
    "boilerplate": -0.8,
    "listed": -0.4,
    "fragment": -0.5,
}
_URL_OR_MARKUP = re.compile(r"https?://|www\.|<[!@#/a-zA-Z]|\{\{|```", re.I)
_WE_DO = re.compile(
    r"^(?:(?:in|with) this (?:paper|work|article|post|note|study|report|thesis)\W+)?"
    r"(?:we|this (?:paper|work|article|post|note|study|report|thesis|project|library|tool|"
    r"package|repository|volume|book|guide|tutorial|document|page|release))\s+(?:\w+\s+){0,2}?"
    r"(?:present|propos|introduc|describ|develop|implement|releas|stud|investigat|show|provid|"
    r"contain|explain|discuss|analy[sz]|measur|compar|report|build|built|offer|give|is\b|are\b)",
    re.I,
)
_IS_A = re.compile(
    r"^(?P<subject>(?:\S+\s+){0,5}?\S+)\s+(?:is|are|was|est|ist|sind|sont|-|–|—|:)\s+"
    r"(?:a|an|the|one|un|une|le|la|l'|ein|eine|einen|der|die|das)\b",
    re.I,
)
_CJK_DEFINES = re.compile(r"^[^，。！？]{0,30}(?:是一[个款种套项]|介绍了|提出了|推出了|发布了)")
_BOILERPLATE = re.compile(
    r"\b(?:sponsor\w*|donat(?:e|ion)\w*|backers?|subscri(?:be|ption)\w*|newsletter|cookies?|"
    r"advertis\w*|sign up|log in|click here|follow us|all rights reserved|privacy policy|"
    r"terms of (?:use|service)|read more|continue reading|share this|commercial support|"
    r"in your inbox|code of conduct|credit is due|we (?:would like to )?thank|thanks to all|"
    r"head over to|check out the|refer to the)\b"
    r"|(?:^|[,;:(]\s*|please\s+)see (?:the )?(?-i:[A-Z])"  # a pointer: ", see Third Party..."
    r"|^For [^.]{1,100}, see [^.]{1,100}\.$",  # a hatnote
    re.I,
)
_QUOTE_START = re.compile(r"^[\"“„«‘']")
SPREAD_MIN_SOURCES = 24  # snippets from which a text is long enough to be spread over
SPREAD_SEGMENTS = 8
KEY_CUE_BONUS = 0.3
# What a method, result or limitation sentence says: a number, a measure, a comparison, a limit.
_KEY_CUE = re.compile(
    r"\d|%|\b(?:we (?:propose|present|use|train|evaluate|measure|find|show|observe)|"
    r"results?|outperform\w*|faster|slower|speed-?up|improv\w*|benchmark\w*|accura\w*|"
    r"limitations?|limited|however|future work|cannot|fails?)\b",
    re.I,
)


@dataclass
class Candidate:
    text: str
    source_id: str  # snippet id (stage A) or fact id (stage B)
    position: int
    sentence: bool = True  # citable: may go in the summary; False for a unit without an end
    listed: bool = False  # a list item, table cell or line
    words: int = 0
    tokens: frozenset[str] = field(default_factory=frozenset)
    topic: frozenset[str] = field(default_factory=frozenset)  # tokens not from the title
    boilerplate: bool = False  # an ad, a call to subscribe..., or in a block of them
    defines: bool = False  # says what the thing is or does, within the lead
    score: float = 0.0
    marked: str = ""  # the text with its list bullet, when the source has it so ("• item")

    @property
    def fact_text(self) -> str:
        """What a Stage A fact quotes: a list item keeps its bullet, so that the commentary
        stage, which sees only the facts, still knows it is a list item."""
        return self.marked or self.text

    @property
    def tldr_sized(self) -> bool:
        return len(self.text) <= MAX_TLDR_CHARS and self.words <= MAX_TLDR_WORDS


def _fragment_ok(text: str) -> bool:
    return (
        is_substantive(text)
        and not ends_sentence(text)
        and len(text) <= MAX_TLDR_CHARS
        and not _URL_OR_MARKUP.search(text)
    )


def _with_bullet(unit: Unit, text: str) -> str:
    marked = f"{LIST_BULLET} {unit.text}"
    return marked if unit.listed and marked in text else ""


def _fold(text: str) -> str:
    return text.casefold().replace("“", '"').replace("”", '"')


def without_title(text: str, title: str) -> str:
    """``text`` with the source's title taken out: restating the title (the reply's header)
    says nothing, so its words count neither for salience nor as theme evidence."""
    if len(title) < 8:
        return text
    folded, needle = _fold(text), _fold(title)
    at = folded.find(needle)
    return text if at < 0 else text[:at] + " " + text[at + len(needle) :]


def candidates(items: list[tuple[str, str]], title: str = "") -> list[Candidate]:
    """Candidates of ``items`` (id, text) in order, scored. A sentence repeating an earlier
    sentence is dropped (as ``pipeline.text.citable_sentences`` does); a fragment repeating any
    earlier candidate too. Every sentence of an item that is mostly boilerplate (two or more
    sentences of it, or half) is boilerplate: ads come in blocks."""
    found: list[Candidate] = []
    seen: set[str] = set()
    sentences_seen = NearDuplicates()  # the sentences kept so far
    all_seen = NearDuplicates()  # every candidate kept so far, fragments too
    for item_id, text in items:
        units = [u for u in split_units(text) if not u.code]
        ads = sum(1 for u in units if _BOILERPLATE.search(u.text))
        ad_block = ads >= 2 or (ads and 2 * ads >= len(units))
        for unit in units:
            key = unit.text.lower()
            if key in seen:
                continue
            sentence = is_citable(unit)
            if not sentence and not _fragment_ok(unit.text):
                continue
            own = frozenset(content_tokens(unit.text))
            # a fragment must not repeat any candidate: the sentences are among them
            if (all_seen if not sentence else sentences_seen).repeats(own):
                continue
            seen.add(key)
            all_seen.add(own)
            if sentence:
                sentences_seen.add(own)
            found.append(
                Candidate(
                    unit.text,
                    item_id,
                    len(found),
                    sentence=sentence,
                    listed=unit.listed,
                    words=word_count(unit.text),
                    tokens=own,
                    topic=frozenset(content_tokens(without_title(unit.text, title))),
                    boilerplate=bool(ad_block or _BOILERPLATE.search(unit.text)),
                    marked=_with_bullet(unit, text),
                )
            )
    _score(found, title)
    return found


def _size_preference(words: int) -> float:
    low, high = IDEAL_WORDS
    if words < low:
        return max(0.0, (words - 5) / (low - 5))
    return max(0.0, 1 - max(0, words - high) / 25)


def defines_subject(text: str, title_tokens: set[str]) -> bool:
    """Whether the sentence says what something is or does: "We propose ...", "This paper
    presents ...", or "<name> is a ..." where the subject is named in the title."""
    if _QUOTE_START.match(text) or word_count(text) < IDEAL_WORDS[0]:
        return False  # quoted speech is an opinion; "This post explains why." says nothing
    if _WE_DO.search(text) or _CJK_DEFINES.search(text):
        return True
    m = _IS_A.search(text)
    subject = content_tokens(m.group("subject")) if m else []
    return bool(subject) and subject[0] in title_tokens


def overlap(a: frozenset[str], b: frozenset[str]) -> float:
    """Share of the smaller sentence's words found in the other: 1 when one repeats the other."""
    return len(a & b) / min(len(a), len(b)) if a and b else 0.0


def _centrality(found: list[Candidate]) -> dict[int, float]:
    """Cosine between each candidate's words and the centroid of all candidates, words weighted
    by inverse document frequency (a word in every sentence, like the project's name, says
    nothing about which sentence matters)."""
    n = len(found)
    frequency = Counter(t for c in found for t in c.topic)
    idf = {t: math.log(n / df) for t, df in frequency.items()}
    centroid = {t: frequency[t] * idf[t] for t in frequency}
    norm = math.sqrt(sum(w * w for w in centroid.values())) or 1.0
    out = {}
    for c in found:
        own = math.sqrt(sum(idf[t] ** 2 for t in c.topic))
        if own:
            out[c.position] = sum(idf[t] * centroid[t] for t in c.topic) / (own * norm)
    return out


def _score(found: list[Candidate], title: str) -> None:
    centrality = _centrality(found)
    top = max(centrality.values(), default=1.0) or 1.0
    title_tokens = set(content_tokens(title))
    prose = [c.sentence and not c.listed and not c.boilerplate for c in found]
    lead_reach = max(LEAD_MIN, sum(prose) // 6)
    rank = 0  # among the prose sentences before: ads and list items do not push the lead back
    for c, is_prose in zip(found, prose, strict=True):
        c.defines = rank < lead_reach and defines_subject(c.text, title_tokens)
        parts = {
            "centrality": centrality.get(c.position, 0.0) / top,
            "lead": 1 / (1 + rank / LEAD_DECAY),
            "size": _size_preference(c.words),
            "title": len(c.topic & title_tokens) / len(title_tokens) if title_tokens else 0.0,
            "defines": float(c.defines),
            "boilerplate": float(c.boilerplate),
            "listed": float(c.listed),
            "fragment": float(not c.sentence),
        }
        c.score = sum(WEIGHTS[k] * v for k, v in parts.items())
        rank += is_prose


def top(found: list[Candidate], k: int) -> list[Candidate]:
    """The ``k`` best by score (ties: earlier first), returned in document order."""
    best = sorted(found, key=lambda c: (-c.score, c.position))[: max(k, 0)]
    return sorted(best, key=lambda c: c.position)


def _greedy(pool: list[Candidate], k: int, chosen: list[Candidate]) -> list[Candidate]:
    """Add up to ``k`` of ``pool`` to ``chosen``, best score first, each penalised by its
    overlap with what is already chosen (so the picks say different things). Once a chosen
    sentence says what the thing is, another definition earns no bonus."""
    picked: list[Candidate] = []
    rest = [c for c in pool if c not in chosen]
    while rest and len(picked) < k:
        taken = [*chosen, *picked]
        defined = any(o.defines for o in taken)

        def value(c: Candidate, taken: list[Candidate] = taken, defined: bool = defined) -> float:
            repeat = max((overlap(c.tokens, o.tokens) for o in taken), default=0.0)
            bonus = WEIGHTS["defines"] * c.defines if defined else 0.0
            return c.score - bonus - REDUNDANCY * repeat

        best = max(rest, key=lambda c: (value(c), -c.position))
        picked.append(best)
        rest.remove(best)
    return picked


def _spread(sentences: list[Candidate], k: int) -> list[Candidate]:
    """For a long text (a paper read in full, a long article), the best sentence of each of
    ``SPREAD_SEGMENTS`` stretches of snippets, preferring ones that state a method, a number or
    a limit (``_KEY_CUE``): the lead weight alone would take every fact from the abstract and
    introduction and none from the method, results or limitations further on."""
    sources = list(dict.fromkeys(c.source_id for c in sentences))
    if len(sources) < SPREAD_MIN_SOURCES or k <= 0:
        return []
    per = math.ceil(len(sources) / SPREAD_SEGMENTS)
    picks: list[Candidate] = []
    for start in range(per, len(sources), per):  # the first stretch is the lead's anyway
        stretch = set(sources[start : start + per])
        pool = [c for c in sentences if c.source_id in stretch and not c.boilerplate]
        if pool:
            picks.append(
                max(
                    pool,
                    key=lambda c: (
                        c.score + KEY_CUE_BONUS * bool(_KEY_CUE.search(c.text)),
                        -c.position,
                    ),
                )  # fmt: skip
            )
    return picks[:k]


def select_facts(found: list[Candidate], k: int) -> list[Candidate]:
    """Stage A: the best ``k`` sentences, then fragments only if sentences run out; in document
    order (so the commentary stage still sees the lead first). A long text first gets one
    sentence from each stretch of it (``_spread``), at most half of ``k``."""
    sentences = [c for c in found if c.sentence]
    fragments = [c for c in found if not c.sentence]
    spread = _spread(sentences, k // 2)
    chosen = spread + top([c for c in sentences if c not in spread], k - len(spread))
    chosen += top(fragments, k - len(chosen))
    return sorted(chosen, key=lambda c: c.position)


def select_tldr(found: list[Candidate], n: int) -> list[Candidate]:
    """``n`` distinct items: prose sentences of TL;DR size first, then list items and long
    sentences, then fragments. The first item says what the thing is when a sentence does."""
    tiers = [
        [c for c in found if c.sentence and not c.listed and c.tldr_sized],
        [c for c in found if c.sentence and (c.listed or not c.tldr_sized)],
        [c for c in found if not c.sentence],
    ]
    tiers = [[c for c in tier if len(c.text) <= MAX_TLDR_CHARS] for tier in tiers]
    first_tier = next((tier for tier in tiers if tier), [])
    if not first_tier or n <= 0:
        return []
    first = max(first_tier, key=lambda c: (c.defines, c.score, -c.position))
    chosen = [first]
    for tier in tiers:
        chosen += _greedy(tier, n - len(chosen), chosen)
    return [first, *sorted(chosen[1:], key=lambda c: c.position)]


def select_summary(
    found: list[Candidate], tldr: list[Candidate], low: int, high: int
) -> list[Candidate]:
    """Up to ``high`` distinct prose sentences in source order that the TL;DR does not already
    say. Only to reach ``low`` (or every sentence there is) does it take list items that are
    sentences, then repeat TL;DR sentences, then boilerplate: padding is worse than brevity."""
    sentences = [c for c in found if c.sentence]
    need = min(low, len(sentences))
    prose = [c for c in sentences if not (c.listed or c.boilerplate) and c not in tldr]
    picked = _greedy(prose, high, tldr)
    fallbacks = (
        [c for c in sentences if c.listed and not c.boilerplate and c not in tldr],
        [c for c in sentences if c in tldr],
        [c for c in sentences if c.boilerplate and c not in tldr],
    )
    for pool, repeats in zip(fallbacks, (False, True, False), strict=True):
        if len(picked) >= need:
            break
        picked += _greedy(pool, need - len(picked), picked if repeats else [*tldr, *picked])
    return sorted(picked, key=lambda c: c.position)
