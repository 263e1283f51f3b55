"""The citable-sentence count is made once, by fetch_evidence (on the io worker), and the gates'
summary range reads it instead of splitting the evidence again on the llm worker."""

from __future__ import annotations

from pipeline.fetch import SafeFetcher
from pipeline.gates import citable_sentence_count, summary_range
from pipeline.models import Job, JobCarry
from pipeline.settings import Settings
from pipeline.stages import STAGE_BY_NAME, advance
from services.recorded_web import RecordedWeb
from services.wiring import build_deps
from tests.support.builders import make_evidence

WEB = RecordedWeb()


def test_fetch_evidence_counts_the_citable_sentences_once():
    settings = Settings(mlflow_enable_tracking=False)
    deps = build_deps(
        settings, fetcher=SafeFetcher(settings, transport=WEB.transport, resolver=WEB.resolver)
    )
    url = "https://github.com/encode/httpx"
    evidence = advance(STAGE_BY_NAME["fetch_evidence"], JobCarry(job=Job(job_id="j", url=url, canonical_url=url)), deps).evidence  # fmt: skip
    deps.close()
    recount = citable_sentence_count(evidence.model_copy(update={"citable_sentences": None}))
    assert evidence.citable_sentences == recount > 0


def test_summary_range_uses_the_carried_count():
    evidence = make_evidence()
    settings = Settings()
    assert summary_range(evidence.model_copy(update={"citable_sentences": 2}), settings)[0] == 2
    counted = summary_range(evidence.model_copy(update={"citable_sentences": None}), settings)
    assert counted[0] == min(settings.gate_summary_full_min, citable_sentence_count(evidence))
