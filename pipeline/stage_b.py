"""Stage B: the commentary, written from Stage A's facts, source metadata and the team context.

It never sees the raw evidence text: only ``facts.key_facts``/``unknowns``, the source metadata
(title, authors, read kind, coverage), ``prompts/project_context.yaml`` and the similar tech the
source names (``pipeline.similar``: each candidate with the sentence that names it). Similar
tech is chosen from those candidates only; the similar_tech gate rejects any other name. Facts and metadata
come from an untrusted page, so they enter the prompt as nonce-delimited data blocks too.
``feedback`` (the gate failures) turns the call into the one repair attempt: the repair template
is appended and the calls are recorded with ``purpose="repair"``.

``Commentary.extractive`` is True when the answer came from the offline extractive model (the
primary or a fallback), so the reply can say it is an extractive summary.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.context import ProjectContext
from pipeline.gates import summary_range
from pipeline.models import Commentary, Coverage, Evidence, Facts, SimilarTech
from pipeline.offline_model import is_offline_model
from pipeline.prompting import (
    PromptSource,
    PromptTemplate,
    fields_body,
    items_body,
    new_nonce,
    one_line,
    prompt_ids,
    render,
    wrap_data,
)
from pipeline.settings import Settings
from pipeline.similar import evidence_candidates, mention
from pipeline.stage_a import source_fields

MIN_PROJECT_BULLETS = 3  # asked of the model; the gate's floor (GATE_MIN_PROJECT_BULLETS) is lower


class CommentaryAnswer(BaseModel):
    """What the model writes; the stage adds ``usage`` and ``extractive``."""

    model_config = ConfigDict(extra="forbid")

    tldr: list[str]
    summary: str
    projects: list[str]
    similar_tech: list[SimilarTech] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


@lru_cache(maxsize=1)
def _output_schema() -> str:
    return json.dumps(CommentaryAnswer.model_json_schema())


def team_context_yaml(context: ProjectContext) -> str:
    """The team context as the prompt shows it. The YAML dump (pure Python, ~10 ms) is done
    once per distinct context; the process keeps one context, so once per process."""
    return _context_yaml(context.model_dump_json())


@lru_cache(maxsize=8)
def _context_yaml(context_json: str) -> str:
    return ProjectContext.model_validate_json(context_json).to_prompt_yaml()


def _coverage_note(evidence: Evidence) -> str:
    if evidence.coverage == Coverage.full:
        return "The full text was read."
    reason = f" ({evidence.coverage_reason})" if evidence.coverage_reason else ""
    return (
        f"Only the {evidence.read.value.replace('_', ' ')} was read{reason}: say so, and keep to "
        "what it supports."
    )


def candidate_items(evidence: Evidence) -> list[tuple[str, str]]:
    """``[C1] name | relation | snippet id | url or - | the sentence naming it`` lines: the
    fields hold no `` | `` (names and ids cannot; a URL has no spaces), so the quote is last."""
    items = []
    for i, c in enumerate(evidence_candidates(evidence), 1):
        fields = [c.name, c.relation, c.snippet_id, c.url or "-", mention(evidence, c)]
        items.append((f"C{i}", " | ".join(fields)))
    return items


def build_messages(
    facts: Facts,
    evidence: Evidence,
    *,
    context: ProjectContext,
    prompts: PromptSource,
    settings: Settings,
    feedback: list[str] | None = None,
) -> tuple[list[dict[str, Any]], list[PromptTemplate]]:
    nonce = new_nonce()
    low, high = summary_range(evidence, settings)  # the gate's own bounds
    projects_low = max(MIN_PROJECT_BULLETS, settings.gate_min_project_bullets)
    sizes = {
        "tldr_items": settings.gate_tldr_items,
        "summary_min": low,
        "summary_max": high,
        "projects_min": min(projects_low, settings.gate_max_project_bullets),
        "projects_max": settings.gate_max_project_bullets,
    }
    system_t, user_t = prompts.get("stage_b_system"), prompts.get("stage_b_user")
    templates = [system_t, user_t]
    system = render(
        system_t,
        nonce=nonce,
        team_name=context.team,
        theme_names=", ".join(context.theme_names()),
        coverage_note=_coverage_note(evidence),
        max_similar_tech=settings.gate_max_similar_tech,
        output_schema=_output_schema(),
        **sizes,
    )
    meta = {**source_fields(evidence), "title": facts.title or evidence.title}
    facts_items = ((f"F{i}", f.text) for i, f in enumerate(facts.key_facts, 1))
    unknown_items = ((f"U{i}", u) for i, u in enumerate(facts.unknowns, 1))
    user = render(
        user_t,
        source=wrap_data("SOURCE", fields_body(meta, nonce), nonce),
        facts=wrap_data("FACTS", items_body(facts_items, nonce), nonce),
        unknowns=wrap_data("UNKNOWNS", items_body(unknown_items, nonce), nonce),
        team_context=wrap_data("TEAM_CONTEXT", team_context_yaml(context), nonce),
        similar_candidates=wrap_data(
            "SIMILAR_CANDIDATES", items_body(candidate_items(evidence), nonce), nonce
        ),
        fact_count=len(facts.key_facts),
        nonce=nonce,
        **sizes,
    )
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if feedback:
        repair_t = prompts.get("stage_b_repair")
        templates.append(repair_t)
        lines = "\n".join(f"- {one_line(item, nonce)}" for item in feedback)
        messages.append({"role": "user", "content": render(repair_t, feedback=lines)})
    return messages, templates


def run_stage_b(
    facts: Facts,
    evidence: Evidence,
    *,
    context: ProjectContext,
    llm: Any,
    prompts: PromptSource,
    settings: Settings,
    feedback: list[str] | None = None,
) -> Commentary:
    messages, templates = build_messages(
        facts,
        evidence,
        context=context,
        prompts=prompts,
        settings=settings,
        feedback=feedback,
    )
    answer, usage = llm.complete_model(
        "stage_b", messages, CommentaryAnswer, purpose="repair" if feedback else "answer"
    )
    usage.prompt_name, usage.prompt_version = prompt_ids(templates)
    return Commentary(
        **answer.model_dump(),
        extractive=is_offline_model(usage.model),
        usage=usage,
    )
