"""The GitHub adapter's API calls (repository, README, languages, latest release) against a real
loopback server standing in for the GitHub API: facts as citable sentences, optional calls that
fail, rate limits, and the similar tech the README names."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from pipeline.adapters import fetch_evidence
from pipeline.adapters.base import METADATA_SECTION
from pipeline.errors import UpstreamRateLimited
from pipeline.fetch import SafeFetcher
from pipeline.text import is_citable, split_units
from services.recorded_web import RecordedServer, Request, Response, Route, serve_recorded

JSON = {"Content-Type": "application/json; charset=utf-8"}
RESET_IN = 40  # seconds until the rate limit resets, as the server says

README = """# fastq

A task queue for Python that keeps every job in Postgres and retries it with backoff.
It is inspired by Sidekiq and compared to Celery it needs no broker at all.
Workers are plain processes, so a crash loses nothing and a deploy drains the queue first.

## Alternatives

- [Dramatiq](https://dramatiq.io) — a fast and reliable distributed task processing library.
- RQ (https://python-rq.org): simple job queues backed by Redis.
- Huey, a little task queue.
"""
REPO = {
    "full_name": "t/fastq",
    "html_url": "https://github.com/t/fastq",
    "description": "Postgres-backed task queue",
    "stargazers_count": 12345,
    "forks_count": 1234,
    "language": "Python",
    "topics": ["queue", "postgres"],
    "license": {"spdx_id": "MIT"},
    "created_at": "2019-04-01T10:00:00Z",
    "pushed_at": "2025-06-03T08:00:00Z",
    "archived": True,
    "default_branch": "main",
}
LANGUAGES = {"Python": 82_000, "C": 12_000, "Cython": 4_000, "Shell": 2_000}
RELEASE = {
    "tag_name": "v5.4.0",
    "name": "Version 5.4.0",
    "published_at": "2025-06-02T12:00:00Z",
    "body": "This release adds priorities to every queue. Retries now back off exponentially "
    "after a failure.\n\n"
    "## What's Changed\n* Fix leak by @someone in https://github.com/t/fastq/pull/9\n",
}


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Route:
    return lambda request: Response(status, {**JSON, **(headers or {})}, json.dumps(body).encode())


def _readme(request: Request) -> Response:
    return Response(200, {"Content-Type": "application/vnd.github.raw"}, README.encode())


def _rate_limited(request: Request) -> Response:
    reset = str(int(time.time()) + RESET_IN)
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    return Response(403, {**JSON, **headers}, b'{"message": "API rate limit exceeded"}')


def _repo_routes(name: str, languages: Route, release: Route) -> dict[str, Route]:
    base = f"/github/repos/t/{name}"
    repo = {**REPO, "full_name": f"t/{name}", "html_url": f"https://github.com/t/{name}"}
    return {
        base: _json(repo),
        f"{base}/readme": _readme,
        f"{base}/languages": languages,
        f"{base}/releases/latest": release,
    }


ROUTES: dict[str, Route] = {
    **_repo_routes("fastq", _json(LANGUAGES), _json(RELEASE)),
    **_repo_routes(
        "bare", _json({"message": "Not Found"}, 404), _json({"message": "Not Found"}, 404)
    ),
    **_repo_routes("broken", _json({"message": "boom"}, 502), lambda r: Response(200, JSON, b"[")),
    **_repo_routes("slow", _json(LANGUAGES), _json({"message": "slow"}, 429, {"Retry-After": "7"})),
    "/github/repos/t/limited": _rate_limited,
}


@pytest.fixture(scope="module")
def api() -> Iterator[RecordedServer]:
    with serve_recorded(routes=ROUTES) as server:
        yield server


def _read(api: RecordedServer, name: str):
    settings = api.settings()
    with SafeFetcher(settings) as fetcher:
        return fetch_evidence(f"https://github.com/t/{name}", settings, fetcher)


def _metadata(evidence) -> list[str]:
    snippet = evidence.snippets[-1]
    assert snippet.section == METADATA_SECTION
    return [u.text for u in split_units(snippet.text)]


def test_repository_facts_become_citable_sentences(api):
    sentences = _metadata(_read(api, "fastq"))
    assert sentences == [
        "The repository t/fastq is released under the MIT licence.",
        "The repository t/fastq is written mostly in Python (82%), with C (12%), Cython (4%) "
        "and Shell (2%).",
        "The repository t/fastq has 12,345 stars and 1,234 forks on GitHub.",
        "The repository t/fastq was created on 1 April 2019.",
        "The latest release of t/fastq is “Version 5.4.0” (v5.4.0), published on 2 June 2025.",
        "The notes of that release begin: “This release adds priorities to every queue. Retries "
        "now back off exponentially after a failure.”",
        "The GitHub topics of t/fastq are queue and postgres.",
        "The default branch of t/fastq is main.",
        "The last push to t/fastq was on 3 June 2025.",
        "The repository t/fastq is archived, so it is read-only.",
    ]
    assert [s for s in sentences if not is_citable(s)] == []


def test_release_notes_links_and_handles_stay_out(api):
    evidence = _read(api, "fastq")
    source = evidence.sources[0]
    assert source.metadata["latest_release"]["notes"].startswith("This release adds priorities")
    assert "pull/9" not in evidence.text() and "@someone" not in json.dumps(source.metadata)


def test_no_release_and_no_languages_leave_their_sentences_out(api):
    evidence = _read(api, "bare")
    sentences = _metadata(evidence)
    assert not any("latest release" in s for s in sentences)
    assert "The repository t/bare is mainly written in Python." in sentences
    assert "languages" not in evidence.sources[0].metadata


def test_optional_calls_that_fail_do_not_fail_the_read(api):
    evidence = _read(api, "broken")  # languages 502, release answers broken JSON
    sentences = _metadata(evidence)
    assert "The repository t/broken is mainly written in Python." in sentences
    assert not any("latest release" in s for s in sentences)
    assert evidence.read.value == "readme"


def test_rate_limit_is_retryable_with_the_reset_time(api):
    with pytest.raises(UpstreamRateLimited) as err:
        _read(api, "limited")
    assert RESET_IN - 5 <= err.value.retry_after <= RESET_IN


def test_rate_limit_on_an_optional_call_is_raised_too(api):
    with pytest.raises(UpstreamRateLimited) as err:
        _read(api, "slow")
    assert err.value.retry_after == 7


def test_similar_tech_the_readme_names_is_carried_with_its_snippet(api):
    evidence = _read(api, "fastq")
    found = {c.name: c for c in evidence.similar_candidates}
    assert list(found) == ["Sidekiq", "Celery", "Dramatiq", "RQ", "Huey"]
    assert (found["Sidekiq"].relation, found["Celery"].relation) == (
        "inspired by",
        "compared against",
    )
    assert {found[n].relation for n in ("Dramatiq", "RQ", "Huey")} == {"alternative"}
    assert found["RQ"].url == "https://python-rq.org"
    assert found["Dramatiq"].url is None  # the link target is not in the snippet text
    snippets = {s.id: s.text for s in evidence.snippets}
    assert all(c.name in snippets[c.snippet_id] for c in found.values())
