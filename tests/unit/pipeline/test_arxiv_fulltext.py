"""arXiv full text: LaTeXML HTML first, then the PDF, then the abstract, over a real loopback server.

The HTML is real LaTeXML output of the NumPy paper (tests/fixtures/arxiv/README.md); its PDF and
the SciPy 1.0 paper's HTML are recordings under data/recorded/arxiv/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.adapters import fetch_evidence
from pipeline.adapters.base import METADATA_SECTION, content_snippets
from pipeline.fetch import SafeFetcher
from pipeline.models import Coverage, ReadKind
from pipeline.offline_selection import candidates, select_facts
from services.recorded_web import DEFAULT_DATA_DIR, Response, serve_recorded

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "arxiv"
NUMPY = "2006.10256"
SCIPY = "1907.10121"
NUMPY_HTML = (FIXTURES / f"{NUMPY}.html").read_bytes()
NUMPY_PDF = (DEFAULT_DATA_DIR / "arxiv" / f"{NUMPY}.pdf").read_bytes()
# Text found only in the NumPy paper's bibliography (a reference title) and its page footer.
BIBLIOGRAPHY_ONLY = "large-scale machine learning on heterogeneous distributed systems"


def _route(body: bytes, media: str):
    return lambda request: Response(200, {"Content-Type": media}, body)


@pytest.fixture(scope="module")
def server():
    routes = {
        f"/fx/html/{NUMPY}": _route(NUMPY_HTML, "text/html; charset=utf-8"),
        f"/fx/pdf/{NUMPY}": _route(NUMPY_PDF, "application/pdf"),
    }
    with serve_recorded(routes=routes) as running:
        yield running


def read(server, url: str, *, html: str = "fx/html", pdf: str = "fx/pdf", **caps):
    settings = server.settings().model_copy(
        update={"arxiv_html_url": server.url(html), "arxiv_pdf_url": server.url(pdf), **caps}
    )
    with SafeFetcher(settings) as fetcher:
        return fetch_evidence(url, settings, fetcher), settings


def body_sections(evidence) -> set[str]:
    return {s.section for s in content_snippets(evidence.snippets) if s.section} - {"Abstract"}


def test_latexml_html_is_read_in_full_with_its_sections(server):
    evidence, _ = read(server, f"https://arxiv.org/abs/{NUMPY}")
    assert evidence.coverage == Coverage.full and evidence.read == ReadKind.full_text
    assert evidence.coverage_reason.startswith("full text from arXiv HTML (LaTeXML)")
    assert evidence.title == "Array Programming with NumPy"
    assert evidence.snippets[0].section == "Abstract"
    assert {"NumPy arrays", "Discussion", "Random number generation"} <= body_sections(evidence)
    text = evidence.text()
    assert "Figure 1: The NumPy array incorporates several fundamental array concepts" in text
    assert "(T,M,N,3)" in text  # inline math, as its alttext
    assert BIBLIOGRAPHY_ONLY not in text.lower()
    assert "Generated on" not in text and "LaTeXML" not in text  # page footer
    assert "Competing Interests" not in {s.section for s in evidence.snippets}
    assert evidence.snippets[-1].section == METADATA_SECTION


def test_missing_html_falls_through_to_the_pdf(server):
    evidence, _ = read(server, f"https://arxiv.org/pdf/{NUMPY}v1", html="none/html")
    assert evidence.coverage == Coverage.full
    assert evidence.coverage_reason == "full text from the PDF"
    assert evidence.title == "Array Programming with NumPy"  # from the API record
    assert {"Discussion", "Scientific Python ecosystem"} <= body_sections(evidence)
    assert BIBLIOGRAPHY_ONLY not in evidence.text().lower()  # reading stops at References


def test_without_html_and_pdf_the_abstract_is_read_as_before(server):
    evidence, _ = read(server, f"https://arxiv.org/abs/{NUMPY}", html="none/h", pdf="none/p")
    assert evidence.coverage == Coverage.partial and evidence.read == ReadKind.abstract
    assert evidence.coverage_reason == "abstract only: HTML and PDF unavailable (404)"
    assert {s.section for s in evidence.snippets} == {"Abstract", METADATA_SECTION}


def test_a_pdf_served_as_html_is_not_taken_for_latexml(server):
    evidence, _ = read(server, f"https://arxiv.org/abs/{NUMPY}", html="fx/pdf")
    assert evidence.coverage_reason == "full text from the PDF"


def test_recorded_web_serves_the_recorded_html(server):
    evidence, settings = read(server, f"https://arxiv.org/abs/{SCIPY}", html="arxiv/html")
    assert evidence.coverage == Coverage.full
    assert evidence.char_count <= settings.evidence_max_chars
    assert len(evidence.snippets) <= settings.evidence_max_snippets
    assert {"Benchmark suite", "Discussion", "Numerical optimization"} <= body_sections(evidence)


def test_a_long_paper_keeps_every_section_within_small_caps(server):
    evidence, settings = read(
        server,
        f"https://arxiv.org/abs/{SCIPY}",
        html="arxiv/html",
        evidence_max_chars=15_000,
        evidence_max_snippets=45,
    )
    assert evidence.char_count <= settings.evidence_max_chars
    assert len(evidence.snippets) <= settings.evidence_max_snippets
    assert {"Benchmark suite", "Discussion", "Test suite"} <= body_sections(evidence)
    assert "sections shortened to fit" in evidence.coverage_reason


def test_offline_facts_reach_past_the_abstract_and_introduction(server):
    evidence, _ = read(server, f"https://arxiv.org/abs/{SCIPY}", html="arxiv/html")
    sections = {s.id: s.section for s in evidence.snippets}
    items = [(s.id, s.text) for s in evidence.snippets]
    facts = select_facts(candidates(items, evidence.title or ""), 20)
    later = {sections[f.source_id] for f in facts} - {"Abstract", "Introduction", None}
    assert len(later) >= 5
    # the measured result of the paper's test suite section, with its number
    assert any("87%" in f.text for f in facts)
