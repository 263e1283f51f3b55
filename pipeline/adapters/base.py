"""What every adapter shares: numbered snippets, the coverage rules, and the Evidence shape.

Snippets are the unit facts cite (``S1``, ``S2``...): a paragraph, several tiny paragraphs of
the same section merged, or a long paragraph split at sentence ends. The total is capped by
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
from pipeline.text import count_substantive_sentences, normalize_space, split_sentences

FULL_MIN_SENTENCES = 15
SNIPPET_MIN_CHARS = 400  # smaller paragraphs of one section are merged up to this size
SNIPPET_MAX_CHARS = 1200  # larger ones are split at sentence ends


@dataclass(frozen=True)
class Passage:
    """One paragraph of source text and the heading it sits under."""

    text: str
    section: str | None = None
    preformatted: bool = False  # code: keep line breaks, never merge with prose


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


def _chunks(passages: Iterable[Passage]) -> Iterable[tuple[str | None, str]]:
    """(section, text) chunks: tiny paragraphs merged within a section, long ones split."""
    pending: list[str] = []
    pending_section: str | None = None
    for passage in passages:
        text = passage.text.strip() if passage.preformatted else normalize_space(passage.text)
        if not text:
            continue
        if pending and (passage.section != pending_section or passage.preformatted):
            yield pending_section, " ".join(pending)
            pending = []
        if passage.preformatted:
            yield passage.section, text
            continue
        pending_section = passage.section
        pieces = _split_long(text)
        for piece in pieces[:-1]:
            if pending:
                yield pending_section, " ".join(pending)
                pending = []
            yield pending_section, piece
        pending.append(pieces[-1])
        if sum(len(p) + 1 for p in pending) >= SNIPPET_MIN_CHARS:
            yield pending_section, " ".join(pending)
            pending = []
    if pending:
        yield pending_section, " ".join(pending)


def build_snippets(passages: Iterable[Passage], settings: Settings) -> tuple[list[Snippet], bool]:
    """Numbered snippets within the settings' caps, and whether the caps cut anything."""
    snippets: list[Snippet] = []
    used = 0
    for section, text in _chunks(passages):
        if len(snippets) >= settings.evidence_max_snippets:
            return snippets, True
        room = settings.evidence_max_chars - used
        if room <= 0:
            return snippets, True
        if len(text) > room:
            cut = text.rfind(" ", 0, room)
            text = text[: cut if cut > room // 2 else room].rstrip() + " …"
            snippets.append(Snippet(id=f"S{len(snippets) + 1}", text=text, section=section))
            return snippets, True
        snippets.append(Snippet(id=f"S{len(snippets) + 1}", text=text, section=section))
        used += len(text)
    return snippets, False


def judge_coverage(
    snippets: list[Snippet], truncated: bool, *, truncation: str | None = None
) -> tuple[Coverage, str | None]:
    """Coverage of a main text that was read (page body, README, PDF text)."""
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
