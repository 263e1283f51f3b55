"""Plain-text helpers shared by retrieval, the stages and the gates.

Splitting. ``split_units`` cuts a text into sentence-like units:

- a fenced code block (```` ``` ... ``` ````, how retrieval marks code in a snippet) is one unit,
  flagged ``code``, and is never split;
- blank lines, a list bullet ``•`` and a pilcrow ``¶`` between spaces always separate units
  (retrieval puts a bullet before each list item, table cell or ``<br>`` line in a snippet, and
  a pilcrow at a paragraph break no sentence end marks); the units after a bullet, up to the
  next pilcrow, are flagged ``listed``;
- within that, English-like text ends a sentence at ``. ! ?`` followed by a space and a
  non-lowercase start, except after common abbreviations, initials, a day number before a month
  name (``3. Mai``), or inside a quotation in curly/angle quotes; Chinese/Japanese text ends at
  ``。！？`` with or without a following space.

``split_sentences`` is the same, as plain strings.

Prose quality. ``is_prose`` rejects what is not a sentence of prose even when it splits like one:
code, table rows, lists of names or identifiers (hardly any function words), run-ons of more
than ``MAX_SENTENCE_WORDS`` words. ``is_substantive`` adds a minimum size. ``is_citable`` is what
a reply may quote as a sentence (substantive prose that ends like a sentence, without URLs or
markup); ``citable_sentences`` lists the distinct ones of a text (near-duplicates dropped), and
the summary-length gate and the offline model both count with it, so the gate never asks for
more sentences than the evidence holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from pipeline.near_duplicates import NEAR_DUPLICATE as NEAR_DUPLICATE  # re-exported
from pipeline.near_duplicates import NearDuplicates, token_frequency
from pipeline.near_duplicates import similarity as similarity  # re-exported

LIST_BULLET = "•"
ITEM_SEPARATOR = f" {LIST_BULLET} "  # before each list item in a snippet ("intro: • a • b")
PILCROW = "¶"
PARAGRAPH_SEPARATOR = f" {PILCROW} "  # a paragraph break that no sentence end marks
CODE_FENCE = "```"
MAX_SENTENCE_WORDS = 60  # longer "sentences" are run-ons (joined lists, missing punctuation)
# The same snippet texts are split and judged by several stages and gates of one job (the
# summary range twice, the allowed links three times, the offline model): the results are kept
# per text. Bounded by count: a job's evidence is at most EVIDENCE_MAX_SNIPPETS (60) texts, so
# this holds the evidence of the jobs of a 32-thread worker at once (single sentences, split
# again by ``stands_alone``, are not kept: they would push the snippets out).
TEXT_CACHE_SIZE = 4096

_WS = re.compile(r"\s+")
_FENCED = re.compile(r"```.*?```", re.S)
_SEPARATOR = re.compile(r"(?:^|\s)([•¶])(?:\s+|$)")

# A sentence ends at a run of terminators, optionally followed by closing quotes or brackets.
# CJK terminators need no following space; Latin ones need whitespace and then something that
# does not start with a lowercase letter (so "e.g. this" and "3.5 times" stay together).
_BOUNDARY = re.compile(
    r"""(?:
        [。！？!?．]*[。！？][”’」』）〕】"')\]»]*\s*          # CJK: end here, space optional
      | (?:\.{3}|…|[.!?])+[”’"')\]»]*(?=\s+[^\sa-z])\s+    # Latin: space, then not lowercase
    )""",
    re.VERBOSE,
)

# Tokens before a "." that do not end a sentence (English, French, German).
_ABBREVIATIONS_TEXT = """
    vs etc e.g i.e cf al fig figs eq vol pp ca approx inc ltd co corp u.s u.k dept av env
    bzw usw ggf evtl inkl mio mrd abs str tel z.b d.h u.a s.o vgl z d u s o
    """
_ABBREVIATIONS = frozenset(_ABBREVIATIONS_TEXT.split())  # "z d u s o": "z. B.", "d. h."
# Titles, months and "No." abbreviate only when capitalised ("Ms. Lee", but "in 38 ms.").
_CAPITALISED_TEXT = """
    mr mrs ms dr prof sr jr st gen gov sen rep rev mt ft mme mlle mgr hr nr no nos
    jan feb mar apr jun jul aug sep sept oct nov dec
    """
_CAPITALISED = frozenset(_CAPITALISED_TEXT.split())
_MONTHS_TEXT = """
    january february march april may june july august september october november december
    januar februar märz april mai juni juli august september oktober november dezember
    janvier février mars avril mai juin juillet août septembre octobre novembre décembre
    """
_MONTHS = frozenset(_MONTHS_TEXT.split())
_WORD_BEFORE_DOT = re.compile(r"([\w.]+)\.[”’\"')\]»]*\s*$")
_DAY_BEFORE_DOT = re.compile(r"(?<![\w.])\d{1,2}\.\s*$")
_NEXT_WORD = re.compile(r"\s*([^\W\d_]+)")
_QUOTES = (("“", "”"), ("«", "»"))
_GERMAN_QUOTES = ("„", "“")
_QUOTE_REACH = 500  # characters within which a quotation must close to hold a sentence together

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_WORD = re.compile(r"[^\W\d_]{3,}")
_LETTERS = re.compile(r"[^\W\d_]{2,}")
# Not "..." or "…": a text that trails off, or was cut off, is not a finished sentence.
_ENDS_SENTENCE = re.compile(r"(?<!\.\.)[.!?。！？][”’\"')\]」』）»]*$")
_URL_OR_MARKUP = re.compile(r"https?://|www\.|<[!@#/a-zA-Z]|\{\{|```", re.I)

# --- prose quality -----------------------------------------------------------------------------
# Box drawing (SQL/CLI result tables) and shell or REPL prompts are never prose.
_TABLE_OR_PROMPT = re.compile(r"[│┃┆─━┼═╔╗╚╝║]|^\s*(?:\$|>>>|In \[\d+\]:|#include\b)")
# A token that reads as code: an assignment, call, index, path, snake_case or markup.
_CODE_TOKEN = re.compile(
    r"[=<>{}\[\]\\|`]|\w\(|;\S|::|->|=>|\w_\w|^--?\w|^\.{1,2}/|/\w+/|\w\.\w+\(",
)
# Function words: prose has them, lists of names and identifiers hardly do.
_FUNCTION_WORDS_TEXT = """
    a an the of to in on at by for from with without into onto over under about as and or but
    nor not no is are was were be been being has have had do does did can could will would
    shall should may might must it its this that these those there here which who whom whose
    what when where why how than then so if we our you your they their he his she her i my me
    us them also just only all any some each both such more most very one two
    le la les un une des du de et est sont ou pour dans sur par pas au aux avec ce cette ces qui
    que il elle ils elles nous vous se sa son ses leur en ne plus
    der die das den dem des ein eine einen einem einer und oder ist sind war wird werden mit von
    zu zum zur im am auf für nicht sich es er sie wir ihr auch als wie bei nach aus
    """
_FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())


@dataclass(frozen=True)
class Unit:
    """One sentence-like piece of a text."""

    text: str
    listed: bool = False  # came after a list bullet: a list item, table cell or line
    code: bool = False  # a fenced code block


def normalize_space(text: str) -> str:
    """Collapse every run of whitespace (including non-breaking spaces) to one space."""
    return _WS.sub(" ", text).strip()


def fence_code(text: str) -> str:
    """How retrieval marks a code block inside a snippet (kept whole by the splitter)."""
    body = text.replace(CODE_FENCE, "'''")  # a fence inside the code must not close it early
    return f"{CODE_FENCE}\n{body}\n{CODE_FENCE}"


# --- splitting ---------------------------------------------------------------------------------
def _ends_with_abbreviation(chunk: str) -> bool:
    m = _WORD_BEFORE_DOT.search(chunk)
    if not m:
        return False
    word = m.group(1)
    low = word.lower()
    if low in _ABBREVIATIONS or (low in _CAPITALISED and word[:1].isupper()):
        return True
    # An initial ("J. Smith", "U. S.") is one capital letter, possibly after another initial.
    last = word.rsplit(".", 1)[-1]
    return len(last) == 1 and last.isalpha() and last.isupper()


def _day_before_month(piece: str, rest: str) -> bool:
    """``am 3. Mai``: a day number with a period before a month name is not a sentence end."""
    if not _DAY_BEFORE_DOT.search(piece):
        return False
    m = _NEXT_WORD.match(rest)
    return m is not None and m.group(1).lower() in _MONTHS


def _quote_pairs(text: str) -> list[tuple[str, str]]:
    return [_GERMAN_QUOTES] if "„" in text else list(_QUOTES)


def quotes_balanced(text: str) -> bool:
    """Every curly or angle quotation opened in ``text`` is closed in it."""
    return all(text.count(a) == text.count(b) for a, b in _quote_pairs(text))


def _inside_quotation(block: str, start: int, end: int) -> bool:
    """Whether ``block[start:end]`` leaves a quotation open that closes soon after ``end``."""
    piece = block[start:end]
    for opening, closing in _quote_pairs(block):
        if piece.count(opening) > piece.count(closing):
            return closing in block[end : end + _QUOTE_REACH]
    return False


def _sentences(segment: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(segment):
        end = m.end()
        piece = segment[start:end].rstrip()
        if piece.endswith(".") and (
            _ends_with_abbreviation(piece) or _day_before_month(piece, segment[end:])
        ):
            continue
        if _inside_quotation(segment, start, end):
            continue
        if piece.strip():
            out.append(piece.strip())
        start = end
    if segment[start:].strip():
        out.append(segment[start:].strip())
    return out


def split_units(text: str) -> list[Unit]:
    """Sentence-like units of ``text`` in order (see the module docstring)."""
    return list(_split_units_cached(text))


def clear_text_caches() -> None:
    """Forget the per-text results (benchmarks measure a job on texts never seen before)."""
    _split_units_cached.cache_clear()
    citable_units.cache_clear()


@lru_cache(maxsize=TEXT_CACHE_SIZE)
def _split_units_cached(text: str) -> tuple[Unit, ...]:
    return tuple(_split_units(text))


def _split_units(text: str) -> list[Unit]:
    units: list[Unit] = []
    position = 0
    for fenced in [*_FENCED.finditer(text), None]:
        prose = text[position : fenced.start() if fenced else len(text)]
        for block in re.split(r"\n\s*\n", prose):
            block = normalize_space(block)
            if not block:
                continue
            start, listed = 0, False
            for m in [*_SEPARATOR.finditer(block), None]:
                end = m.start() if m else len(block)
                units += [Unit(s, listed=listed) for s in _sentences(block[start:end].strip())]
                if m is not None:
                    start, listed = m.end(), m.group(1) == LIST_BULLET
        if fenced is None:
            break
        units.append(Unit(fenced.group(0).strip(), code=True))
        position = fenced.end()
    return units


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, keeping each sentence's own punctuation.

    Blank lines, list bullets and pilcrows always separate sentences; a fenced code block is one
    piece.
    Abbreviations (``Dr.``, ``e.g.``) and initials (``J. R. R. Tolkien``) do not end a
    sentence. Returns stripped, non-empty sentences.
    """
    return [u.text for u in split_units(text)]


# --- prose quality -----------------------------------------------------------------------------
def cjk_chars(text: str) -> int:
    return len(_CJK.findall(text))


def word_count(text: str) -> int:
    """Words of Latin-script text, plus one word per two CJK characters."""
    cjk = cjk_chars(text)
    latin = len(_CJK_RUN.sub(" ", text).split())
    return latin + (cjk + 1) // 2


def ends_sentence(text: str) -> bool:
    return bool(_ENDS_SENTENCE.search(text.strip()))


def is_prose(sentence: str) -> bool:
    """Reads as a sentence of prose: not code, a table row, a list of names or a run-on."""
    if CODE_FENCE in sentence or _TABLE_OR_PROMPT.search(sentence):
        return False
    if word_count(sentence) > MAX_SENTENCE_WORDS:
        return False
    latin = _CJK_RUN.sub(" ", sentence).split()
    if cjk_chars(sentence) >= max(8, len(latin)):  # mostly CJK: only the code test applies
        return sum(1 for t in latin if _CODE_TOKEN.search(t)) <= 2
    if not latin:
        return False
    if sum(1 for t in latin if _CODE_TOKEN.search(t)) / len(latin) > 0.15:
        return False
    words = [t.strip("\"'“”‘’()[],.;:!?«»").lower() for t in latin]
    lettered = sum(1 for w in words if _LETTERS.search(w))  # math and symbol runs have few
    function = sum(1 for w in words if w in _FUNCTION_WORDS)
    return len(latin) < 6 or (function / len(latin) >= 0.1 and lettered / len(latin) >= 0.5)


def is_substantive(sentence: str, min_words: int = 6, min_cjk_chars: int = 12) -> bool:
    """A sentence that carries content: prose with enough words, or enough CJK characters."""
    big_enough = cjk_chars(sentence) >= min_cjk_chars or len(sentence.split()) >= min_words
    return big_enough and is_prose(sentence)


def is_citable(unit: Unit | str) -> bool:
    """What a reply may quote as a sentence: substantive prose that ends like a sentence,
    without URLs, markup or code, without a quotation left open (a quote running over several
    sentences: cut out, it is not a sentence), and that stays one sentence wherever a summary
    puts it (``stands_alone``)."""
    if isinstance(unit, Unit):
        if unit.code:
            return False
        unit = unit.text
    # The cheap tests first: most units that fail, fail one of them (the result is the same).
    return (
        ends_sentence(unit)
        and not _URL_OR_MARKUP.search(unit)
        and quotes_balanced(unit)
        and is_substantive(unit)
        and stands_alone(unit)
    )


def stands_alone(sentence: str) -> bool:
    """Whether ``sentence`` stays exactly one sentence next to any other: it does not start in
    lower case (a sentence cut by code or markup: it would join the one before) and does not
    end with an abbreviation or an initial ("etc.", "Xbox One S.": it would join the next)."""
    first = next((ch for ch in sentence if ch.isalnum()), "")
    if first.islower() and not _CJK.match(first):
        return False
    if sentence.rstrip().endswith(".") and _ends_with_abbreviation(sentence.rstrip()):
        return False
    return [u.text for u in _split_units(sentence)] == [sentence.strip()]


def count_substantive_sentences(text: str) -> int:
    return sum(1 for u in split_units(text) if not u.code and is_substantive(u.text))


# --- content words and repetition ---------------------------------------------------------------
_STOPWORDS_TEXT = """
    about after again against all also and any are based been before being between both but can
    could did does doing done during each for from had has have her here his how into its just
    many may might more most much must new one only onto other our out over per shall should some
    such than that the their them then there these they this those three two under until upon use
    used using very via was were what when where which while who why will with would you your
    yours
    """
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def content_tokens(text: str) -> list[str]:
    """Latin-script words (3+ letters, no stopwords) and CJK character bigrams, lower case."""
    low = text.lower()
    out = [w for w in _WORD.findall(_CJK_RUN.sub(" ", low)) if w not in _STOPWORDS]
    for run in _CJK_RUN.findall(low):
        out += [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
    return out


@lru_cache(maxsize=TEXT_CACHE_SIZE)
def citable_units(text: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """The citable units of one text with their content-word sets, in order (kept per text:
    every stage that counts citable sentences asks again for the same snippets)."""
    return tuple(
        (unit.text, frozenset(content_tokens(unit.text)))
        for unit in split_units(text)
        if is_citable(unit)
    )


def citable_sentences(texts: Iterable[str]) -> list[str]:
    """The distinct citable sentences of ``texts`` in order; a sentence that repeats an earlier
    one (same words, or near-duplicate content words: ``pipeline.near_duplicates``) is
    dropped."""
    found = [unit for text in texts for unit in citable_units(text)]
    index = NearDuplicates(token_frequency(tokens for _, tokens in found))
    kept: list[str] = []
    seen: set[str] = set()
    for sentence, tokens in found:
        key = sentence.lower()
        if key in seen or index.repeats(tokens):
            continue
        seen.add(key)
        index.add(tokens)
        kept.append(sentence)
    return kept
