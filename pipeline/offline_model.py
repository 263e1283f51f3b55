"""``offline/extractive``: the default model when none is configured. It never writes a claim.

:func:`complete` answers the two stage prompts by SELECTING sentences from the data blocks in
the prompt; ``pipeline.llm.LLMClient`` calls it directly when every model of a stage is offline,
so the offline path never imports litellm (seconds of start-up). :func:`register` also makes it
a litellm custom provider (``pipeline.offline_litellm``), for a Router that falls back to it
after a real model:

- Stage A (``ANSWER-FORMAT: technoshare.facts/v1``): the most salient sentences of the
  ``EVIDENCE``/``TOOL_RESULT`` snippets (list items and lines only when sentences run out), each
  fact citing the snippet it was taken from.
- Stage B (``ANSWER-FORMAT: technoshare.commentary/v1 ...``): from the ``FACTS`` block, a TL;DR
  of the most informative distinct sentences (the first says what the thing is) and a summary
  of the next best in source order (sizes from the marker; never padded:
  ``pipeline.offline_selection``); project bullets for the ``TEAM_CONTEXT`` themes the facts
  really match, each quoting a matching fact (``pipeline.offline_themes``); similar tech: the
  ``SIMILAR_CANDIDATES`` block as it is (the names the source itself gives, ``pipeline.similar``),
  each with a note quoting the sentence that names it; tags from the matched keywords.

Everything is deterministic; it never calls tools. The stages mark its output ``extractive``.
The only words it adds are the bullets' glue ("matches ...:", "no team theme clearly matches")
and the similar tech notes' ("Compared in the source: “...”").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pipeline.context import ProjectContext, parse_project_context
from pipeline.errors import ConfigError
from pipeline.offline_sections import role_picks, split_section
from pipeline.offline_selection import (
    Candidate,
    candidates,
    select_facts,
    select_summary,
    select_tldr,
    top,
)
from pipeline.offline_themes import project_bullets
from pipeline.prompting import (
    COMMENTARY_FORMAT,
    FACTS_FORMAT,
    answer_format,
    block_fields,
    block_items,
    data_blocks,
)

__all__ = [
    "MODEL",
    "PROVIDER",
    "Candidate",
    "OfflineAnswer",
    "answer",
    "candidates",
    "complete",
    "is_offline_model",
    "register",
    "top",
]

PROVIDER = "offline"
MODEL = f"{PROVIDER}/extractive"
MAX_FACTS = 20
MAX_SIMILAR = 5
MAX_TAGS = 8
GATE_PROJECT_FLOOR = 2  # GATE_MIN_PROJECT_BULLETS' default: the bullets the gate requires
ASKED_PROJECT_FLOOR = 3  # stage_b.MIN_PROJECT_BULLETS: what the marker asks of any model

_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
# The similar tech note's glue, by the candidate's relation (pipeline.similar).
_RELATION_NOTES = {
    "alternative": "Named as an alternative",
    "compared against": "Compared in the source",
    "inspired by": "Named as an inspiration",
    "based on": "Named as a building block",
    "related": "Named as related",
}
# The projects gate's failure, when a repair prompt repeats it: its range is the real floor.
_PROJECTS_FEEDBACK = re.compile(
    r"\[projects\] there are \d+ projects bullets; there must be (\d+)-"
)


def is_offline_model(model: str) -> bool:
    return model.split("/", 1)[0] == PROVIDER


# --- stage A -----------------------------------------------------------------------------
def facts_answer(messages_text: str) -> dict[str, Any]:
    source = _source_fields(messages_text)
    items = [
        item
        for block in data_blocks(messages_text)
        if block.label in ("EVIDENCE", "TOOL_RESULT")
        for item in block_items(block.body)
    ]
    sections: dict[str, str | None] = {}
    plain = []
    for item_id, text in items:  # the section names Stage A's EVIDENCE block carries
        sections[item_id], body = split_section(text)
        plain.append((item_id, body))
    found = candidates(plain, source.get("title", ""))
    picks = role_picks(found, sections)  # what was proposed, how, measured, its limits
    rest = select_facts([c for c in found if c not in picks], MAX_FACTS - len(picks))
    chosen = sorted(picks + rest, key=lambda c: c.position)
    read, coverage = source.get("read", "unknown"), source.get("coverage", "unknown")
    unknowns = []
    if coverage != "full":
        unknowns.append(
            f"Only the {read.replace('_', ' ')} was read (coverage {coverage}); "
            "anything beyond it is unknown."
        )
    return {
        "title": source.get("title") or None,
        "key_facts": [{"text": c.fact_text, "snippet_ids": [c.source_id]} for c in chosen],
        "unknowns": unknowns,
        "coverage_assessment": (
            f"Extractive selection of {len(chosen)} sentences from {len(items)} snippets; "
            f"read: {read}, coverage: {coverage}."
        ),
    }


# --- stage B -----------------------------------------------------------------------------
def _similar_tech(messages_text: str) -> list[dict[str, Any]]:
    """The SIMILAR_CANDIDATES block's items as they are (``[C1] name | relation | snippet |
    url | quote``), at most ``MAX_SIMILAR``."""
    out = []
    for block in data_blocks(messages_text, "SIMILAR_CANDIDATES"):
        for _, text in block_items(block.body):
            fields = text.split(" | ", 4)
            if len(fields) < 4 or not fields[0].strip():
                continue
            name, relation, _snippet, url = (f.strip() for f in fields[:4])
            quote = fields[4].strip() if len(fields) > 4 else ""
            glue = _RELATION_NOTES.get(relation, "Named in the source")
            item: dict[str, Any] = {"name": name, "note": f"{glue}: “{quote}”" if quote else glue}
            if url != "-":
                item["url"] = url
            out.append(item)
    return out[:MAX_SIMILAR]


def _join(sentences: list[str]) -> str:
    """Sentences joined with a space, except after CJK text (which uses none)."""
    text = ""
    for s in sentences:
        text += ("" if not text or _CJK_RUN.search(text[-2:]) else " ") + s
    return text


def _project_floor(messages_text: str, asked: int) -> int:
    """The bullets the gate requires: its default, or more when the marker asks for more than
    any model is asked for (the setting was raised), or what a repair prompt says."""
    floor = asked if asked > ASKED_PROJECT_FLOOR else GATE_PROJECT_FLOOR
    for m in _PROJECTS_FEEDBACK.finditer(messages_text):
        floor = max(floor, int(m.group(1)))
    return floor


def commentary_answer(messages_text: str, params: dict[str, tuple[int, int]]) -> dict[str, Any]:
    source = _source_fields(messages_text)
    title = source.get("title", "")
    items = [i for b in data_blocks(messages_text, "FACTS") for i in block_items(b.body)]
    found = candidates(items, title)
    tldr_n = params.get("tldr_items", (3, 3))[1]
    summary_low, summary_high = params.get("summary_sentences", (4, 8))
    projects_low, projects_high = params.get("project_bullets", (3, 8))
    tldr = select_tldr(found, tldr_n)
    summary = select_summary(found, tldr, summary_low, summary_high)
    floor = _project_floor(messages_text, projects_low)
    bullets, tags = project_bullets(
        found, tldr, _team_context(messages_text), title, floor, projects_high
    )
    return {
        "tldr": [c.text for c in tldr],
        "summary": _join([c.text for c in summary]),
        "projects": bullets,
        "similar_tech": _similar_tech(messages_text),
        "tags": tags[:MAX_TAGS],
    }


def _source_fields(messages_text: str) -> dict[str, str]:
    blocks = data_blocks(messages_text, "SOURCE")
    return block_fields(blocks[0].body) if blocks else {}


def _team_context(messages_text: str) -> ProjectContext | None:
    blocks = data_blocks(messages_text, "TEAM_CONTEXT")
    return _parsed_context(blocks[0].body) if blocks else None


@lru_cache(maxsize=8)
def _parsed_context(body: str) -> ProjectContext | None:
    """Parsed once per distinct block (the YAML parser is pure Python; the team context is the
    same in every Stage B prompt of a process). Read-only for its callers."""
    try:
        return parse_project_context(body, origin="prompt TEAM_CONTEXT block")
    except ConfigError:
        return None


# --- the call ---------------------------------------------------------------------------
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


@dataclass(frozen=True)
class OfflineAnswer:
    """One answer and its usage, counted as the litellm provider counts it (about 4
    characters per token), so both paths record the same tokens."""

    model: str
    content: str
    prompt_tokens: int
    completion_tokens: int


def complete(model: str, messages: list[dict[str, Any]]) -> OfflineAnswer:
    """Answer ``messages`` as ``model`` (``offline/<name>``); ValueError when the prompt
    cannot be answered (a permanent error)."""
    text = answer(messages)
    prompt_chars = sum(len(_content(m)) for m in messages)
    return OfflineAnswer(
        model=f"{PROVIDER}/{model.split('/')[-1]}",
        content=text,
        prompt_tokens=prompt_chars // 4 + 1,
        completion_tokens=len(text) // 4 + 1,
    )


def register() -> None:
    """Make ``offline/...`` models callable through litellm (idempotent; imports litellm)."""
    from pipeline.offline_litellm import register_provider

    register_provider(PROVIDER, MODEL, complete)
