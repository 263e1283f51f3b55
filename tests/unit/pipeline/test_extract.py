"""Main-text and metadata extraction on real recorded pages and on crafted edge cases."""

from __future__ import annotations

import json
import statistics

import pytest

from bench.extraction import token_prf
from pipeline.extract import decode_html, extract_html
from pipeline.extract_meta import title_from_title_tag
from services.recorded_web import DEFAULT_DATA_DIR
from tests.support.web import INJECTION_COMMENT, INJECTION_HIDDEN, INJECTION_VISIBLE, injection_page

PAGES = DEFAULT_DATA_DIR / "pages"


def _page(name: str) -> tuple[bytes, str, dict]:
    folder = PAGES / name
    return (
        (folder / "source.html").read_bytes(),
        (folder / "expected.txt").read_text("utf-8"),
        json.loads((folder / "expected-metadata.json").read_text("utf-8")),
    )


def test_quality_over_every_recorded_page():
    """Regression guard for the benchmark's headline numbers (bench/extraction.py)."""
    scores, titles = [], 0
    for folder in sorted(PAGES.iterdir()):
        raw, gold, meta = _page(folder.name)
        page = extract_html(raw)
        scores.append(token_prf(page.text, gold)[2])
        titles += page.title == meta["title"]
    assert statistics.median(scores) >= 0.9
    assert min(scores) >= 0.5, "a page lost most of its text"
    assert titles / len(scores) >= 0.95


def test_chinese_page_utf8_bytes_with_a_stale_gb2312_label():
    raw, gold, meta = _page("qq")
    assert b"charset=gb2312" in raw[:2000]  # the label lies: the bytes are UTF-8
    page = extract_html(raw)
    assert page.language == "zh"
    assert page.title == meta["title"]
    assert "人工智能" in page.text
    assert token_prf(page.text, gold)[2] > 0.9


def test_chinese_page_really_encoded_in_gb18030():
    raw, gold, _ = _page("qq")
    legacy = raw.decode("utf-8").encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        legacy.decode("utf-8")
    page = extract_html(legacy)  # no HTTP charset: the <meta charset=gb2312> decides
    assert "人工智能" in page.text
    assert page.language == "zh"
    assert token_prf(page.text, gold)[2] > 0.9


def test_decoding_order_bom_utf8_header_meta():
    assert decode_html(b"\xef\xbb\xbfcaf\xc3\xa9") == "café"
    assert decode_html("café".encode("cp1252"), "iso-8859-1") == "café"
    assert (
        decode_html(b'<meta charset="windows-1251">\xcf\xf0\xe8')
        == '<meta charset="windows-1251">При'
    )
    assert decode_html("naïve".encode(), "iso-8859-1") == "naïve"  # valid UTF-8 wins


def test_hidden_text_comments_scripts_and_chrome_are_dropped():
    page = extract_html(injection_page())
    text = page.text
    assert "LazyCell" in text
    assert INJECTION_VISIBLE in text  # visible page text is evidence; the posting stage sanitises
    assert INJECTION_HIDDEN not in text
    assert "SYSTEM OVERRIDE" not in text
    assert INJECTION_COMMENT not in text
    assert "Copyright Example News" not in text  # footer
    assert "Home" not in text.split()  # nav


def test_inline_scripts_styles_and_templates_never_reach_text():
    html = (
        "<html><body><article><p>Real paragraph one, with enough words to count as text here."
        "<script>var secret = 'script text';</script></p><style>p{color:red}</style>"
        "<template><p>template text</p></template><noscript>enable js</noscript>"
        "<p>Real paragraph two, also long enough to be scored as a paragraph of the article.</p>"
        "</article></body></html>"
    )
    text = extract_html(html).text
    assert "Real paragraph two" in text
    for junk in ("script text", "color:red", "template text", "enable js"):
        assert junk not in text


def test_page_text_cannot_forge_paragraph_markers():
    html = "<p>one \x1e3\x1e two, and a sentence long enough to be kept as a paragraph.</p>"
    page = extract_html(html)
    assert [b.text for b in page.blocks] == [
        "one 3 two, and a sentence long enough to be kept as a paragraph."
    ]


def test_headings_are_marked_and_link_lists_dropped():
    html = (
        "<html><body><div class='article-body'>"
        "<h2>Background</h2><p>" + "This sentence explains the background in detail. " * 6 + "</p>"
        "<ul><li><a href='/a'>Related one</a></li><li><a href='/b'>Related two</a></li></ul>"
        "<h2>Results</h2><p>" + "The results were measured on two machines, twice. " * 6 + "</p>"
        "</div></body></html>"
    )
    page = extract_html(html)
    assert [b.text for b in page.blocks if b.heading] == ["Background", "Results"]
    assert "Related one" not in page.text


def test_metadata_from_json_ld_open_graph_and_citation_tags():
    html = """<html lang="de-DE"><head><title>Ignored | Site</title>
    <meta property="og:site_name" content="Example Site">
    <meta property="article:published_time" content="2024-05-01T10:00:00Z">
    <link rel="canonical" href="https://example.com/a">
    <script type="application/ld+json">{"@context": "https://schema.org", "@type": "NewsArticle",
      "headline": "The Real Headline", "author": [{"name": "Ada L."}, {"name": "Bo C."}],
      "datePublished": "2024-05-01"}</script></head><body><p>x</p></body></html>"""
    page = extract_html(html)
    assert page.title == "The Real Headline"
    assert page.authors == ["Ada L.", "Bo C."]
    assert page.published == "2024-05-01"
    assert page.site_name == "Example Site"
    assert page.language == "de"
    assert page.canonical_url == "https://example.com/a"

    scholarly = """<html><head><meta name="citation_title" content="A Paper">
    <meta name="citation_author" content="Doe, J."><meta name="citation_author" content="Roe, R.">
    <meta name="citation_publication_date" content="2023/02/01"></head><body></body></html>"""
    page = extract_html(scholarly)
    assert (page.title, page.authors, page.published) == (
        "A Paper",
        ["Doe, J.", "Roe, R."],
        "2023/02/01",
    )


def test_no_title_is_invented():
    page = extract_html("<html><body><p>Just some text without any title at all.</p></body></html>")
    assert page.title is None
    assert page.authors == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Obama admits US gun laws are his 'biggest frustration' - BBC News",
         "Obama admits US gun laws are his 'biggest frustration'"),
        ("Google - Site Reliability Engineering", "Google - Site Reliability Engineering"),
        ("Outside the web: standalone WebAssembly binaries using Emscripten · V8",
         "standalone WebAssembly binaries using Emscripten · V8"),
        ("Hermitian matrix - Wikipedia", "Hermitian matrix - Wikipedia"),
    ],
)  # fmt: skip
def test_site_names_dropped_from_title_tags_only_when_enough_words_remain(raw, expected):
    assert title_from_title_tag(raw, headings=[]) == expected


def test_nested_removals_inside_the_article_are_removed_once():
    """A hidden block holding an unlikely block holding hidden text: each removed safely."""
    para = "<p>Real text that is long enough to be kept as a paragraph of the article.</p>"
    html = (
        f"<html><body><article>{para * 5}<div style='display:none' class='sidebar'>"
        "<div class='comment-list'><p hidden>nested hidden text</p>"
        "<span aria-hidden='true'>aria text</span></div></div>"
        f"<section hidden><div hidden><p>doubly hidden</p></div></section>{para}</article>"
        "</body></html>"
    )
    for _ in range(20):  # freed nodes touched twice would crash or corrupt sooner or later
        page = extract_html(html)
    assert page.text.count("Real text") == 6
    for hidden in ("nested hidden", "aria text", "doubly hidden"):
        assert hidden not in page.text
