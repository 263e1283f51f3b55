"""Each adapter against a real loopback server serving recorded corpus content."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.adapters import (
    ArxivAdapter,
    GitHubAdapter,
    WebPageAdapter,
    adapter_for,
    fetch_evidence,
    fetch_text_for_tool,
)
from pipeline.adapters.base import METADATA_SECTION, content_snippets
from pipeline.adapters.metadata import arxiv_sentences, plain
from pipeline.errors import (
    SourceUnavailableError,
    UnsupportedContentError,
    UpstreamRateLimited,
    UpstreamServerError,
)
from pipeline.fetch import SafeFetcher
from pipeline.models import Coverage, ReadKind
from pipeline.settings import Settings
from pipeline.text import split_units
from services.recorded_web import DEFAULT_DATA_DIR
from tests.support.web import INJECTION_HIDDEN

ARXIV = DEFAULT_DATA_DIR / "arxiv"


@pytest.fixture
def env(local_web):
    settings = local_web.settings()
    with SafeFetcher(settings) as fetcher:
        yield settings, fetcher, local_web


def _snippet_ids_are_sequential(evidence):
    assert [s.id for s in evidence.snippets] == [
        f"S{i}" for i in range(1, len(evidence.snippets) + 1)
    ]


# --- arXiv ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "record"),
    [
        ("https://arxiv.org/pdf/2101.04061v2", "2101.04061.json"),
        ("https://arxiv.org/abs/2101.04061", "2101.04061.json"),
        ("https://arxiv.org/html/2103.17249v1", "2103.17249.json"),
        ("https://arxiv.org/abs/cs/0011004v1", "cs_0011004.json"),
        ("http://export.arxiv.org/pdf/cs/0212040.pdf", "cs_0212040.json"),
    ],
)
def test_arxiv_abstract_and_metadata_from_the_export_api(env, url, record):
    settings, fetcher, _ = env
    paper = json.loads((ARXIV / record).read_text("utf-8"))
    evidence = fetch_evidence(url, settings, fetcher)
    source = evidence.sources[0]
    assert evidence.adapter == "ArxivAdapter"
    assert evidence.canonical_url == f"https://arxiv.org/abs/{paper['id']}"
    assert source.title == paper["title"]
    assert source.authors == paper["authors"]
    assert source.published == paper["published"]
    assert source.updated == (paper.get("updated") or paper["published"])
    assert source.metadata["categories"] == paper["categories"]
    assert source.metadata["primary_category"] == paper["categories"][0]
    assert source.metadata["pdf_url"].endswith(f"/pdf/{paper['id']}")
    abstract = " ".join(s.text for s in content_snippets(evidence.snippets))
    assert abstract == plain(paper["abstract"])  # TeX formatting as plain text
    assert "\\em" not in abstract and "\\emph" not in abstract
    assert (evidence.read, evidence.coverage) == (ReadKind.abstract, Coverage.partial)
    assert evidence.coverage_reason == "abstract only: HTML and PDF unavailable (404)"
    _snippet_ids_are_sequential(evidence)
    # the record's fields follow as citable sentences, rendered from the fields only
    meta = evidence.snippets[-1]
    assert meta.section == METADATA_SECTION and meta.text == " ".join(arxiv_sentences(source))
    assert f"“{paper['title']}” was posted to arXiv by {paper['authors'][0]}" in meta.text
    assert f"primary arXiv category is {paper['categories'][0]}" in meta.text


def test_arxiv_unknown_paper_is_unavailable(env):
    settings, fetcher, _ = env
    with pytest.raises(SourceUnavailableError):
        fetch_evidence("https://arxiv.org/abs/2999.99999", settings, fetcher)


# --- GitHub -----------------------------------------------------------------------------------
def test_github_markdown_readme_to_sections(env):
    settings, fetcher, _ = env
    evidence = fetch_evidence(
        "https://github.com/encode/httpx/tree/master/httpx", settings, fetcher
    )
    assert evidence.adapter == "GitHubAdapter"
    assert evidence.canonical_url == "https://github.com/encode/httpx"
    assert evidence.title == "encode/httpx"
    assert evidence.read == ReadKind.readme
    source = evidence.sources[0]
    assert source.metadata["license"] == "BSD-3-Clause"
    assert "stars" not in source.metadata  # absent from the snapshot: not invented
    sections = {s.section for s in evidence.snippets}
    assert {"Features", "Installation"} <= sections
    text = evidence.text()
    assert "HTTPX is a fully featured HTTP client library for Python 3" in text
    for markup in ("![", "](http", "<img", "<p align", "img.shields.io"):
        assert markup not in text
    units = [u for s in evidence.snippets for u in split_units(s.text)]
    code = [u.text for u in units if u.code]
    assert "```\n$ pip install httpx\n```" in code  # short code blocks are kept, fenced
    assert not any("```" in u.text for u in units if not u.code)
    features = [u.text for u in units if u.listed]
    assert "HTTP/1.1 and HTTP/2 support." in features  # list items stay items
    assert evidence.snippets[-1].text == (
        "The repository encode/httpx is released under the BSD-3-Clause licence. "
        "The default branch of encode/httpx is master."
    )
    _snippet_ids_are_sequential(evidence)


def test_github_restructuredtext_readme(env):
    settings, fetcher, _ = env
    evidence = fetch_evidence(
        "https://github.com/celery/celery/blob/main/README.rst", settings, fetcher
    )
    text = evidence.text()
    assert "What's a Task Queue?" in {s.section for s in evidence.snippets}
    assert "Task queues are used as a mechanism to distribute work" in text
    for markup in ("|build-status|", ".. image::", "`_", ":target:", "celery-banner-small.png"):
        assert markup not in text
    assert evidence.coverage == Coverage.full
    assert "Sponsors" not in {s.section for s in evidence.snippets}  # advertising left out
    assert "Python 2.6: Celery series 3.1 or earlier." in {
        u.text for s in evidence.snippets for u in split_units(s.text) if u.listed
    }


def test_github_short_readme_is_partial(env):
    settings, fetcher, _ = env
    evidence = fetch_evidence("https://github.com/cunla/fakeredis", settings, fetcher)
    assert evidence.coverage == Coverage.partial
    assert "short README" in evidence.coverage_reason


def test_github_token_is_sent_and_never_logged(env, caplog):
    settings, _, server = env
    secret = "ghp_test_token_value_123"
    settings = server.settings(Settings(github_token=secret))
    caplog.set_level(logging.DEBUG)
    with SafeFetcher(settings) as fetcher:
        evidence = fetch_evidence("https://github.com/test/no-readme", settings, fetcher)
    assert evidence.sources[0].metadata["description"] == f"Authorization seen: Bearer {secret}"
    assert secret not in caplog.text
    assert (evidence.read, evidence.coverage) == (ReadKind.metadata_only, Coverage.metadata_only)
    assert evidence.snippets[0].section == "About"
    assert "describes itself as “Authorization seen: Bearer" in evidence.snippets[0].text


def test_github_readme_answered_as_json_is_decoded_and_named(env):
    settings, fetcher, _ = env
    evidence = fetch_evidence("https://github.com/test/json-readme", settings, fetcher)
    readme = [s for s in evidence.snippets if s.section == "Usage"]
    assert readme and readme[0].text == "Run tool --help to list the commands."


@pytest.mark.parametrize(
    ("repo", "error"),
    [
        ("test/rate-limited", UpstreamRateLimited),
        ("test/server-error", UpstreamServerError),
        ("nobody/nothing", SourceUnavailableError),
    ],
)
def test_github_errors(env, repo, error):
    settings, fetcher, _ = env
    with pytest.raises(error) as err:
        fetch_evidence(f"https://github.com/{repo}", settings, fetcher)
    if error is UpstreamRateLimited:
        assert 0 < err.value.retry_after <= 30


class _RecordingGitHubAPI(BaseHTTPRequestHandler):
    """A fake GitHub API that records every path asked for; ``/user`` would leak the token."""

    paths: list[str]

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.paths.append(self.path)
        if self.path.endswith("/readme"):
            status, body = 404, {"message": "Not Found"}
        elif self.path == "/user":
            status, body = 200, {"login": "token-owner", "email": "owner@example.com"}
        else:
            name = "/".join(self.path.split("/")[2:4])
            status, body = 200, {"full_name": name, "description": "A fine repository."}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture
def github_api():
    """(settings with a token pointing GitHub at the fake API, fetcher, recorded paths)."""
    paths: list[str] = []
    handler = type("Handler", (_RecordingGitHubAPI,), {"paths": paths})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    settings = Settings(
        github_api_url=f"http://127.0.0.1:{port}",
        github_token="ghp_must_not_leak",
        fetch_allow_hosts=[f"127.0.0.1:{port}"],
    )
    try:
        with SafeFetcher(settings) as fetcher:
            yield settings, fetcher, paths
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/../user",
        "https://github.com/a/..",
        "https://github.com/-x/y",
        "https://github.com/x-/y",
        "https://github.com/a/%2e%2e",
        "https://github.com/under_score/y",
        "https://github.com/" + "o" * 40 + "/y",
        "https://github.com/o/" + "r" * 101,
    ],
)
def test_github_invalid_owner_or_repo_makes_no_request(github_api, url):
    settings, fetcher, paths = github_api
    with pytest.raises(UnsupportedContentError) as err:
        GitHubAdapter(settings, fetcher).read(url)
    assert "does not name a repository" in err.value.user_message
    assert paths == []


@pytest.mark.parametrize("url", ["https://github.com/../user", "https://github.com/-x/y"])
def test_github_invalid_names_routed_to_github_fail_before_any_request(github_api, url):
    settings, fetcher, paths = github_api
    with pytest.raises(UnsupportedContentError, match="invalid GitHub owner"):
        fetch_evidence(url, settings, fetcher)
    assert paths == []


def test_github_valid_names_at_the_limits_are_read(github_api):
    settings, fetcher, paths = github_api
    owner, repo = "o-" + "k" * 37, "my.repo_" + "r" * 92  # 39 and 100 characters
    evidence = fetch_evidence(f"https://github.com/{owner}/{repo}", settings, fetcher)
    assert evidence.title == f"{owner}/{repo}"
    base = f"/repos/{owner}/{repo}"
    assert paths == [base, f"{base}/readme", f"{base}/languages", f"{base}/releases/latest"]


# --- web pages, PDFs --------------------------------------------------------------------------
def test_web_page_full_text_with_sections(env):
    settings, fetcher, server = env
    evidence = fetch_evidence(server.page_url("toc-missing"), settings, fetcher)
    assert evidence.adapter == "WebPageAdapter"
    assert evidence.title == "Simple Anomaly Detection Using Plain SQL"
    assert evidence.sources[0].site_name
    assert any(s.section for s in evidence.snippets)
    assert evidence.char_count <= settings.evidence_max_chars
    assert len(evidence.snippets) <= settings.evidence_max_snippets
    _snippet_ids_are_sequential(evidence)


def test_web_page_full_coverage_and_caps_make_it_partial(env):
    settings, fetcher, server = env
    url = server.page_url("nytimes-1")
    full = fetch_evidence(url, settings, fetcher)
    assert (full.coverage, full.truncated) == (Coverage.full, False)
    small = settings.model_copy(update={"evidence_max_chars": 1500})
    capped = fetch_evidence(url, small, fetcher)
    assert capped.truncated and capped.coverage == Coverage.partial
    assert capped.char_count <= 1500 + 2
    assert capped.coverage_reason.startswith("truncated")


def test_changelog_lines_are_list_items_not_run_on_sentences(env):
    settings, fetcher, server = env
    evidence = fetch_evidence(server.page_url("tumblr"), settings, fetcher)
    units = [u for s in evidence.snippets for u in split_units(s.text)]
    assert "Added Slime Block" in [u.text for u in units if u.listed]
    assert all(u.text.count("Added") <= 1 for u in units)  # one change per unit
    assert evidence.snippets[-1].text.startswith(
        "The page “Minecraft 1.8 - The Bountiful Update” was published on"
    )


def test_chinese_page_yields_chinese_text_and_language_zh(env):
    settings, fetcher, server = env
    for url in (server.page_url("qq"), server.url("/test/gb2312")):
        evidence = fetch_evidence(url, settings, fetcher)
        assert evidence.language == "zh"
        assert "人工智能" in evidence.text()
        assert evidence.title.startswith("DeepMind新电脑已可利用记忆自学")


def test_hidden_injected_text_never_reaches_evidence(env):
    settings, fetcher, server = env
    evidence = fetch_evidence(server.url("/test/injection"), settings, fetcher)
    assert "LazyCell" in evidence.text()
    assert INJECTION_HIDDEN not in evidence.text()


def test_pdf_is_read(env):
    settings, fetcher, server = env
    evidence = fetch_evidence(server.url("/test/pdf"), settings, fetcher)
    assert evidence.adapter == "PdfAdapter"
    source = evidence.sources[0]
    assert (source.title, source.authors, source.kind) == (
        "Rust 1.80 release notes",
        ["The Rust Team"],
        "pdf",
    )
    assert source.metadata["pages"] == 3
    assert "LazyCell and LazyLock" in evidence.text()
    assert (evidence.read, evidence.coverage) == (ReadKind.full_text, Coverage.full)


def test_pdf_page_cap_makes_it_partial(env):
    settings, fetcher, server = env
    one_page = settings.model_copy(update={"pdf_max_pages": 1})
    evidence = fetch_evidence(server.url("/test/pdf"), one_page, fetcher)
    assert evidence.truncated and evidence.coverage == Coverage.partial
    assert "1 of 3 pages" in evidence.coverage_reason


def test_broken_pdf_is_unsupported_content_not_a_crash(env):
    settings, fetcher, server = env
    with pytest.raises(UnsupportedContentError, match="could not be read"):
        fetch_evidence(server.url("/test/broken-pdf"), settings, fetcher)


def test_fetch_text_for_tool_uses_the_same_path(env):
    settings, fetcher, server = env
    title, text = fetch_text_for_tool(server.page_url("nytimes-1"), settings, fetcher, 300)
    assert title == "United States to Lift Sudan Sanctions"
    assert 100 < len(text) <= 302
    title, text = fetch_text_for_tool("https://arxiv.org/abs/2101.04061", settings, fetcher, 10_000)
    assert title.startswith("Towards Real-World Blind Face Restoration")


@pytest.mark.parametrize(
    ("url", "adapter"),
    [
        ("https://arxiv.org/abs/2101.04061", ArxivAdapter),
        ("https://github.com/encode/httpx", GitHubAdapter),
        ("https://github.com.evil.example/encode/httpx", WebPageAdapter),
        ("https://evil.example/github.com/encode/httpx", WebPageAdapter),
        ("https://arxiv.org.evil.example/abs/2101.04061", WebPageAdapter),
        ("https://github.com/orgs/encode", WebPageAdapter),
        ("https://example.com/paper.pdf", WebPageAdapter),  # PDFs are known by the response
    ],
)
def test_adapter_is_chosen_from_the_parsed_host(url, adapter):
    settings = Settings()
    with SafeFetcher(settings) as fetcher:
        assert isinstance(adapter_for(url, settings, fetcher), adapter)
