"""SafeFetcher limits: byte cap, total deadline, content types, HTTP status mapping.

Elapsed-time checks here are behavioural, not performance goals: they only tell "stopped by
the total deadline" apart from "stopped by the (much longer) read timeout or never".
"""

from __future__ import annotations

import time

import pytest

from pipeline.errors import (
    FetchNetworkError,
    SourceUnavailableError,
    UnsupportedContentError,
    UpstreamRateLimited,
    UpstreamServerError,
)
from pipeline.fetch import SafeFetcher
from pipeline.settings import Settings


def _fetcher(server, **overrides):
    return SafeFetcher(server.settings(Settings(**overrides)))


def test_50_mb_text_body_is_cut_at_the_byte_cap(local_web):
    with _fetcher(local_web) as f:
        response = f.get(local_web.url("/test/huge"))
    assert len(response.content) == Settings().fetch_max_bytes == 5 * 1024 * 1024
    assert response.truncated
    assert "cut at" in response.truncated_reason


def test_endless_body_is_cut_by_the_total_deadline(local_web):
    started = time.monotonic()
    with _fetcher(local_web, fetch_total_timeout=1.5, fetch_read_timeout=60) as f:
        response = f.get(local_web.url("/test/endless"))
    assert response.truncated
    assert response.truncated_reason == "total timeout"
    assert b"drip" in response.content
    assert time.monotonic() - started < 30  # well before the 60 s read timeout


def test_stalled_body_is_cut_by_the_total_deadline_not_the_read_timeout(local_web):
    """No byte after the first 1 KB: only the deadline's watchdog can end the read."""
    started = time.monotonic()
    with _fetcher(local_web, fetch_total_timeout=1.5, fetch_read_timeout=60) as f:
        response = f.get(local_web.url("/test/stall"))
    assert response.truncated
    assert response.content.startswith(b"<html><body><p>first bytes")
    assert time.monotonic() - started < 30


def test_binary_content_refused_with_a_clear_reason(local_web):
    with _fetcher(local_web) as f, pytest.raises(UnsupportedContentError) as err:
        f.get(local_web.url("/test/binary"))
    assert "application/octet-stream" in str(err.value)
    assert "application/octet-stream" in err.value.user_message


def test_untyped_binary_content_refused(local_web):
    with _fetcher(local_web) as f, pytest.raises(UnsupportedContentError, match="without a type"):
        f.get(local_web.url("/test/untyped"))


def test_pdf_is_read_whole_and_typed(local_web):
    with _fetcher(local_web) as f:
        response = f.get(local_web.url("/test/pdf"))
    assert response.is_pdf
    assert response.content.startswith(b"%PDF-")
    assert not response.truncated


def test_pdf_over_the_byte_cap_is_refused_not_cut(local_web):
    with _fetcher(local_web, fetch_max_bytes=1000) as f, pytest.raises(UnsupportedContentError):
        f.get(local_web.url("/test/pdf"))


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/test/500", UpstreamServerError),
        ("/test/404", SourceUnavailableError),
        ("/github/repos/test/server-error", UpstreamServerError),
        ("/github/repos/test/rate-limited", UpstreamRateLimited),
    ],
)
def test_http_errors_map_to_the_error_tree(local_web, path, error):
    with _fetcher(local_web) as f, pytest.raises(error):
        f.get(local_web.url(path))


def test_429_carries_retry_after(local_web):
    with _fetcher(local_web) as f, pytest.raises(UpstreamRateLimited) as err:
        f.get(local_web.url("/test/429"))
    assert err.value.retry_after == 7


def test_status_can_be_returned_instead_of_raised(local_web):
    with _fetcher(local_web) as f:
        response = f.get(local_web.url("/test/404"), check_status=False)
    assert response.status_code == 404


def test_refused_connection_is_a_network_error(local_web):
    import socket

    with socket.socket() as s:  # a port nobody listens on: bind, never listen
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        settings = Settings(fetch_allow_hosts=[f"127.0.0.1:{port}"])
        with SafeFetcher(settings) as f, pytest.raises(FetchNetworkError):
            f.get(f"http://127.0.0.1:{port}/")
