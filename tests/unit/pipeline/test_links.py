"""Links out of Slack messages, normalisation and canonical URLs."""

from __future__ import annotations

import pytest

from pipeline.links import (
    arxiv_id_from_url,
    canonical_url,
    extract_links,
    github_repo_from_url,
    normalize_url,
)


def test_slack_markup_forms_and_order():
    text = (
        "<@U0123> look <https://example.com/a|the article> and <https://example.org/b> "
        "<#C0456|general> <!here> <!channel> <mailto:bob@example.com|bob@example.com> "
        "also <https://example.net/c?x=1&amp;y=2>"
    )
    assert extract_links(text) == [
        "https://example.com/a",
        "https://example.org/b",
        "https://example.net/c?x=1&y=2",
    ]


def test_links_only_in_blocks_are_found_after_text_links():
    blocks = [
        {
            "type": "rich_text",
            "elements": [
                {
                    "type": "rich_text_section",
                    "elements": [
                        {"type": "text", "text": "see "},
                        {"type": "link", "url": "https://blocks.example/one"},
                        {"type": "user", "user_id": "U1"},
                    ],
                },
                {
                    "type": "rich_text_list",
                    "elements": [
                        {
                            "type": "rich_text_section",
                            "elements": [{"type": "link", "url": "https://example.com/a"}],
                        }
                    ],
                },
            ],
        }
    ]
    assert extract_links("<https://example.com/a>", blocks=blocks) == [
        "https://example.com/a",
        "https://blocks.example/one",
    ]


def test_duplicates_by_canonical_form_and_limit():
    text = (
        "<https://arxiv.org/abs/2101.04061v2> <https://arxiv.org/pdf/2101.04061> "
        "<https://github.com/encode/httpx/tree/master/docs> <https://github.com/Encode/httpx> "
        "<https://a.example/1> <https://b.example/2>"
    )
    assert extract_links(text) == [
        "https://arxiv.org/abs/2101.04061v2",
        "https://github.com/encode/httpx/tree/master/docs",
        "https://a.example/1",
        "https://b.example/2",
    ]
    assert extract_links(text, limit=2) == [
        "https://arxiv.org/abs/2101.04061v2",
        "https://github.com/encode/httpx/tree/master/docs",
    ]


def test_non_web_schemes_are_skipped():
    assert (
        extract_links("<ftp://files.example/x> <javascript:alert(1)|x> <file:///etc/passwd>") == []
    )


def test_tracking_parameters_removed_others_kept_in_order():
    url = (
        "https://example.com/p?utm_source=tw&b=2&fbclid=abc&a=1&gclid=x&mc_cid=1&mc_eid=2"
        "&ref_src=twsrc&igshid=9&utm_campaign=z"
    )
    assert normalize_url(url) == "https://example.com/p?b=2&a=1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://Example.COM:443/a/b/?z=1&a=2#frag", "https://example.com/a/b?a=2&z=1"),
        ("http://example.com:80/", "http://example.com/"),
        ("http://example.com:8080/x/", "http://example.com:8080/x"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com/a?utm_medium=x", "https://example.com/a"),
        ("https://arxiv.org/pdf/2101.04061v2.pdf", "https://arxiv.org/abs/2101.04061"),
        ("https://arxiv.org/html/2101.04061v1", "https://arxiv.org/abs/2101.04061"),
        ("http://export.arxiv.org/abs/cs/0011004v3", "https://arxiv.org/abs/cs/0011004"),
        (
            "https://github.com/Encode/HTTPX/blob/master/README.md",
            "https://github.com/encode/httpx",
        ),
        ("https://github.com/karpathy/nanoGPT.git", "https://github.com/karpathy/nanogpt"),
    ],
)
def test_canonical_url(url, expected):
    assert canonical_url(url) == expected


def test_arxiv_ids_old_and_new_styles():
    assert arxiv_id_from_url("https://arxiv.org/abs/2101.04061v2") == "2101.04061"
    assert arxiv_id_from_url("https://arxiv.org/pdf/cs/0011004") == "cs/0011004"
    assert arxiv_id_from_url("https://arxiv.org/abs/math.GT/0309136v1") == "math.GT/0309136"
    assert arxiv_id_from_url("https://arxiv.org/list/cs.AI/recent") is None
    # host decides, never a substring of the URL
    assert arxiv_id_from_url("https://evil.example/arxiv.org/abs/2101.04061") is None
    assert arxiv_id_from_url("https://arxiv.org.evil.example/abs/2101.04061") is None


def test_github_repos_from_paths_only_on_github_host():
    assert github_repo_from_url("https://github.com/encode/httpx") == ("encode", "httpx")
    assert github_repo_from_url("https://github.com/encode/httpx/tree/master/httpx") == (
        "encode",
        "httpx",
    )
    assert github_repo_from_url("https://github.com/orgs/encode/people") is None
    assert github_repo_from_url("https://github.com/encode") is None
    assert github_repo_from_url("https://github.com.evil.example/encode/httpx") is None
    assert github_repo_from_url("https://gist.github.com/encode/abc") is None


@pytest.mark.parametrize(
    "bad",
    [
        "https://example.com:99999/",  # port out of range
        "https://example.com:http/",  # port not a number
        "http://[::1/",  # unterminated IPv6 literal
        "http://[zz::1]/",  # not an IPv6 address
        "https://example.com/" + "a" * 5000,  # overlong
    ],
    ids=["port-range", "port-nan", "ipv6-open", "ipv6-invalid", "overlong"],
)
def test_an_unparseable_link_is_skipped_with_one_log_line_and_the_others_kept(bad, caplog):
    text = f"<https://a.example/1> <{bad}> <https://b.example/2>"
    assert extract_links(text) == ["https://a.example/1", "https://b.example/2"]
    [record] = caplog.records
    assert record.name == "technoshare.links" and "skipped 1 unparseable" in record.getMessage()
    assert record.exc_info is None


def test_unparseable_links_in_blocks_and_bare_text_are_skipped_too(caplog):
    blocks = [{"type": "link", "url": "https://blocks.example:70000/x"},
              {"type": "link", "url": "https://blocks.example/ok"}]  # fmt: skip
    text = "see https://bare.example:123456/ and https://bare.example/ok"
    assert extract_links(text, blocks=blocks) == [
        "https://bare.example/ok",
        "https://blocks.example/ok",
    ]
    assert len(caplog.records) == 1 and "skipped 2" in caplog.records[0].getMessage()


def test_canonical_and_normalize_raise_value_error_for_what_they_cannot_parse():
    with pytest.raises(ValueError):
        canonical_url("https://example.com:99999/")
    with pytest.raises(ValueError):
        normalize_url("http://[::1/?utm_source=x")
