"""Hostile page shapes: extraction work stays linear in the page size (counted in node visits,
not wall-clock), deep nesting cannot hit the recursion limit, a time budget turns into a clearly
partial result, and the adapter reports it as partial coverage."""

from __future__ import annotations

import functools
import itertools

import httpx
import pytest
from selectolax.lexbor import LexborHTMLParser

import pipeline.adapters.webpage as webpage
from pipeline.extract import extract_html
from pipeline.extract_depth import MAX_DEPTH, limit_nesting
from pipeline.extract_main import PASSES, read_main_text
from pipeline.extract_tree import Budget, TreeIndex
from pipeline.fetch import FetchResponse
from pipeline.models import Coverage
from pipeline.settings import Settings

SENTENCE = "Paragraph {n} of the article, with a comma, and enough words to be scored as text."


def _nested(tag: str, depth: int) -> str:
    inner = "".join(f"<p>{SENTENCE.format(n=n)}</p>" for n in range(8))
    return f"<html><body>{f'<{tag}>' * depth}{inner}{f'</{tag}>' * depth}</body></html>"


def _flat(count: int) -> str:
    divs = "".join(f"<div>{SENTENCE.format(n=n)}</div>" for n in range(count))
    return f"<html><body>{divs}</body></html>"


def _visits_of_reading(html: str) -> int:
    """Node visits of one strict reading of an already parsed page (no nesting limit)."""
    budget = Budget(seconds=600)
    read_main_text(LexborHTMLParser(html), PASSES[0], budget)
    return budget.visits


@pytest.mark.parametrize("depth", [20_000, 100_000])
def test_deeply_nested_divs_extract_with_bounded_work(depth):
    page = extract_html(_nested("div", depth))
    assert not page.truncated
    assert "Paragraph 7 of the article" in page.text
    assert page.node_visits < 20_000  # flattened past MAX_DEPTH before parsing


def test_work_on_deep_trees_is_linear_in_depth():
    """Spans parse in linear time, so the reading itself meets a real 10k/100k-deep tree."""
    shallow, deep = (
        _visits_of_reading(_nested("span", 10_000)),
        _visits_of_reading(_nested("span", 100_000)),
    )
    assert 8 <= deep / shallow <= 12  # 10x the nodes, ~10x the work (quadratic would be 100x)


def test_work_on_wide_pages_is_linear_in_width():
    narrow, wide = _visits_of_reading(_flat(10_000)), _visits_of_reading(_flat(100_000))
    assert 8 <= wide / narrow <= 12
    page = extract_html(_flat(100_000))
    assert not page.truncated
    assert page.text.count("of the article") == 100_000


def test_nesting_deeper_than_the_recursion_limit_is_safe():
    ix = TreeIndex(LexborHTMLParser(_nested("span", 200_000)).body, Budget(seconds=600))
    assert len(ix) > 200_000 and ix.end[0] == len(ix) - 1  # walked, no RecursionError
    page = extract_html(_nested("div", 200_000))
    assert "Paragraph 0 of the article" in page.text


def test_nesting_limit_keeps_text_and_ignores_stray_end_tags():
    html = "<body>" + "<div></section>" * 20_000 + "deep text" + "</div>" * 20_000 + "</body>"
    flattened, dropped = limit_nesting(html)
    tree = LexborHTMLParser(flattened)
    assert tree.body.text(deep=True) == "deep text"
    kept = len(tree.css("div"))
    assert kept == MAX_DEPTH - 1  # <body> is the first level
    assert dropped == 2 * (20_000 - kept)  # the start tags and their end tags
    ordinary = "<body>" + "<div><p>text</p><br><img src=x></div>" * 3000 + "</body>"
    assert limit_nesting(ordinary) == (ordinary, 0)


def test_an_exhausted_budget_gives_a_partial_result_with_its_reason():
    page = extract_html(_flat(5_000), budget_s=0.0)
    assert page.truncated
    assert page.partial_reason == (
        "extraction stopped after 0.0 s of its 0.0 s budget (page too complex)"
    )
    full = extract_html(_flat(5_000))
    assert not full.truncated and full.partial_reason is None
    assert 0 < len(page.text) < len(full.text)  # the first elements are always read
    assert full.text.startswith(page.text)  # what was read is a prefix of the page


def test_a_fake_clock_stops_the_reading_and_hidden_text_never_leaks():
    ticks = itertools.count()
    clock = functools.partial(next, ticks)  # one second per look at the clock
    hidden = "".join(
        f'<div style="color:#fff">HIDDEN {n}</div><div>{SENTENCE.format(n=n)}</div>'
        for n in range(5_000)
    )
    page = extract_html(f"<html><body>{hidden}</body></html>", budget_s=3.0, clock=clock)
    assert page.truncated
    assert "stopped after" in (page.partial_reason or "")
    assert "HIDDEN" not in page.text


def _response(html: str) -> FetchResponse:
    return FetchResponse(
        url="https://example.com/a",
        status_code=200,
        media_type="text/html",
        charset="utf-8",
        content=html.encode(),
        headers=httpx.Headers(),
    )


def test_the_page_adapter_reports_a_cut_extraction_as_partial(monkeypatch):
    adapter = webpage.WebPageAdapter(Settings(), fetcher=None)  # type: ignore[arg-type]
    whole = adapter.from_response("https://example.com/a", _response(_flat(60)))
    assert whole.coverage == Coverage.full
    monkeypatch.setattr(webpage, "extract_html", functools.partial(extract_html, budget_s=0.0))
    cut = adapter.from_response("https://example.com/a", _response(_flat(3_000)))
    assert cut.coverage == Coverage.partial
    assert cut.truncated
    assert "extraction stopped after" in (cut.coverage_reason or "")
    assert "page too complex" in (cut.coverage_reason or "")
