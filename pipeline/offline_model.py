"""``offline/extractive``: the default model when none is configured. It never writes a claim.

A litellm custom provider (``litellm.CustomLLM`` in ``litellm.custom_provider_map``, registered
with zero cost so ``completion_cost`` works) that answers the two stage prompts by SELECTING
sentences from the data blocks in the prompt:

- Stage A (``ANSWER-FORMAT: technoshare.facts/v1``): the most salient sentences of the
  ``EVIDENCE``/``TOOL_RESULT`` snippets, each fact citing the snippet it was taken from.
- Stage B (``ANSWER-FORMAT: technoshare.commentary/v1 ...``): TL;DR and summary sentences chosen
  from the ``FACTS`` block (sizes from the marker; never padded), project bullets from keyword
  overlap between the facts and the ``TEAM_CONTEXT`` themes (quoting the matching fact),
  similar tech only where a fact names it after a comparison cue, tags from matched keywords.

Salience is centrality: a sentence scores by how frequent its words (Latin words, CJK character
bigrams) are in the whole text, plus a bonus for title words and an early position. Everything
is deterministic; it never calls tools. The stages mark its output ``extractive``.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.types.utils import ModelResponse, Usage

from pipeline.context import ProjectContext, Theme, parse_project_context
from pipeline.errors import ConfigError
from pipeline.prompting import (
    COMMENTARY_FORMAT,
    FACTS_FORMAT,
    answer_format,
    block_fields,
    block_items,
    data_blocks,
)
from pipeline.text import is_substantive, split_sentences

PROVIDER = "offline"
MODEL = f"{PROVIDER}/extractive"
MAX_FACTS = 20
MAX_TLDR_CHARS = 300
MAX_SIMILAR = 5
MAX_TAGS = 8

_ZERO_COST = {
    "input_cost_per_token": 0.0,
    "output_cost_per_token": 0.0,
    "cache_creation_input_token_cost": 0.0,
    "cache_read_input_token_cost": 0.0,
    "max_input_tokens": 1_000_000,
    "max_output_tokens": 100_000,
    "litellm_provider": PROVIDER,
    "mode": "chat",
}
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
_WORD = re.compile(r"[^\W\d_]{3,}")
_ENDS_SENTENCE = re.compile(r"[.!?。！？][”’\"')\]」』）]*$")
_URL_OR_MARKUP = re.compile(r"https?://|www\.|<[!@#]|\{\{|```", re.I)
_COMPARISON = re.compile(
    r"\b(?i:compared (?:to|with)|unlike|similar to|alternatives? (?:to|such as)|"
    r"inspired by|versus|vs\.?|outperforms?|replaces?)\s+"
    r"(?P<name>[A-Z][\w.+#-]*(?:[ -][A-Z0-9][\w.+#-]*){0,2})"
)
# Tokens are letter runs of 3+ (no apostrophes), so contractions need no entry.
_STOPWORDS_TEXT = """
about after again against all also and any are based been before being between both but can
could did does doing done during each for from had has have her here his how into its just many
may might more most much must new one only onto other our out over per shall should some such
than that the their them then there these they this those three two under until upon use used
using very via was were what when where which while who why will with would you your yours
"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def is_offline_model(model: str) -> bool:
    return model.split("/", 1)[0] == PROVIDER


# --- salience ----------------------------------------------------------------------------
def tokens(text: str) -> list[str]:
    """Latin-script words (3+ letters, no stopwords) and CJK character bigrams."""
    low = text.lower()
    out = [w for w in _WORD.findall(_CJK_RUN.sub(" ", low)) if w not in _STOPWORDS]
    for run in _CJK_RUN.findall(low):
        out += [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
    return out


@dataclass
class Candidate:
    text: str
    source_id: str  # snippet id (stage A) or fact id (stage B)
    position: int
    score: float = 0.0


def _eligible(sentence: str) -> bool:
    return (
        is_substantive(sentence)
        and len(sentence) <= 600
        and bool(_ENDS_SENTENCE.search(sentence))
        and not _URL_OR_MARKUP.search(sentence)
    )


def candidates(items: list[tuple[str, str]], title: str = "") -> list[Candidate]:
    """Eligible sentences of ``items`` (id, text), scored; duplicates dropped."""
    found: list[Candidate] = []
    seen: set[str] = set()
    for item_id, text in items:
        for sentence in split_sentences(text):
            key = sentence.lower()
            if key in seen or not _eligible(sentence):
                continue
            seen.add(key)
            found.append(Candidate(sentence, item_id, len(found)))
    frequency = Counter(t for c in found for t in set(tokens(c.text)))
    title_tokens = set(tokens(title))
    n = max(len(found), 1)
    for c in found:
        own = set(tokens(c.text))
        if not own:
            continue
        centrality = sum(math.log1p(frequency[t]) for t in sorted(own)) / math.sqrt(len(own))
        title_bonus = len(own & title_tokens) / math.sqrt(len(title_tokens) or 1)
        c.score = centrality + title_bonus + 0.5 * (1 - c.position / n)
    return found


def top(found: list[Candidate], k: int) -> list[Candidate]:
    """The ``k`` best by score (ties: earlier first), returned in document order."""
    best = sorted(found, key=lambda c: (-c.score, c.position))[: max(k, 0)]
    return sorted(best, key=lambda c: c.position)


# --- stage A -----------------------------------------------------------------------------
def facts_answer(messages_text: str) -> dict[str, Any]:
    source = _source_fields(messages_text)
    items = [
        item
        for block in data_blocks(messages_text)
        if block.label in ("EVIDENCE", "TOOL_RESULT")
        for item in block_items(block.body)
    ]
    chosen = top(candidates(items, source.get("title", "")), MAX_FACTS)
    read, coverage = source.get("read", "unknown"), source.get("coverage", "unknown")
    unknowns = []
    if coverage != "full":
        unknowns.append(
            f"Only the {read.replace('_', ' ')} was read (coverage {coverage}); "
            "anything beyond it is unknown."
        )
    return {
        "title": source.get("title") or None,
        "key_facts": [{"text": c.text, "snippet_ids": [c.source_id]} for c in chosen],
        "unknowns": unknowns,
        "coverage_assessment": (
            f"Extractive selection of {len(chosen)} sentences from {len(items)} snippets; "
            f"read: {read}, coverage: {coverage}."
        ),
    }


# --- stage B -----------------------------------------------------------------------------
def _keyword_pattern(keyword: str) -> re.Pattern[str]:
    if _CJK_RUN.search(keyword):
        return re.compile(re.escape(keyword))
    return re.compile(rf"(?<![\w-]){re.escape(keyword)}(?:s|es)?(?![\w-])", re.I)


def _theme_matches(theme: Theme, found: list[Candidate]) -> dict[str, list[Candidate]]:
    """keyword -> the candidates that contain it."""
    hits: dict[str, list[Candidate]] = {}
    for keyword in dict.fromkeys([*theme.keywords, *theme.stack]):
        pattern = _keyword_pattern(keyword)
        matched = [c for c in found if pattern.search(c.text)]
        if matched:
            hits[keyword.lower()] = matched
    return hits


def _projects(
    found: list[Candidate], context: ProjectContext | None, low: int, high: int
) -> tuple[list[str], list[str]]:
    """(bullets, matched keywords by weight)."""
    ranked = []
    for order, theme in enumerate(context.themes if context else []):
        hits = _theme_matches(theme, found)
        if hits:
            ranked.append((-len(hits), -sum(map(len, hits.values())), order, theme, hits))
    ranked.sort(key=lambda r: r[:3])
    bullets: list[str] = []
    quoted: set[int] = set()
    keyword_weight: Counter[str] = Counter()
    for *_, theme, hits in ranked[:high]:
        per_candidate = Counter(c.position for cs in hits.values() for c in cs)
        by_position = {c.position: c for cs in hits.values() for c in cs}
        best = sorted(
            by_position.values(),
            key=lambda c: (
                c.position in quoted,  # a sentence not quoted by another bullet first
                len(c.text) > MAX_TLDR_CHARS,  # then a short one
                -per_candidate[c.position],
                -c.score,
                c.position,
            ),
        )[0]
        quoted.add(best.position)
        shown = ", ".join(sorted(hits, key=lambda k: (-len(hits[k]), k))[:3])
        bullets.append(f"**{theme.name}** — matches {shown}: “{best.text}”")
        keyword_weight.update({k: len(v) for k, v in hits.items()})
    for c in sorted(found, key=lambda c: (-c.score, c.position)):
        if len(bullets) >= low:
            break
        if c.position not in quoted:
            quoted.add(c.position)
            bullets.append(f"**General** — “{c.text}”")
    tags = [k for k, _ in sorted(keyword_weight.items(), key=lambda kv: (-kv[1], kv[0]))]
    return bullets, tags


def _similar_tech(found: list[Candidate], title: str) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for c in found:
        for m in _COMPARISON.finditer(c.text):
            name = m["name"].rstrip(".,;:")
            if name.lower() in title.lower() or name.lower() in out:
                continue
            out[name.lower()] = {"name": name, "note": f"Named in the source: “{c.text}”"}
    return list(out.values())[:MAX_SIMILAR]


def _join(sentences: list[str]) -> str:
    """Sentences joined with a space, except after CJK text (which uses none)."""
    text = ""
    for s in sentences:
        text += ("" if not text or _CJK_RUN.search(text[-2:]) else " ") + s
    return text


def commentary_answer(messages_text: str, params: dict[str, tuple[int, int]]) -> dict[str, Any]:
    source = _source_fields(messages_text)
    title = source.get("title", "")
    items = [i for b in data_blocks(messages_text, "FACTS") for i in block_items(b.body)]
    found = candidates(items, title)
    tldr_n = params.get("tldr_items", (3, 3))[1]
    summary_n = params.get("summary_sentences", (4, 8))[1]
    projects_low, projects_high = params.get("project_bullets", (3, 8))
    short = [c for c in found if len(c.text) <= MAX_TLDR_CHARS] or found
    bullets, tags = _projects(found, _team_context(messages_text), projects_low, projects_high)
    return {
        "tldr": [c.text for c in top(short, tldr_n)],
        "summary": _join([c.text for c in top(found, summary_n)]),
        "projects": bullets,
        "similar_tech": _similar_tech(found, title),
        "tags": tags[:MAX_TAGS],
    }


def _source_fields(messages_text: str) -> dict[str, str]:
    blocks = data_blocks(messages_text, "SOURCE")
    return block_fields(blocks[0].body) if blocks else {}


def _team_context(messages_text: str) -> ProjectContext | None:
    blocks = data_blocks(messages_text, "TEAM_CONTEXT")
    if not blocks:
        return None
    try:
        return parse_project_context(blocks[0].body, origin="prompt TEAM_CONTEXT block")
    except ConfigError:
        return None


# --- the litellm provider ----------------------------------------------------------------
def _content(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # OpenAI content parts
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def answer(messages: list[dict[str, Any]]) -> str:
    """The JSON answer to a stage prompt. Raises ValueError when the prompt has no marker."""
    system = "\n".join(_content(m) for m in messages if m.get("role") == "system")
    rest = "\n".join(_content(m) for m in messages if m.get("role") != "system")
    marker = answer_format(system)
    if marker is None:
        raise ValueError("offline/extractive needs a system prompt with an ANSWER-FORMAT line")
    fmt, params = marker
    if fmt == FACTS_FORMAT:
        return json.dumps(facts_answer(rest), ensure_ascii=False)
    if fmt == COMMENTARY_FORMAT:
        return json.dumps(commentary_answer(rest, params), ensure_ascii=False)
    raise ValueError(f"offline/extractive cannot answer format {fmt}")


class OfflineExtractiveLLM(CustomLLM):
    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        # litellm passes everything by keyword (model, messages, model_response, ...).
        model: str = kwargs["model"]
        messages: list[dict[str, Any]] = kwargs["messages"]
        response: ModelResponse = kwargs["model_response"]
        try:
            text = answer(messages)
        except ValueError as exc:  # a permanent error: litellm must not retry it
            raise litellm.BadRequestError(
                message=str(exc), model=MODEL, llm_provider=PROVIDER
            ) from exc
        prompt_chars = sum(len(_content(m)) for m in messages)
        response.choices[0].message.content = text  # type: ignore[union-attr]
        response.model = f"{PROVIDER}/{model.split('/')[-1]}"
        response.usage = Usage(  # type: ignore[attr-defined]
            prompt_tokens=prompt_chars // 4 + 1,
            completion_tokens=len(text) // 4 + 1,
            total_tokens=prompt_chars // 4 + len(text) // 4 + 2,
        )
        return response


_handler = OfflineExtractiveLLM()


def register() -> None:
    """Make ``offline/...`` models callable through litellm (idempotent)."""
    if not any(p.get("provider") == PROVIDER for p in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": PROVIDER, "custom_handler": _handler},
        ]
    litellm.register_model({MODEL: dict(_ZERO_COST)})
