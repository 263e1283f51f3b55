"""The team's history: "Shared before" found by TF-IDF over the channel's answered links, kept by
slack_post, carried through a repair, rendered with the thread link; and, on the recorded
corpus shared one link after another in one channel, similar tech (from the source or the
history) for at least half of the repos and papers, every name from the evidence or the
history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from pipeline.deps import StageDeps
from pipeline.fetch import SafeFetcher
from pipeline.history import MemoryHistory, entry_for, related, themes_of
from pipeline.models import JobCarry, Outcome, SharedBefore
from pipeline.render import render_commentary, section_texts
from pipeline.settings import Settings
from pipeline.stages import STAGE_BY_NAME, STAGES, advance
from services.recorded_web import RecordedWeb
from services.run_cli import make_cli_job
from services.wiring import build_deps
from tests.support.builders import make_commentary, make_evidence, make_facts, make_job

WEB = RecordedWeb()
CORPUS = [u for kind in ("github", "arxiv") for u in WEB.recorded_urls().get(kind, [])]


@pytest.fixture(scope="module")
def deps() -> Iterator[StageDeps]:
    settings = Settings(llm_model="offline/extractive", mlflow_enable_tracking=False)
    fetcher = SafeFetcher(settings, transport=WEB.transport, resolver=WEB.resolver)
    built = build_deps(settings, fetcher=fetcher, history=MemoryHistory())
    yield built
    built.close()


def run_all(url: str, deps: StageDeps) -> JobCarry:
    carry = JobCarry(job=make_cli_job(url).model_copy(update={"channel_id": "C1"}))
    for stage in STAGES:
        carry = advance(stage, carry, deps)
    return carry


@pytest.fixture(scope="module")
def shared(deps) -> dict[str, JobCarry]:
    """Each repo and paper of the corpus shared in turn in one channel."""
    return {url: run_all(url, deps) for url in CORPUS}


def test_corpus_similar_tech_from_source_or_history_on_half_the_items(shared, deps):
    assert len(CORPUS) >= 20
    history = deps.history
    assert isinstance(history, MemoryHistory)
    by_job = {e.job_id: e for e in history.entries}
    with_similar = 0
    for url, carry in shared.items():
        commentary = carry.need("review").commentary
        assert carry.review.report.passed, url  # the similar_tech gate checked every name
        for item in commentary.shared_before:  # every "Shared before" is a stored entry
            entry = by_job[item.job_id]
            assert (item.title, item.url) == (entry.title, entry.url)
            assert item.url != url
        with_similar += bool(commentary.similar_tech or commentary.shared_before)
    assert with_similar / len(shared) >= 0.5, with_similar


def test_links_on_one_subject_find_each_other_and_unrelated_ones_do_not(shared, deps):
    pair = ["https://github.com/cunla/fakeredis", "https://github.com/redis/redis-py"]
    earlier, later = sorted(pair, key=CORPUS.index)  # the later share finds the earlier one
    assert earlier in [s.url for s in shared[later].review.commentary.shared_before]
    entries = deps.history.entries
    numpy = next(c for c in shared.values() if "NumPy" in (c.facts.title or ""))
    scipy_entries = [e for e in entries if "SciPy" in e.title]
    found = related(numpy.job, numpy.evidence, numpy.facts, numpy.review.commentary, entries)
    assert scipy_entries and scipy_entries[0].job_id in [s.job_id for s in found]
    celery = shared["https://github.com/celery/celery"]
    found = related(celery.job, celery.evidence, celery.facts, celery.review.commentary, entries)
    assert not any("arxiv.org" in s.url for s in found)  # a task queue is no paper's neighbour


def test_same_link_and_other_channels_are_never_shared_before(shared, deps):
    carry = shared["https://github.com/redis/redis-py"]
    entries = deps.history.entries
    mine = [e for e in entries if e.canonical_url == carry.job.canonical_url]
    assert mine and not related(
        carry.job, carry.evidence, carry.facts, carry.review.commentary, mine
    )
    elsewhere = carry.model_copy(update={"job": carry.job.model_copy(update={"channel_id": "C2"})})
    assert MemoryHistory(entries).related(elsewhere) == []


def test_stage_b_fills_shared_before_and_the_repair_keeps_it():
    job, evidence, facts = make_job(), make_evidence(), make_facts()
    first = entry_for(
        make_job(
            url="https://example.com/old", canonical_url="https://example.com/old", job_id="old1"
        ),  # fmt: skip
        evidence,
        facts,
        make_commentary(),
        "https://slack.test/archives/C1/p1",
    )
    history = MemoryHistory([first.model_copy(update={"channel_id": job.channel_id})])
    carry = JobCarry(job=job, evidence=evidence, facts=facts)
    settings = Settings(llm_model="offline/extractive", mlflow_enable_tracking=False)
    deps = build_deps(settings, history=history)
    carry = advance(STAGE_BY_NAME["stage_b"], carry, deps)
    assert [s.job_id for s in carry.commentary.shared_before] == ["old1"]
    bad = carry.commentary.model_copy(update={"tldr": ["Only one item."]})  # fails a gate
    carry = carry.model_copy(update={"commentary": bad})
    carry = advance(STAGE_BY_NAME["quality_gates"], carry, deps)
    assert carry.review.report.repaired
    assert [s.job_id for s in carry.review.commentary.shared_before] == ["old1"]
    deps.close()


def test_slack_post_remembers_posted_commentaries_only():
    history = MemoryHistory()
    settings = Settings(llm_model="offline/extractive", mlflow_enable_tracking=False)
    deps = build_deps(settings, history=history)
    job, evidence, facts = make_job(), make_evidence(), make_facts()
    commentary = make_commentary()
    from pipeline.models import GateReport, Review
    from pipeline.render import render_gate_failed

    ok = render_commentary(job, evidence, facts, commentary, GateReport(), settings)
    carry = JobCarry(job=job, evidence=evidence, facts=facts, commentary=commentary,
                     review=Review(commentary=commentary, report=GateReport(), message=ok))  # fmt: skip
    advance(STAGE_BY_NAME["slack_post"], carry, deps)
    assert [e.job_id for e in history.entries] == [job.job_id]
    failed = render_gate_failed(job, evidence, GateReport())
    other = carry.model_copy(update={
        "job": job.model_copy(update={"job_id": "other"}),
        "review": carry.review.model_copy(update={"message": failed}),
    })  # fmt: skip
    assert failed.outcome == Outcome.gate_failed
    advance(STAGE_BY_NAME["slack_post"], other, deps)
    assert [e.job_id for e in history.entries] == [job.job_id]
    deps.close()


def test_render_shows_shared_before_with_the_thread_link_and_age():
    job, evidence, facts = make_job(), make_evidence(), make_facts()
    shared = SharedBefore(
        job_id="old1", title="redis-py <b>", url="https://github.com/redis/redis-py",
        permalink="https://slack.test/archives/C1/p1700000000000100",
        shared_at=job.created_at - timedelta(days=12),
    )  # fmt: skip
    commentary = make_commentary().model_copy(update={"shared_before": [shared]})
    from pipeline.models import GateReport

    message = render_commentary(job, evidence, facts, commentary, GateReport())
    text = "\n".join(section_texts(message.blocks))
    assert (
        "Shared before: <https://slack.test/archives/C1/p1700000000000100|redis-py &lt;b&gt;> "
        "(12 days ago)" in text
    )


def test_themes_come_from_the_project_bullets():
    commentary = make_commentary(projects=["**Retrieval** — a.", "**Evals** — b.", "plain"])
    assert themes_of(commentary) == ["Retrieval", "Evals"]
    assert themes_of(make_commentary(projects=["no theme"])) == ["General"]
