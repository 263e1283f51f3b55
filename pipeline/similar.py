"""Similar tech the source itself names: alternatives, comparisons, inspirations, baselines.

"Similar tech" in a reply is only ever what the source names, never what a model remembers.
``find_candidates`` reads the numbered snippets and returns :class:`SimilarCandidate` items (a
name found verbatim in a snippet, that snippet's id, the relation, and a link written right next
to the name when there is one). Two readings, both deterministic:

- sections: the items of a part whose heading says it lists other projects ("Alternatives",
  "Similar projects", "Related projects", "Comparison", "X vs Y", "Benchmarks", "See also",
  "Prior art", "Inspiration"): the name each item starts with (``Dramatiq — ...``, ``lxml /
  Beautiful Soup (lxml) — 9.09 sec.``), and names the README marked up (links, code) in prose;
- cues: a name right after a comparison or lineage cue in a sentence ("compared to X", "X vs
  Y", "outperforms X and Y", "alternative to X", "similar to X", "inspired by X", "a rewrite of
  X", "based on X", "thanks to X and Y", "software called X"), or a list right before one ("viz.,
  A, B and C have been compared").

A name is a run of at most ``MAX_NAME_WORDS`` words that look like names (a capital letter or a
digit in the word, or a word the README marked as a link or code span: ``requests``,
``textract``); in papers, whose concepts are often lower case ("more powerful than oblivious
transfer"), a short phrase after a comparison or lineage cue counts too. Names of the source
itself (repository, owner, title) are left out, and so are sentences that address the bot
(``pipeline.sanitize.looks_injected``): an injected page must not choose the similar tech.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.models import Evidence, SimilarCandidate, Snippet
from pipeline.sanitize import looks_injected
from pipeline.text import split_units

METADATA_SECTION = "Source metadata"  # pipeline.adapters.base (not imported: adapters import us)
MAX_CANDIDATES = 8  # the similar_tech gate's default maximum
MAX_NAME_WORDS = 4
MAX_QUOTE_CHARS = 240

ALTERNATIVE, COMPARED, INSPIRED, BASED_ON, RELATED = (
    "alternative",
    "compared against",
    "inspired by",
    "based on",
    "related",
)

# Headings of parts that list other projects (the whole heading, so "Alternative API docs"
# is not one), and the relation their items have.
_SECTIONS = [
    (re.compile(r"^\W*(?:\w+\s+)?alternatives\b.*$|^\W*alternatives? to\b.*$", re.I), ALTERNATIVE),
    (
        re.compile(
            r"^\W*(?:\w+\s+){0,2}(?:comparisons?|benchmarks?|baselines?)\W*(?:\s+(?:with|to|against)\b.*)?$"
            r"|^.*\s(?:vs\.?|versus)\s.*$",
            re.I,
        ),
        COMPARED,
    ),
    (re.compile(r"^\W*(?:prior art|inspirations?|influences)\W*$", re.I), INSPIRED),
    (
        re.compile(
            r"^\W*(?:see also|(?:similar|related|other) (?:projects|tools|libraries|software|"
            r"work|implementations))\W*$",
            re.I,
        ),
        RELATED,
    ),
]

# (cue, relation, what may follow). The cue ends right before the list of names. What may
# follow: NAMES (a name-like word or a README-marked one), PROPER (name-like words only: after
# "implementation of" a marked word is as often a plain word, "implementation of tools"),
# PHRASES (NAMES, or in papers a short lower-case phrase), PAPERS (a phrase, in papers only:
# in a README "CPU instead of GPU" is an instruction, in an abstract "kNN instead of
# cross-entropy loss" is the comparison).
NAMES, PROPER, PHRASES, PAPERS = "names", "proper", "phrases", "papers"
_CUE_TEXT = [
    (r"(?:in )?compar(?:ed|ison|able)(?: favou?rably)? (?:to|with|against)", COMPARED, PHRASES),
    (r"on par with|superior to|as opposed to|unlike", COMPARED, PHRASES),
    (r"(?:more|less) \w+ than|(?:faster|slower|better|smaller|simpler) than", COMPARED, PHRASES),
    (r"outperform(?:s|ed|ing)?|versus", COMPARED, PHRASES),
    (r"(?-i:vs\.?)", COMPARED, NAMES),  # lower case: "VS Code" is a name, not a cue
    (r"instead of", COMPARED, PAPERS),
    (r"(?:while|whereas)(?= [\w -]{1,40} (?:methods|approaches|techniques)\b)", COMPARED, PAPERS),
    (r"(?:a |an )?(?:drop-in )?replacement for", ALTERNATIVE, NAMES),
    (r"alternatives? (?:to|such as|like|including)", ALTERNATIVE, NAMES),
    (r"similar to|in the spirit of", RELATED, NAMES),
    (
        r"inspired by(?: the (?:\w+ ){0,2}of)?|influenced by|modell?ed (?:after|on)",
        INSPIRED,
        PHRASES,
    ),
    (r"(?:re)?write of|port of|fork of|reimplementation of|successor (?:to|of)", INSPIRED, NAMES),
    (r"(?-i:builds) (?:up)?on(?: the (?:[\w-]+ ){0,3}of)?", INSPIRED, NAMES),
    (r"based on|built (?:on|upon|with)(?: top of)?|powered by|thanks to", BASED_ON, NAMES),
    (r"(?:an? )?implementation of", BASED_ON, PROPER),
    (
        r"leverag(?:e|es|ing)(?: the (?:power|strength)s? of)?(?: (?:recently|newly) introduced)?",
        BASED_ON,
        PROPER,
    ),  # fmt: skip
    (r"(?:software|tool|system|library|package|framework|program) called", BASED_ON, NAMES),
    (r"in addition to [\w.+-]+,? there(?:'s|’s| is| are)", RELATED, NAMES),
    (r"reduced to(?: a (?:version|variant) of)?", RELATED, PROPER),
]
_CUES = [
    (re.compile(rf"(?<![\w-])(?:{cue})\s+", re.I), relation, follows)
    for cue, relation, follows in _CUE_TEXT
]
# "developed using OpenCv": in papers, a CamelCase name after "using" is what the work builds on
# (in READMEs "using RabbitMQ as a broker" is an integration, not a similar project).
_USING = re.compile(r"(?<![\w-])using\s+", re.I)
_CAMEL = re.compile(r"[a-z][A-Z]|[A-Z][a-z]+[A-Z]")
# A name that reads as software: CamelCase, an acronym, a digit or an inner dot ("FAISS",
# "pgvector" is not one, "Node.js", "GPT-4"); "European" or "Sony" are not.
_TECHY = re.compile(r"[a-z][A-Z]|[A-Z][a-z]+[A-Z]|[A-Z]{2}|\d|\w\.\w")
# A list named before its cue: "viz., A, B and C have been critically compared".
_LIST_BEFORE = re.compile(
    r"(?:viz\.?,?|namely|such as|i\.e\.,?)\s+(?P<list>[^.;:]+?)\s+(?:have|has|were|was|are|is)"
    r"\s+(?:been\s+)?(?:\w+ly\s+)?(?:compared|benchmarked|evaluated against)",
    re.I,
)

_WORD = re.compile(r"[A-Za-z0-9][\w.+#'’-]*[\w+#]|[A-Za-z0-9]")
_ARTICLE = re.compile(r"(?:the|a|an|our|its|their|this|these)\s+", re.I)
_SEPARATOR = re.compile(r"\s*(?:,\s*(?:and|or)\s+|,\s*|\s+and\s+|\s+or\s+|\s*/\s*|\s*&\s*)")
_QUALIFIER = re.compile(r"\s+(?:for|in|on)\s+[A-Z][\w.+#-]*")  # "gocelery for Go"
_ACRONYM = re.compile(r"\s*\(([A-Z][A-Z0-9-]{1,11})\)")  # "Contrastive ... Pre-training (CLIP)"
_URL_AFTER = re.compile(r"^\s*(?::|\(|-|—|–)?\s*<?(https?://[^\s<>()]+)")
_ITEM_HEAD = re.compile(r"\s+(?:—|–|-)\s+|:\s+|\s+\(|,\s+|\s+\|\s+")
_IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:[._-][a-z0-9]+)*")
# Words that start a phrase but name nothing, and names that are no project.
_STOP_TEXT = """
    and or but with without for from into onto that which who whose where when while than then
    to in on at by of as is are was were be been it its this these those there here they we our
    you your all any each every some such other others both many most more much very also only
    just not no yet so
    """
_STOP = frozenset(_STOP_TEXT.split())
_GENERIC_TEXT = """
    prior art|previous work|prior work|existing methods|existing approaches|previous methods|
    the state of the art|state of the art|baselines|baseline|others|competitors|alternatives|
    package|name|project|library|tool|time|language|description|feature|framework|version|
    method|approach|model|system|i|we|it|this|the|you|they|he|she|note|example|see
    """
_GENERIC = frozenset(g.strip() for g in _GENERIC_TEXT.split("|"))
_POSSESSIVE = re.compile(r"['’]s$")  # "XHR's withCredentials": the name is XHR
_CLEAN = re.compile(r"[A-Za-z0-9][\w .+#'’/-]*[\w+#]|[A-Za-z0-9]")  # no quotes, brackets, markup
_TRAILING_KIND = re.compile(r"\s+(?:methods?|approaches|approach|techniques?|models?|systems?)$")


@dataclass(frozen=True)
class _Context:
    own: frozenset[str]  # the source's own names, casefolded
    marked: frozenset[str]  # names the README marked up (links, code spans)
    phrases: bool  # lower-case phrases count as names (papers)
    relations: frozenset[str] | None = None  # cue relations read for any name (None: all)


def _name_like(word: str) -> bool:
    """A capital letter or a digit: ``Redis``, ``minGPT``, ``html5_parser``, ``Q-YIELD``."""
    return any(c.isupper() or c.isdigit() for c in word)


def _marked_at(text: str, ctx: _Context) -> str | None:
    """The longest README-marked name ``text`` starts with (a whole-word match)."""
    best = None
    lowered = text.casefold()
    for name in ctx.marked:
        whole = lowered.startswith(name) and not re.match(r"[\w-]", text[len(name) : len(name) + 1])
        if whole and (best is None or len(name) > len(best)):
            best = text[: len(name)]
    return best


def _marked_name(text: str, pos: int, ctx: _Context) -> str | None:
    """A README-marked name at ``pos``; a single lower-case word only when no word follows it
    ("builds on `requests`, and", but not "based on `standard` Python type hints")."""
    marked = _marked_at(text[pos:], ctx)
    if marked is None or " " in marked or not marked.islower():
        return marked
    after = _WORD.match(text, pos + len(marked) + 1)
    if after is None or text[pos + len(marked) : pos + len(marked) + 1] != " ":
        return marked
    return marked if after.group(0).casefold() in _STOP else None


def _name_at(
    text: str, pos: int, ctx: _Context, phrases: bool, marked_ok: bool = True
) -> tuple[str, int] | None:
    """The name ``text`` has at ``pos`` (after an article) and where it ends, or None."""
    if article := _ARTICLE.match(text, pos):
        pos = article.end()
    if marked_ok and (marked := _marked_name(text, pos, ctx)):
        return marked, pos + len(marked)
    words: list[str] = []
    end = cursor = pos
    while len(words) < MAX_NAME_WORDS:
        m = _WORD.match(text, cursor)
        if not m:
            break
        word, possessive = _POSSESSIVE.subn("", m.group(0))
        folded = word.casefold()
        if folded in _STOP or (phrases and folded.endswith("ly")):
            break
        if not (phrases or _name_like(word)):
            break
        words.append(word)
        end = m.start() + len(word)
        if (
            possessive
            or text[end : end + 1] != " "
            or (phrases and _TRAILING_KIND.search(" " + word))
        ):
            break
        cursor = end + 1
    if not words:
        return None
    name = text[pos:end]
    if phrases and len(words) > 1:
        name = _TRAILING_KIND.sub("", name)  # "GAN inversion methods" -> "GAN inversion"
        end = pos + len(name)
    if len(words) > 1 and (acronym := _ACRONYM.match(text, end)):
        return acronym.group(1), acronym.end()
    return name, end


def _names_from(text: str, ctx: _Context, phrases: bool, marked_ok: bool = True) -> list[str]:
    """The list of names ``text`` starts with: "A, B and C", "A/B/C", "A for Go, and B"."""
    out: list[str] = []
    pos = 0
    while len(out) < MAX_CANDIDATES:
        found = _name_at(text, pos, ctx, phrases, marked_ok)
        if found is None:
            break
        name, pos = found
        out.append(name)
        if acronym := _ACRONYM.match(text, pos):
            pos = acronym.end()
        if qualifier := _QUALIFIER.match(text, pos):
            pos = qualifier.end()
        sep = _SEPARATOR.match(text, pos)
        if not sep or sep.end() == pos:
            break
        pos = sep.end()
    return out


def _keep(name: str, ctx: _Context) -> bool:
    folded = name.casefold().strip(" .,;:")
    if len(folded) < 2 or folded in _GENERIC or folded.isdigit() or not _CLEAN.fullmatch(name):
        return False
    if " " in name and name.isupper():  # "SHE DOES": shouting, not a name
        return False
    return not any(folded == own or folded in own.split("/") for own in ctx.own)


def _known(name: str, found: dict[str, SimilarCandidate]) -> bool:
    """Already found, or a variant of a name already found ("gpt2-xl" after "gpt2")."""
    folded = name.casefold()
    return any(folded == k or folded.startswith((f"{k}-", f"{k} ")) for k in found)


def _url_after(text: str, name: str) -> str | None:
    at = text.find(name)
    m = _URL_AFTER.match(text[at + len(name) :]) if at >= 0 else None
    return m.group(1).rstrip(".,;:!?'\"”’") if m else None


def _section_relation(section: str | None) -> str | None:
    if not section or section == METADATA_SECTION:
        return None
    return next((rel for pattern, rel in _SECTIONS if pattern.match(section.strip())), None)


def _item_names(item: str, ctx: _Context) -> list[str]:
    """Names an item of a listing part starts with (its head, before " — ", ": ", " (")."""
    head = _ITEM_HEAD.split(item.strip(), maxsplit=1)[0].strip(" .")
    out = []
    for part in re.split(r"\s*/\s*|\s+&\s+", head):
        words = part.split()
        if not words or len(words) > MAX_NAME_WORDS:
            continue
        if all(_name_like(w) for w in words) or (len(words) == 1 and _IDENTIFIER.fullmatch(part)):
            out.append(part)
    return out


def _cue_names(sentence: str, ctx: _Context) -> Iterable[tuple[str, str]]:
    """(name, relation) for every cue in ``sentence``, in the order the names appear."""
    found: list[tuple[int, str, str]] = []
    for pattern, relation, follows in _CUES:
        if follows == PAPERS and not ctx.phrases:
            continue
        techy_only = ctx.relations is not None and relation not in ctx.relations
        phrases = ctx.phrases and follows in (PHRASES, PAPERS)
        for m in pattern.finditer(sentence):
            rest = sentence[m.end() :]
            for name in _names_from(rest, ctx, phrases, marked_ok=follows != PROPER):
                if not techy_only or _TECHY.search(name):
                    found.append((m.end() + max(0, rest.find(name)), name, relation))
    for m in _USING.finditer(sentence) if ctx.phrases else ():
        for name in _names_from(sentence[m.end() :], ctx, phrases=False, marked_ok=False):
            if _CAMEL.search(name):
                found.append((m.end(), name, BASED_ON))
    for m in _LIST_BEFORE.finditer(sentence):
        for name in _names_from(m.group("list"), ctx, phrases=False):
            found.append((m.start("list"), name, COMPARED))
    return [(name, relation) for _, name, relation in sorted(found, key=lambda f: f[0])]


def _snippet_names(snippet: Snippet, ctx: _Context) -> Iterable[tuple[str, str]]:
    listing = _section_relation(snippet.section)
    for unit in split_units(snippet.text):
        if unit.code or looks_injected(unit.text):
            continue
        if listing is not None and unit.listed:
            yield from ((n, listing) for n in _item_names(unit.text, ctx))
        elif listing not in (None, COMPARED) and ctx.marked:
            for word in _WORD.finditer(unit.text):
                name = _marked_at(unit.text[word.start() :], ctx)
                if name and (word.start() == 0 or not unit.text[word.start() - 1].isalnum()):
                    yield name, listing
        yield from _cue_names(unit.text, ctx)


def own_names(evidence: Evidence) -> set[str]:
    """The source's own names (casefolded): repository, owner, title and its head."""
    names: set[str] = set()
    for source in evidence.sources:
        full = str(source.metadata.get("full_name") or "")
        names.update(p for p in [full, *full.split("/")] if p)
        if source.title:
            names.add(source.title)
            names.add(re.split(r"[:—–]| - ", source.title, maxsplit=1)[0].strip())
    return {n.casefold() for n in names if n}


def find_candidates(
    snippets: Iterable[Snippet],
    *,
    own: Iterable[str] = (),
    marked: Iterable[str] = (),
    phrases: bool = False,
    relations: Iterable[str] | None = None,
) -> list[SimilarCandidate]:
    """Similar tech named in ``snippets`` (the metadata snippet is skipped), in source order,
    one per name (case-insensitive), at most ``MAX_CANDIDATES``. ``own``: the source's own
    names, left out; ``marked``: names the README marked up; ``phrases``: accept lower-case
    phrases after comparison cues (papers); ``relations``: the cue relations read for any name;
    the other cues count only names that read as software (``_TECHY``). Listing sections are
    always read."""
    ctx = _Context(
        own=frozenset(n.casefold() for n in own),
        marked=frozenset(m.casefold() for m in marked if m.strip()),
        phrases=phrases,
        relations=frozenset(relations) if relations is not None else None,
    )
    out: dict[str, SimilarCandidate] = {}
    for snippet in snippets:
        if snippet.section == METADATA_SECTION:
            continue
        for name, relation in _snippet_names(snippet, ctx):
            name = name.strip(" .,;:")
            if not _keep(name, ctx) or name not in snippet.text or _known(name, out):
                continue
            out[name.casefold()] = SimilarCandidate(
                name=name,
                snippet_id=snippet.id,
                relation=relation,
                url=_url_after(snippet.text, name),
            )
            if len(out) >= MAX_CANDIDATES:
                return list(out.values())
    return list(out.values())


def evidence_candidates(evidence: Evidence) -> list[SimilarCandidate]:
    """The adapter's candidates, or, when it did not look (``None``), those in the snippets."""
    if evidence.similar_candidates is not None:
        return evidence.similar_candidates
    kinds = {s.kind for s in evidence.sources}
    if kinds & {"paper", "repository"}:
        return find_candidates(evidence.snippets, own=own_names(evidence), phrases="paper" in kinds)
    # A page (news, blog, docs): "compared to European", "based on Midwestern" are no tech, so
    # beyond its listing sections and "alternative to" / "similar to", only names that read as
    # software count ("Compared to FAISS").
    return find_candidates(
        evidence.snippets, own=own_names(evidence), relations=(ALTERNATIVE, RELATED)
    )


def mention(evidence: Evidence, candidate: SimilarCandidate) -> str:
    """The sentence (or list item) of the candidate's snippet that names it, capped."""
    snippet = next((s for s in evidence.snippets if s.id == candidate.snippet_id), None)
    if snippet is None:
        return ""
    unit = next((u.text for u in split_units(snippet.text) if candidate.name in u.text), "")
    if len(unit) <= MAX_QUOTE_CHARS:
        return unit
    at = max(0, unit.find(candidate.name) - MAX_QUOTE_CHARS // 3)
    cut = unit[at : at + MAX_QUOTE_CHARS]
    start = cut.find(" ") + 1 if at else 0
    end = cut.rfind(" ")
    return ("…" if at else "") + cut[start:end].strip() + "…"
