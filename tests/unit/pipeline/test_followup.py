"""Follow-up questions answered from a job's archive: the extractive answer quotes the passages
that match (BM25) or says the source does not say; a model's answer must cite passages it was
shown and pass the gates (no foreign links, no mentions), else the extractive answer stands in;
the rendered reply sanitizes what it quotes."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.followup import (
    DOES_NOT_SAY,
    ArchivedJob,
    ModelAnswer,
    answer_followup,
    extractive_answer,
    passages,
    question_text,
)
from pipeline.models import Fact, Facts, Snippet, StageUsage
from pipeline.prompting import FilePromptSource
from pipeline.render_thread import EXTRACTIVE_ANSWER_NOTE, render_followup
from tests.support.builders import make_job

SNIPPETS = [
    Snippet(id="S1", text="redis-py is the Python client for the Redis key-value store."),
    Snippet(id="S2", text="It supports Redis Cluster and Sentinel, with automatic failover."),
    Snippet(id="S3", text="Install it with pip install redis; it needs Python 3.8 or newer."),
    Snippet(id="S4", text="The full documentation lives at https://docs.redis.io/latest/ online."),
    Snippet(id="S5", text="Release notes are announced to @here in the community chat."),
]


def archive(**update: Any) -> ArchivedJob:
    facts = Facts(key_facts=[Fact(text="redis-py is licensed MIT.", snippet_ids=["S1"])])
    a = ArchivedJob(job=make_job(), title="redis/redis-py", snippets=SNIPPETS, facts=facts)
    return a.model_copy(update=update)


class FakeLLM:
    """Answers each call with the next scripted ModelAnswer; records what it was shown."""

    def __init__(self, *answers: ModelAnswer) -> None:
        self.answers = list(answers)
        self.shown: list[str] = []

    def complete_model(self, stage, messages, output_model, *, check=None, **_: Any):
        self.shown.append("\n".join(m["content"] for m in messages))
        answer = self.answers.pop(0)
        if check is not None:
            check(answer)
        return answer, StageUsage(model="fake/model")


def test_question_loses_the_bot_mention():
    assert question_text("<@UBOT> does it  run\non Windows?") == "does it run on Windows?"
    assert question_text("<@UBOT|bot> hi <@U2>") == "hi"


def test_extractive_answer_quotes_the_best_matching_passages_with_their_ids():
    answer = extractive_answer("does it support redis cluster?", [archive()])
    assert answer.extractive and not answer.source_does_not_say
    assert [p.id for p in answer.cited][0] == "S2"
    assert "“It supports Redis Cluster and Sentinel, with automatic failover.” [S2]" in answer.text


def test_extractive_answer_says_the_source_does_not_say_when_nothing_matches():
    answer = extractive_answer("what did the authors eat for breakfast?", [archive()])
    assert answer.source_does_not_say and answer.text == DOES_NOT_SAY and not answer.cited


def test_facts_are_passages_and_several_jobs_get_prefixed_ids():
    one, two = archive(), archive(job=make_job(job_id="job2"), title="other")
    ids = [p.id for p in passages([one, two])]
    assert "1:S2" in ids and "2:F1" in ids and "S2" not in ids
    assert [p.id for p in passages([one])][-1] == "F1"


def test_model_answer_cites_passages_it_was_shown():
    llm = FakeLLM(ModelAnswer(answer="Yes, Cluster and Sentinel.", passage_ids=["S2"]))
    answer = answer_followup("Does it support cluster?", [archive()], llm=llm,
                             prompts=FilePromptSource())  # fmt: skip
    assert answer.text == "Yes, Cluster and Sentinel. [S2]" and not answer.extractive
    assert answer.report.passed
    assert "It supports Redis Cluster" in llm.shown[0]  # the passage was in the prompt


def test_model_citing_an_unknown_passage_is_refused():
    llm = FakeLLM(ModelAnswer(answer="Yes.", passage_ids=["S99"]))
    with pytest.raises(ValueError, match="S99"):  # the client re-asks on this error
        answer_followup("cluster?", [archive()], llm=llm, prompts=FilePromptSource())


def test_model_that_does_not_know_says_so():
    llm = FakeLLM(ModelAnswer(answer="", source_does_not_say=True))
    answer = answer_followup("Windows?", [archive()], llm=llm, prompts=FilePromptSource())
    assert answer.text == DOES_NOT_SAY and answer.source_does_not_say


@pytest.mark.parametrize(
    "bad",
    [
        ModelAnswer(answer="Sure, see https://evil.example/setup.exe", passage_ids=["S2"]),
        ModelAnswer(answer="<!channel> it supports Cluster.", passage_ids=["S2"]),
        ModelAnswer(answer="It supports Cluster.", passage_ids=[]),  # says something, cites nothing
    ],
)
def test_a_model_answer_failing_the_gates_gives_way_to_the_extractive_one(bad):
    answer = answer_followup("does it support cluster?", [archive()], llm=FakeLLM(bad),
                             prompts=FilePromptSource())  # fmt: skip
    assert answer.extractive and "[S2]" in answer.text
    assert "evil.example" not in answer.text and "<!channel>" not in answer.text
    assert answer.report.repaired and any(
        r.name.startswith("model_") for r in answer.report.results
    )


def test_links_from_the_evidence_pass_and_quotes_lose_mentions():
    answer = extractive_answer("where is the documentation?", [archive()])
    assert "https://docs.redis.io/latest/" in answer.text
    announced = extractive_answer("where are release notes announced?", [archive()])
    assert "community chat" in announced.text and "@here" not in announced.text
    llm = FakeLLM(ModelAnswer(answer="See https://docs.redis.io/latest/", passage_ids=["S4"]))
    assert answer_followup("docs?", [archive()], llm=llm, prompts=FilePromptSource()).report.passed


def test_rendered_answer_names_its_source_and_marks_extractive_answers():
    a = archive()
    answer = extractive_answer("does it support redis cluster?", [a])
    message = render_followup(make_job(job_id="fu1", thread_ts="100.1"), answer, [a])
    assert message.thread_ts == "100.1"
    texts = [e["text"] for b in message.blocks for e in b.get("elements", [b.get("text")])]
    assert EXTRACTIVE_ANSWER_NOTE in texts
    assert any("From: <" in t and "redis/redis-py" in t for t in texts)
