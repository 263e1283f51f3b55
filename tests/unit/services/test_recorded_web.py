"""The recorded web: every recorded item at its real URL, offline, with SSRF checks running;
and the loopback server variant."""

from __future__ import annotations

import base64
import json
import socket

import httpx
import pytest

from pipeline.adapters import fetch_evidence
from pipeline.errors import FetchNetworkError, UnsafeURLError
from pipeline.fetch import SafeFetcher
from pipeline.models import Coverage
from pipeline.settings import Settings
from services.recorded_web import (
    DEFAULT_DATA_DIR,
    PLACEHOLDER_ADDRESS,
    SYNTHETIC_PAGE_BASE,
    RecordedWeb,
    serve_recorded,
)

MANIFEST = json.loads((DEFAULT_DATA_DIR / "manifest.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def web():
    return RecordedWeb()


@pytest.fixture
def fetcher(web):
    with web.fetcher(Settings()) as f:
        yield f


def test_every_recorded_item_is_served_at_its_real_url(web, fetcher):
    settings = Settings()
    adapters = {"page": "WebPageAdapter", "github": "GitHubAdapter", "arxiv": "ArxivAdapter"}
    for entry in MANIFEST:
        url = web.page_url(entry["id"]) if entry["kind"] == "page" else entry["url"]
        evidence = fetch_evidence(url, settings, fetcher)
        assert evidence.adapter == adapters[entry["kind"]], url
        assert evidence.coverage != Coverage.failed, url
        if entry["kind"] == "page":
            meta = json.loads(
                (DEFAULT_DATA_DIR / entry["path"] / "expected-metadata.json").read_text("utf-8")
            )
            assert evidence.title == meta["title"], url
        elif entry["kind"] == "github":
            assert evidence.title == entry["id"]
        else:
            record = json.loads((DEFAULT_DATA_DIR / entry["path"]).read_text("utf-8"))
            assert evidence.title == record["title"]


def test_pages_keep_their_own_urls_and_get_synthetic_ones_otherwise(web):
    by_id = {e["id"]: e for e in MANIFEST if e["kind"] == "page"}
    assert web.page_url("bbc-1") == by_id["bbc-1"]["url"]
    assert web.page_url("qq") == SYNTHETIC_PAGE_BASE + "qq"  # no URL recorded
    # two captures of one article share a URL: the first keeps it
    assert web.page_url("lifehacker-post-comment-load") == by_id["lifehacker-working"]["url"]
    assert web.page_url("lifehacker-working") == SYNTHETIC_PAGE_BASE + "lifehacker-working"


def test_pages_match_variants_of_their_url(web, fetcher):
    url = web.page_url("bbc-1")  # http://www.bbc.com/news/world-us-canada-33646704
    variant = url.replace("http://", "https://") + "/?utm_source=twitter#comments"
    evidence = fetch_evidence(variant, Settings(), fetcher)
    assert evidence.title == "Obama admits US gun laws are his 'biggest frustration'"


def test_ssrf_checks_still_run(web, fetcher):
    with pytest.raises(UnsafeURLError):
        fetcher.get("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(UnsafeURLError):
        fetcher.get("http://localhost/")
    with pytest.raises(FetchNetworkError, match="could not resolve"):
        fetcher.get("https://not-recorded.example/")
    assert web.resolver("export.arxiv.org") == [PLACEHOLDER_ADDRESS]


def test_transport_answers_only_pinned_requests(web):
    with httpx.Client(transport=web.transport) as client, pytest.raises(httpx.ConnectError):
        client.get("https://export.arxiv.org/api/query?id_list=2101.04061")


def test_github_json_keeps_absent_fields_empty(fetcher):
    data = fetcher.get("https://api.github.com/repos/encode/httpx").json()
    assert data["full_name"] == "encode/httpx"
    assert data["license"]["spdx_id"] == "BSD-3-Clause"
    for absent in ("description", "stargazers_count", "language", "pushed_at"):
        assert data[absent] is None
    assert data["topics"] == []
    assert data["x_recorded"]["snapshot_commit"].startswith("ae1b9f66")


def test_github_readme_raw_and_json(fetcher):
    raw = fetcher.get(
        "https://api.github.com/repos/celery/celery/readme",
        accept="application/vnd.github.raw+json",
    )
    assert raw.text().startswith(".. image::")
    as_json = fetcher.get(
        "https://api.github.com/repos/celery/celery/readme", accept="application/vnd.github+json"
    ).json()
    assert as_json["name"] == "README.rst"
    assert base64.b64decode(as_json["content"]) == raw.content


def test_arxiv_atom_lists_each_known_id(fetcher):
    feed = fetcher.get(
        "https://export.arxiv.org/api/query?id_list=2101.04061v2,cs/0011004,2999.00001"
    ).text()
    assert feed.count("<entry>") == 2
    assert "<opensearch:totalResults>2</opensearch:totalResults>" in feed
    assert "Anonymous Oblivious Transfer" in feed


def test_serve_recorded_on_loopback_and_stops():
    with serve_recorded() as server:
        overrides = server.settings_overrides()
        assert overrides["FETCH_ALLOW_HOSTS"] == f"127.0.0.1:{server.port}"
        settings = server.settings()
        assert settings.github_api_url == overrides["GITHUB_API_URL"]
        with SafeFetcher(settings) as f:  # the allowlist admits exactly the server's port
            evidence = fetch_evidence("https://github.com/karpathy/nanoGPT", settings, f)
            page = fetch_evidence(server.page_url("v8-blog"), settings, f)
        assert evidence.title == "karpathy/nanoGPT"
        assert page.title == "standalone WebAssembly binaries using Emscripten · V8"
        port = server.port
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
