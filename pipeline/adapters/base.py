"""What every adapter shares: numbered snippets, the coverage rules, and the Evidence shape.

Snippets are the unit facts cite (``S1``, ``S2``...): a paragraph, several tiny paragraphs of
the same section merged, or a long paragraph split at sentence ends. List items, table rows and
lines follow a bullet (``• first • second``), a paragraph after something that is not a
sentence follows a pilcrow (``¶``), and code is fenced: ``pipeline.text`` splits on all three,
so nothing runs into its neighbour as one "sentence". The last snippet may hold sentences rendered from the source's structured
fields (``METADATA_SECTION``, see ``pipeline.adapters.metadata``). The total is capped by
``evidence_max_chars`` and ``evidence_max_snippets``; whatever the cap cut marks the evidence
``truncated``.

Coverage (docs/ARCHITECTURE.md): ``full`` when the main text was read whole and carries at least
``FULL_MIN_SENTENCES`` sentences of substance (enough for a 10-15 sentence summary); ``partial``
for an abstract, a short or truncated text; ``metadata_only`` when only metadata was read;
``failed`` when the source answered but nothing could be read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.links import canonical_url
from pipeline.models import Coverage, Evidence, ReadKind, Snippet, Source
from pipeline.settings import Settings
from pipeline.text import (
    ITEM_SEPARATOR,
    LIST_BULLET,
    PARAGRAPH_SEPARATOR,
    PILCROW,
    count_substantive_sentences,
    ends_sentence,
    fence_code,
    normalize_space,
    split_sentences,
)

FULL_MIN_SENTENCES = 15
SNIPPET_MIN_CHARS = 400  # smaller paragraphs of one section are merged up to this size
SNIPPET_MAX_CHARS = 1200  # larger ones are split at sentence ends
METADATA_SECTION = "Source metadata"  # the snippet of sentences rendered from source fields

PROSE, ITEM, CODE = "prose", "item", "code"


@dataclass(frozen=True)
class Passage:
    """One paragraph of source text and the heading it sits under.

    ``kind`` says how it is joined with its neighbours in a snippet (see ``_join``): ``prose``
    paragraphs merge into running text; ``item`` passages (list items, table rows and cells,
    ``<br>`` lines, captions) each follow a bullet (``• first • second``), so no item runs into
    the next as one "sentence"; ``code`` is fenced (``pipeline.text.fence_code``).
    """

    text: str
    section: str | None = None
    preformatted: bool = False  # code: keep line breaks, never merge with prose
    kind: str = PROSE

    @property
    def chunk_kind(self) -> str:
        if self.preformatted or self.kind == CODE:
            return CODE
        # A long list item is a paragraph that happens to sit in a list.
        return ITEM if self.kind == ITEM and len(self.text) < SNIPPET_MIN_CHARS else PROSE


def _split_long(text: str) -> list[str]:
    if len(text) <= SNIPPET_MAX_CHARS:
        return [text]
    out: list[str] = []
    current = ""
    for sentence in split_sentences(text) or [text]:
        while len(sentence) > SNIPPET_MAX_CHARS:  # one huge "sentence": cut at a space
            cut = sentence.rfind(" ", 0, SNIPPET_MAX_CHARS)
            cut = cut if cut > SNIPPET_MAX_CHARS // 2 else SNIPPET_MAX_CHARS
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > SNIPPET_MAX_CHARS:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        out.append(current)
    return out


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip() + " …"


def _join(pending: list[tuple[str, str]]) -> str:
    """One snippet's text: an item follows a bullet (``intro: • a • b``); a paragraph after an
    item, or after a paragraph that does not end like a sentence (a byline, a label, a list
    intro), follows a pilcrow (``Posted by X ¶ The text...``), so none runs into the next as
    one "sentence"; other paragraphs and fenced code follow a space."""
    out = ""
    previous: tuple[str, str] | None = None
    for kind, text in pending:
        if kind == ITEM:
            sep = f"{LIST_BULLET} " if not out else ITEM_SEPARATOR
            text = text.replace(LIST_BULLET, "·").replace(PILCROW, " ")
        elif previous is None:
            sep = ""
        elif kind == PROSE and (previous[0] == ITEM or not ends_sentence(previous[1])):
            sep = PARAGRAPH_SEPARATOR
        else:
            sep = " "
        out += sep + text
        previous = (kind, text)
    return out


def _chunks(passages: Iterable[Passage]) -> Iterable[tuple[str | None, str]]:
    """(section, text) chunks: tiny paragraphs, items and code of one section merged up to
    ``SNIPPET_MIN_CHARS``, long paragraphs split at sentence ends."""
    pending: list[tuple[str, str]] = []
    section: str | None = None

    def size() -> int:
        return sum(len(text) + 3 for _, text in pending)

    def flush() -> Iterable[tuple[str | None, str]]:
        if pending:
            yield section, _join(pending)
            pending.clear()

    for passage in passages:
        kind = passage.chunk_kind
        text = passage.text.strip() if kind == CODE else normalize_space(passage.text)
        if not text:
            continue
        if pending and passage.section != section:
            yield from flush()
        section = passage.section
        if kind == CODE:
            text = fence_code(_cap(text, SNIPPET_MAX_CHARS))
        pieces = _split_long(text) if kind == PROSE else [text]
        for piece in pieces[:-1]:
            yield from flush()
            yield section, piece
        if pending and size() + len(pieces[-1]) > SNIPPET_MAX_CHARS:
            yield from flush()
        pending.append((kind, pieces[-1]))
        if size() >= SNIPPET_MIN_CHARS:
            yield from flush()
    yield from flush()


def build_snippets(
    passages: Iterable[Passage], settings: Settings, *, metadata: str | None = None
) -> tuple[list[Snippet], bool]:
    """Numbered snippets within the settings' caps, and whether the caps cut anything.

    ``metadata`` (sentences rendered from the source's structured fields) becomes the last
    snippet, in section ``METADATA_SECTION``; its room is reserved, so the caps never cut it.
    """
    snippets: list[Snippet] = []
    max_snippets = settings.evidence_max_snippets - (1 if metadata else 0)
    max_chars = settings.evidence_max_chars - (len(metadata) if metadata else 0)
    used = 0
    truncated = False
    for section, text in _chunks(passages):
        room = max_chars - used
        if len(snippets) >= max_snippets or room <= 0:
            truncated = True
            break
        if len(text) > room:
            snippets.append(
                Snippet(id=f"S{len(snippets) + 1}", text=_cap(text, room), section=section)
            )
            truncated = True
            break
        snippets.append(Snippet(id=f"S{len(snippets) + 1}", text=text, section=section))
        used += len(text)
    if metadata and max_snippets >= 0:
        snippets.append(
            Snippet(id=f"S{len(snippets) + 1}", text=metadata, section=METADATA_SECTION)
        )
    return snippets, truncated


def content_snippets(snippets: list[Snippet]) -> list[Snippet]:
    """The snippets read from the source's text (not the rendered metadata)."""
    return [s for s in snippets if s.section != METADATA_SECTION]


def judge_coverage(
    snippets: list[Snippet], truncated: bool, *, truncation: str | None = None
) -> tuple[Coverage, str | None]:
    """Coverage of a main text that was read (page body, README, PDF text)."""
    snippets = content_snippets(snippets)
    if not snippets:
        return Coverage.failed, "no readable text"
    text = "\n".join(s.text for s in snippets)
    sentences = count_substantive_sentences(text)
    if truncated:
        kept = f"the first {len(text)} characters were kept"
        return Coverage.partial, f"truncated: {truncation or kept}"
    if sentences >= FULL_MIN_SENTENCES:
        return Coverage.full, None
    return Coverage.partial, f"short text: {sentences} sentences of substance"


def make_evidence(
    url: str,
    adapter: str,
    source: Source,
    snippets: list[Snippet],
    *,
    read: ReadKind,
    coverage: Coverage,
    reason: str | None,
    truncated: bool,
) -> Evidence:
    return Evidence(
        url=url,
        canonical_url=canonical_url(url),
        adapter=adapter,
        sources=[source],
        snippets=snippets,
        read=read,
        coverage=coverage,
        coverage_reason=reason,
        language=source.language,
        truncated=truncated,
        char_count=sum(len(s.text) for s in snippets),
    )
