"""LLM-judge scorers: TL;DR faithfulness to the facts, relevance of the projects bullets to the
team's themes, and invented similar tech.

They need a real model. With the default ``offline/...`` model there is nothing able to judge
(the offline model only selects sentences), so ``judges_status`` reports them as skipped with
the reason, and the runner writes that to stdout, the results JSON and the run's params instead
of pretending to have scored them.

Each judge asks for ``{"verdict": "yes" | "no", "rationale": "..."}`` through the project's own
``LLMClient`` (same model routing, retries and cost accounting as the stages).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from pipeline.settings import Settings

JUDGE_NAMES = ("tldr_faithfulness", "theme_relevance", "similar_tech_not_invented")
JUDGE_STAGE = "judge"  # settings.model_for(JUDGE_STAGE) -> llm_model


class JudgeVerdict(BaseModel):
    model_config = ConfigDict(extra="ignore")
    verdict: Literal["yes", "no"]
    rationale: str = ""


Ask = Callable[[str, str], JudgeVerdict]  # (system, user) -> verdict


def real_model_configured(settings: Settings) -> bool:
    return not settings.model_for(JUDGE_STAGE).startswith("offline/")


def judges_status(settings: Settings) -> dict[str, Any]:
    """``{"enabled": bool, "model": str, "reason": str}`` for the output and the results JSON."""
    model = settings.model_for(JUDGE_STAGE)
    if real_model_configured(settings):
        return {"enabled": True, "model": model, "reason": ""}
    return {
        "enabled": False,
        "model": model,
        "reason": f"skipped: LLM judges need a real model (LLM_MODEL={model} is offline)",
    }


def llm_ask(settings: Settings) -> Ask:
    """An ``Ask`` backed by ``pipeline.llm.LLMClient`` (imported lazily: litellm is slow)."""
    from pipeline.llm import LLMClient

    client = LLMClient(settings)

    def ask(system: str, user: str) -> JudgeVerdict:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        verdict, _usage = client.complete_model(JUDGE_STAGE, messages, JudgeVerdict)
        return verdict

    return ask


_SYSTEM = (
    "You are a strict reviewer of a Slack bot's commentary on a shared tech link. Judge only "
    "what is asked, using only the material given. Answer with a JSON object "
    '{"verdict": "yes" or "no", "rationale": "one or two sentences"}.'
)


def _facts_block(outputs: dict[str, Any]) -> str:
    facts = outputs.get("facts") or []
    return "\n".join(f"- {f}" for f in facts) or "(no facts)"


def faithfulness_prompt(outputs: dict[str, Any]) -> str:
    tldr = (outputs.get("commentary") or {}).get("tldr", [])
    return (
        f"FACTS extracted from the source:\n{_facts_block(outputs)}\n\n"
        f"TL;DR:\n" + "\n".join(f"- {t}" for t in tldr) + "\n\n"
        "Is every claim in the TL;DR supported by the FACTS (nothing added, nothing distorted)?"
    )


def relevance_prompt(outputs: dict[str, Any], themes: str) -> str:
    projects = (outputs.get("commentary") or {}).get("projects", [])
    return (
        f"The team's THEMES:\n{themes}\n\nSOURCE title: {outputs.get('title')}\n"
        f"FACTS:\n{_facts_block(outputs)}\n\nPROJECTS bullets:\n"
        + "\n".join(f"- {p}" for p in projects)
        + "\n\nDo the bullets connect the source to the right themes with specific, sensible "
        "reasons (or honestly say General when no theme fits)?"
    )


def similar_tech_prompt(outputs: dict[str, Any]) -> str:
    similar = (outputs.get("commentary") or {}).get("similar_tech", [])
    return (
        f"SOURCE title: {outputs.get('title')}\nFACTS:\n{_facts_block(outputs)}\n\n"
        f"SIMILAR TECH listed by the bot:\n{json.dumps(similar, ensure_ascii=False)}\n\n"
        "Is every entry a real, existing technology that is genuinely similar (no invented "
        "names, no made-up URLs or claims)? An empty list is acceptable: answer yes."
    )


def themes_text(settings: Settings) -> str:
    """The themes as the judge sees them, from the project context (names + descriptions)."""
    from pipeline.context import load_project_context

    context = load_project_context(settings.project_context_path)
    lines = []
    for theme in context.themes:
        description = getattr(theme, "description", "") or ""
        lines.append(f"- {getattr(theme, 'name', theme)}: {description}".rstrip(": "))
    return "\n".join(lines)


def build_judge_scorers(ask: Ask, themes: str) -> list[Any]:
    """The three judges as ``@scorer`` objects; each returns a yes/no Feedback with rationale."""
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import scorer

    def _feedback(system: str, user: str) -> Feedback:
        try:
            verdict = ask(system, user)
        except Exception as exc:  # a judge that cannot answer is an error, not a "no"
            return Feedback(value=None, error=exc)
        return Feedback(value=verdict.verdict == "yes", rationale=verdict.rationale)

    @scorer(name="tldr_faithfulness")
    def faithfulness(outputs: dict[str, Any]) -> Feedback:
        return _feedback(_SYSTEM, faithfulness_prompt(outputs))

    @scorer(name="theme_relevance")
    def relevance(outputs: dict[str, Any]) -> Feedback:
        return _feedback(_SYSTEM, relevance_prompt(outputs, themes))

    @scorer(name="similar_tech_not_invented")
    def similar(outputs: dict[str, Any]) -> Feedback:
        return _feedback(_SYSTEM, similar_tech_prompt(outputs))

    return [faithfulness, relevance, similar]
