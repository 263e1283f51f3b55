"""Follow-up questions in the evaluation: the dataset accepts them, the runner answers them from
the example's own evidence, and an example passes only when each answer does what it must."""

from __future__ import annotations

from eval.dataset import DEFAULT_DATASET, load_dataset
from eval.execute import recorded_deps, run_example
from eval.scorers import followups_correct
from pipeline.settings import Settings


def test_followups_score_terms_does_not_say_and_gates():
    cases = [
        {"question": "HTTP/2?", "answer_has": ["HTTP/2"], "does_not_say": False},
        {"question": "Sponsor?", "answer_has": [], "does_not_say": True},
    ]
    good = {"followups": [
        {"question": "HTTP/2?", "text": "“support for HTTP/2” [S3]", "does_not_say": False, "gates_passed": True},
        {"question": "Sponsor?", "text": "The source does not say.", "does_not_say": True, "gates_passed": True},
    ]}  # fmt: skip
    assert followups_correct(good, cases) == (1.0, [])
    guessed = {"followups": [dict(good["followups"][0]), {**good["followups"][1], "does_not_say": False}]}  # fmt: skip
    assert followups_correct(guessed, cases) == (0.5, ["Sponsor?"])
    unsafe = {"followups": [{**good["followups"][0], "gates_passed": False}, good["followups"][1]]}
    assert followups_correct(unsafe, cases) == (0.5, ["HTTP/2?"])
    assert followups_correct({}, cases) == (0.0, ["HTTP/2?", "Sponsor?"])


def test_dataset_followups_are_answered_from_the_examples_evidence():
    examples = {e.id: e for e in load_dataset(DEFAULT_DATASET).examples if e.followups}
    assert {"gh-httpx", "arxiv-scipy-fulltext"} <= set(examples)
    settings = Settings(llm_model="offline/extractive", mlflow_enable_tracking=False)
    with recorded_deps(settings) as deps:
        run = run_example(examples["arxiv-scipy-fulltext"], deps)
    answers = {a["question"]: a for a in run.outputs["followups"]}
    assert "100 unique contributors" in answers["How many contributors worked on the library?"]["text"]  # fmt: skip
    assert answers["What is the favourite colour of the authors?"]["does_not_say"]
    assert run.scores["followups_correct"] == 1.0 and run.scores["passed"]
