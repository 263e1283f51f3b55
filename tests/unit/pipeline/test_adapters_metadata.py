"""Source fields rendered as plain sentences: only fields that exist, verbatim values, and sentences
the splitter cuts exactly where the templates end them."""

from __future__ import annotations

import pytest

from pipeline.adapters.metadata import (
    arxiv_sentences,
    github_description,
    github_sentences,
    page_sentences,
    plain,
    readable_date,
)
from pipeline.models import Source
from pipeline.text import is_citable, split_sentences

PAPER = Source(
    url="https://arxiv.org/abs/2101.00001",
    title="Why Does It Work? A Study of Dr. Smith's Method",
    authors=[
        "Ada Lovelace",
        "Alan M. Turing",
        "Grace Hopper",
        "Edsger Dijkstra",
        "B. Liskov",
        "K. Thompson",
    ],
    published="2021-01-12T18:00:00Z",
    updated="2021-06-04T09:00:00Z",
    kind="paper",
    metadata={
        "primary_category": "cs.LG",
        "categories": ["cs.LG", "stat.ML"],
        "comment": "Accepted at ICML 2021. 12 pages, 3 figures",
        "journal_ref": "Phys. Rev. D 76, 013009 (2007)",
        "doi": "10.1000/xyz",
    },
)


def test_arxiv_sentences_render_every_field_once_and_split_back_exactly():
    sentences = arxiv_sentences(PAPER)
    assert sentences == [
        "The paper “Why Does It Work? A Study of Dr. Smith's Method” was posted to arXiv by "
        "Ada Lovelace, Alan M. Turing, Grace Hopper, Edsger Dijkstra, B. Liskov and 1 other.",
        "The paper was first submitted on 12 January 2021 and last updated on 4 June 2021.",
        "The paper's primary arXiv category is cs.LG, and it is also listed under stat.ML.",
        "The authors' comment on the paper reads “Accepted at ICML 2021. 12 pages, 3 figures”.",
        "The journal reference is “Phys. Rev. D 76, 013009 (2007)”.",
    ]
    assert split_sentences(" ".join(sentences)) == sentences  # titles, comments held by quotes
    assert all(is_citable(s) for s in sentences)


def test_only_fields_that_exist_are_rendered():
    bare = Source(url="https://arxiv.org/abs/x", title="A Title", kind="paper")
    assert arxiv_sentences(bare) == ["The paper “A Title” was posted to arXiv."]
    same_day = bare.model_copy(update={"published": "2020-02-03", "updated": "2020-02-03T10:00"})
    assert arxiv_sentences(same_day)[1] == "The paper was submitted on 3 February 2020."
    assert arxiv_sentences(Source(url="https://arxiv.org/abs/x", kind="paper")) == []


def test_github_sentences_skip_missing_fields_and_unknown_licences():
    repo = Source(
        url="https://github.com/o/r",
        title="o/r",
        kind="repository",
        metadata={
            "full_name": "o/r",
            "language": "Python",
            "license": "MIT",
            "topics": ["http", "asyncio"],
            "default_branch": "main",
            "pushed_at": "2025-03-03T10:00:00Z",
            "archived": True,
        },
    )
    assert github_sentences(repo) == [
        "The repository o/r is released under the MIT licence.",
        "The repository o/r is mainly written in Python.",
        "The GitHub topics of o/r are http and asyncio.",
        "The default branch of o/r is main.",
        "The last push to o/r was on 3 March 2025.",
        "The repository o/r is archived, so it is read-only.",
    ]
    unknown = repo.model_copy(update={"metadata": {"full_name": "o/r", "license": "NOASSERTION"}})
    assert github_sentences(unknown) == []


@pytest.mark.parametrize(
    ("description", "sentence"),
    [
        (
            "HTTPX is a fully featured HTTP client library for Python 3.",
            "HTTPX is a fully featured HTTP client library for Python 3.",
        ),
        (
            "Distributed Task Queue (development branch)",
            "The GitHub repository o/r describes itself as “Distributed Task Queue (development "
            "branch)”.",
        ),
        (
            "A next generation HTTP client. 🦋",
            "The GitHub repository o/r describes itself as “A next generation HTTP client. 🦋”.",
        ),
    ],
)
def test_github_description_becomes_one_sentence(description, sentence):
    assert github_description("o/r", description) == sentence
    assert split_sentences(sentence) == [sentence]


def test_page_sentences():
    page = Source(
        url="https://example.org/x",
        title="Minecraft 1.8 - The Bountiful Update",
        authors=["mcupdate"],
        site_name="Minecraft Update News",
        published="2014-09-02T08:35:27-04:00",
        updated="2014-09-05",
    )
    assert page_sentences(page) == [
        "The page “Minecraft 1.8 - The Bountiful Update” was published on Minecraft Update News "
        "by mcupdate on 2 September 2014.",
        "The page “Minecraft 1.8 - The Bountiful Update” was last updated on 5 September 2014.",
    ]
    titled = Source(url="https://example.org/x", title="MathJax v3 samples")
    assert page_sentences(titled) == ["The page is titled “MathJax v3 samples”."]
    pdf = Source(url="https://e.org/a.pdf", title="Notes", kind="pdf", metadata={"pages": 3})
    assert page_sentences(pdf)[-1] == "The document “Notes” has 3 pages."
    assert page_sentences(Source(url="https://example.org/x")) == []


def test_tex_accents_in_names_and_titles_read_as_letters():
    paper = Source(
        url="u", title='On G\\"odel numbers', authors=["Marco T. Moraz\\'an"], kind="paper"
    )
    assert arxiv_sentences(paper) == [
        "The paper “On Gödel numbers” was posted to arXiv by Marco T. Morazán."
    ]


def test_tex_formatting_is_dropped_and_math_kept():
    tex = r"We introduce {\em anonymous transfer}, a \emph{new} ``primitive'' for $f(x)$."
    assert plain(tex) == "We introduce anonymous transfer, a new “primitive” for $f(x)$."


def test_readable_dates():
    assert readable_date("2007-04-01T12:00:00Z") == "1 April 2007"
    assert readable_date("2007-13-01") is None and readable_date(None) is None
