"""Follow-up questions: ``@bot does it run on Windows?`` in the thread of one of the bot's
replies, answered from what that job read (its snippets and facts), never from memory.

    question + the thread's archived jobs -> FollowupAnswer -> gates -> SlackMessage

With a model, the answer is the model's, citing snippet ids it was shown; the gates check
that every cited id exists, that it links nothing outside the evidence and mentions no one.
With the offline model (or when the model's answer fails the gates), the answer is the
best-matching snippets quoted verbatim (BM25), marked extractive. When nothing matches well
enough the answer says plainly "The source does not say."
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.models import Evidence, Facts, GateReport, GateResult, Job, Snippet, StageUsage
from pipeline.prompting import (
    PromptSource,
    items_body,
    new_nonce,
    prompt_ids,
    render,
    wrap_data,
)
from pipeline.ranking import BM25
from pipeline.sanitize import (
    allowed_url_keys,
    find_links,
    find_mentions,
    link_key,
    strip_mentions,
)
from pipeline.text import content_tokens

DOES_NOT_SAY = "The source does not say."
# A passage answers the question when it scores this fraction of a perfect BM25 match of the
# question's content words; below it, "the source does not say" is the honest answer.
MIN_PASSAGE_SCORE = 0.35
MAX_QUOTES = 2
MAX_SHOWN = 12  # passages shown to a model: the best-matching ones, so the prompt stays small
QUOTE_MAX_CHARS = 400
_MENTION_TOKEN = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")


class Passage(BaseModel):
    """One citable piece of a job's archive: a snippet, or a fact (cited by ``F<n>``)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    text: str
    job_id: str
    title: str


class ArchivedJob(BaseModel):
    """What one job of the thread read (``services.history_store.JobArchive``, as the stage
    sees it)."""

    model_config = ConfigDict(extra="forbid")

    job: Job
    title: str
    snippets: list[Snippet] = Field(default_factory=list)
    facts: Facts = Field(default_factory=Facts)

    def evidence(self) -> Evidence:
        return Evidence(
            url=self.job.url,
            canonical_url=self.job.canonical_url,
            adapter="archive",
            snippets=self.snippets,
        )


class FollowupAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    text: str
    cited: list[Passage] = Field(default_factory=list)
    source_does_not_say: bool = False
    extractive: bool = False
    job_ids: list[str] = Field(default_factory=list)
    report: GateReport = Field(default_factory=GateReport)
    usage: StageUsage = Field(default_factory=StageUsage)


class ModelAnswer(BaseModel):
    """What the model writes."""

    model_config = ConfigDict(extra="forbid")

    answer: str
    passage_ids: list[str] = Field(default_factory=list)
    source_does_not_say: bool = False


def question_text(text: str) -> str:
    """The question without the bot's mention token(s)."""
    return " ".join(_MENTION_TOKEN.sub(" ", text).split())


def passages(archives: Sequence[ArchivedJob]) -> list[Passage]:
    """Every snippet and fact of the thread's jobs; ids are prefixed by the job's position
    when the thread holds several (``2:S4``), so a citation names one passage."""
    found = []
    for n, a in enumerate(archives, 1):
        prefix = f"{n}:" if len(archives) > 1 else ""
        for s in a.snippets:
            found.append(Passage(id=prefix + s.id, text=s.text, job_id=a.job.job_id, title=a.title))
        for i, f in enumerate(a.facts.key_facts, 1):
            found.append(
                Passage(id=f"{prefix}F{i}", text=f.text, job_id=a.job.job_id, title=a.title)
            )
    return found


def best_passages(question: str, pool: Sequence[Passage], *, min_score: float) -> list[Passage]:
    query = content_tokens(question)
    if not query or not pool:
        return []
    index = BM25([content_tokens(p.text) for p in pool])
    return [pool[i] for i, _ in index.ranked(query, min_score=min_score)]


def _quote(text: str) -> str:
    text = " ".join(strip_mentions(text).split())  # a source's "@here" is quoted, not sent
    return text if len(text) <= QUOTE_MAX_CHARS else text[: QUOTE_MAX_CHARS - 1] + "…"


def extractive_answer(question: str, archives: Sequence[ArchivedJob]) -> FollowupAnswer:
    """The best-matching passages, quoted verbatim with their ids; or "the source does not
    say" when no passage matches the question well enough."""
    ids = [a.job.job_id for a in archives]
    best, seen = [], set()
    for p in best_passages(question, passages(archives), min_score=MIN_PASSAGE_SCORE):
        key = " ".join(p.text.split()).casefold()  # a fact may repeat its snippet word for word
        if key not in seen:
            seen.add(key)
            best.append(p)
    best = best[:MAX_QUOTES]
    if not best:
        return FollowupAnswer(
            question=question, text=DOES_NOT_SAY, source_does_not_say=True, extractive=True,
            job_ids=ids,
        )  # fmt: skip
    lines = [f"“{_quote(p.text)}” [{p.id}]" for p in best]
    return FollowupAnswer(
        question=question, text="\n".join(lines), cited=best, extractive=True, job_ids=ids
    )


def build_messages(
    question: str, shown: Sequence[Passage], prompts: PromptSource
) -> tuple[list[dict[str, Any]], list[Any]]:
    nonce = new_nonce()
    system_t, user_t = prompts.get("followup_system"), prompts.get("followup_user")
    system = render(
        system_t, nonce=nonce, output_schema=json.dumps(ModelAnswer.model_json_schema())
    )
    items = ((p.id, f"({p.title}) {p.text}") for p in shown)
    user = render(
        user_t,
        question=wrap_data("QUESTION", question, nonce),
        passages=wrap_data("PASSAGES", items_body(items, nonce), nonce),
        does_not_say=DOES_NOT_SAY,
    )
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return messages, [system_t, user_t]


def model_answer(
    question: str, archives: Sequence[ArchivedJob], llm: Any, prompts: PromptSource
) -> FollowupAnswer:
    pool = passages(archives)
    shown = best_passages(question, pool, min_score=0.0)[:MAX_SHOWN] or pool[:MAX_SHOWN]
    by_id = {p.id: p for p in shown}
    messages, templates = build_messages(question, shown, prompts)

    def check(answer: ModelAnswer) -> None:  # a wrong id is re-asked by the client
        unknown = [i for i in answer.passage_ids if i not in by_id]
        if unknown:
            raise ValueError(f"passage ids not shown: {', '.join(unknown)}")

    answer, usage = llm.complete_model("followup", messages, ModelAnswer, check=check)
    usage.prompt_name, usage.prompt_version = prompt_ids(templates)
    ids = [a.job.job_id for a in archives]
    if answer.source_does_not_say or not answer.answer.strip():
        return FollowupAnswer(
            question=question, text=DOES_NOT_SAY, source_does_not_say=True, job_ids=ids,
            usage=usage,
        )  # fmt: skip
    cited = [by_id[i] for i in answer.passage_ids]
    text = " ".join(answer.answer.split())
    if cited:
        text += " [" + ", ".join(p.id for p in cited) + "]"
    return FollowupAnswer(question=question, text=text, cited=cited, job_ids=ids, usage=usage)


def check_answer(answer: FollowupAnswer, archives: Sequence[ArchivedJob]) -> GateReport:
    """No links outside the evidence or the question, no mentions, and a model's answer cites
    what it says (an answer that is not "does not say" cites at least one passage)."""
    allowed: set[str] = set()
    for a in archives:
        allowed |= allowed_url_keys(a.evidence(), answer.question)
    links = [u for u in find_links(answer.text) if link_key(u) not in allowed]
    mentions = find_mentions(answer.text)
    uncited = not (answer.source_does_not_say or answer.cited)
    results = [
        GateResult(name="urls", passed=not links, detail=", ".join(sorted(set(links)))),
        GateResult(name="mentions", passed=not mentions, detail=", ".join(sorted(set(mentions)))),
        GateResult(name="citations", passed=not uncited, detail="no passage cited" * uncited),
    ]
    return GateReport(results=results)


def answer_followup(
    question: str,
    archives: Sequence[ArchivedJob],
    *,
    llm: Any | None,
    prompts: PromptSource,
) -> FollowupAnswer:
    """The model's answer when there is a model (``llm``) and it passes the gates; else the
    extractive one. The report is the gates' verdict on the answer that is returned."""
    question = question_text(question)
    if llm is not None:
        answer = model_answer(question, archives, llm, prompts)
        report = check_answer(answer, archives)
        if report.passed:
            return answer.model_copy(update={"report": report})
        fallback = extractive_answer(question, archives)
        fallback = fallback.model_copy(update={"usage": answer.usage})
        return fallback.model_copy(
            update={"report": _with_failures(check_answer(fallback, archives), report)}
        )
    answer = extractive_answer(question, archives)
    return answer.model_copy(update={"report": check_answer(answer, archives)})


def _with_failures(report: GateReport, rejected: GateReport) -> GateReport:
    """The fallback's own report, noting which gates the model's answer failed."""
    notes = [
        GateResult(name=f"model_{r.name}", passed=True, detail=f"model answer rejected: {r.detail}")
        for r in rejected.failures
    ]
    return report.model_copy(update={"results": [*report.results, *notes], "repaired": True})
