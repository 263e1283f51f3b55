"""SafeFetcher against hostile servers on loopback: compression bombs, stacked encodings,
dripping headers, slow hops and slow name lookups.

Each server is a raw TCP script (``ScriptedServer``), so it can misbehave below HTTP: send
headers a byte at a time, or notice the moment the client hangs up. Time bounds asserted here
are liveness guards only (generous multiples of the deadline), never performance goals.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from pipeline.errors import FetchNetworkError, UnsafeURLError, UnsupportedContentError
from pipeline.fetch import SafeFetcher
from pipeline.settings import Settings

BOMB_INFLATED = 1024 * 1024 * 1024  # what the stacked-gzip bomb inflates to: 1 GB of zeros


def gzip_bomb(size: int = BOMB_INFLATED) -> bytes:
    """``size`` zero bytes gzipped twice: a few KB on the wire (``Content-Encoding: gzip, gzip``)."""
    inner = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [inner.compress(block) for _ in range(size // len(block))]
    parts.append(inner.flush())
    return gzip.compress(b"".join(parts), 9)


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(4096)
        if not piece:
            break
        data += piece
    return data


def http_response(headers: dict[str, str], body: bytes, status: str = "200 OK") -> bytes:
    head = {"Content-Length": str(len(body)), "Connection": "close", **headers}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"HTTP/1.1 {status}\r\n{lines}\r\n".encode() + body


class ScriptedServer:
    """A loopback TCP server running ``script(conn, server)`` for each connection."""

    def __init__(self, script: Callable[[socket.socket, ScriptedServer], None]) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.client_left = threading.Event()  # a send failed: the client closed the connection
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fetcher(self, **overrides: object) -> SafeFetcher:
        allow = [f"127.0.0.1:{self.port}"]
        return SafeFetcher(Settings(fetch_allow_hosts=allow, **overrides))

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.script(conn, self)
            except OSError:
                self.client_left.set()

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.listener.close()
        self._thread.join(5)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()


@contextmanager
def serve(headers: dict[str, str], body: bytes) -> Iterator[ScriptedServer]:
    """A server answering every request with this one response."""

    def script(conn: socket.socket, server: ScriptedServer) -> None:
        read_request(conn)
        conn.sendall(http_response(headers, body))

    with ScriptedServer(script) as server:
        yield server


@pytest.fixture
def bomb_server(bomb: bytes) -> Iterator[ScriptedServer]:
    with serve({"Content-Type": "text/html", "Content-Encoding": "gzip, gzip"}, bomb) as server:
        yield server


def test_stacked_gzip_bomb_is_cut_at_the_cap_with_bounded_memory(bomb_server, bomb):
    assert len(bomb) < 16 * 1024  # a few KB on the wire...
    cap = Settings().fetch_max_bytes
    tracemalloc.start()
    try:
        with bomb_server.fetcher() as f:
            response = f.get(bomb_server.url())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.truncated and response.truncated_reason == f"cut at {cap} bytes"
    assert response.content == bytes(cap)  # ...decoded (both layers), then cut at the cap
    assert peak < 50 * 1024 * 1024, f"peak {peak / 2**20:.1f} MB for a {BOMB_INFLATED} B bomb"


def test_the_bomb_is_a_pdf_too_big_to_keep(bomb):
    """Binary over the cap is refused, not cut, also when the size is only known decoded."""
    headers = {"Content-Type": "application/pdf", "Content-Encoding": "gzip, gzip"}
    body = gzip.compress(gzip.compress(b"%PDF-1.4\n" + bytes(2 * 1024 * 1024)))
    with (
        serve(headers, body) as server,
        server.fetcher(fetch_max_bytes=1024 * 1024) as f,
        pytest.raises(UnsupportedContentError, match="PDF larger than"),
    ):
        f.get(server.url())


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send it
        ("gzip, gzip", lambda b: gzip.compress(gzip.compress(b))),
        ("deflate, gzip", lambda b: gzip.compress(zlib.compress(b))),
        ("identity", lambda b: b),
        ("gzip, identity", gzip.compress),
    ],
)
def test_supported_encodings_are_decoded(encoding, encode):
    page = b"<html><body>" + b"<p>plain words, many times over</p>" * 5000 + b"</body></html>"
    headers = {"Content-Type": "text/html; charset=utf-8", "Content-Encoding": encoding}
    with serve(headers, encode(page)) as server, server.fetcher() as f:
        response = f.get(server.url())
    assert response.content == page
    assert not response.truncated


@pytest.mark.parametrize(
    ("encoding", "reason"),
    [
        ("gzip, gzip, gzip", "stacks 3 layers"),
        ("deflate, gzip, gzip, gzip", "stacks 4 layers"),
        ("br", "unsupported Content-Encoding 'br'"),
        ("zstd", "unsupported Content-Encoding 'zstd'"),
        ("compress", "unsupported Content-Encoding 'compress'"),
    ],
)
def test_unsupported_or_stacked_encodings_are_refused(encoding, reason):
    body = gzip.compress(gzip.compress(gzip.compress(b"<p>three layers</p>")))
    headers = {"Content-Type": "text/html", "Content-Encoding": encoding}
    with (
        serve(headers, body) as server,
        server.fetcher() as f,
        pytest.raises(UnsupportedContentError, match=reason) as err,
    ):
        f.get(server.url())
    assert "compressed form" in err.value.user_message


def test_corrupt_gzip_is_a_clear_error():
    headers = {"Content-Type": "text/html", "Content-Encoding": "gzip"}
    with (
        serve(headers, b"\x1f\x8b\x08\x00 this is not gzip at all") as server,
        server.fetcher() as f,
        pytest.raises(UnsupportedContentError, match="not valid gzip"),
    ):
        f.get(server.url())


def drip_headers(conn: socket.socket, server: ScriptedServer) -> None:
    """A status line, then one header byte every 0.2 s, for as long as the client listens."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Drip: ")
    while not server.stopping.is_set():
        conn.sendall(b"a")  # raises once the client has closed: ScriptedServer notes it
        time.sleep(0.2)


def test_dripping_headers_are_cut_at_the_total_deadline():
    with ScriptedServer(drip_headers) as server:
        started = time.monotonic()
        with (
            server.fetcher(fetch_total_timeout=1.0, fetch_read_timeout=30) as f,
            pytest.raises(FetchNetworkError, match="total fetch timeout") as err,
        ):
            f.get(server.url())
        elapsed = time.monotonic() - started
        assert "response headers" in str(err.value)
        assert server.client_left.wait(5), "the fetcher kept the connection open"
    assert elapsed < 10  # liveness guard only: the per-read timeout (30 s) never came into it


def slow_redirects(conn: socket.socket, server: ScriptedServer) -> None:
    """Every hop takes 0.4 s to answer, then redirects to the next one."""
    read_request(conn)
    time.sleep(0.4)
    conn.sendall(http_response({"Location": f"/hop{server.connections}"}, b"", "302 Found"))


def test_the_deadline_covers_all_redirect_hops_together():
    """5 hops of 0.4 s each fit a per-hop deadline of 1 s, but not one deadline for the fetch."""
    with ScriptedServer(slow_redirects) as server:
        with (
            server.fetcher(fetch_total_timeout=1.0, fetch_max_redirects=5) as f,
            pytest.raises(FetchNetworkError, match="total fetch timeout"),
        ):
            f.get(server.url())
        assert 2 <= server.connections <= 4


def test_a_name_lookup_that_hangs_is_abandoned_at_the_deadline():
    released = threading.Event()

    def hanging_resolver(host: str) -> list[str]:
        released.wait(30)
        return ["127.0.0.1"]  # never reached: the fetch has given up by then

    settings = Settings(fetch_total_timeout=0.5)
    try:
        with (
            SafeFetcher(settings, resolver=hanging_resolver) as f,
            pytest.raises(FetchNetworkError, match="resolving slow.example"),
        ):
            f.get("http://slow.example/")
    finally:
        released.set()


def test_refused_redirect_target_from_a_hostile_server_is_still_refused():
    """The raw-socket path keeps the address check on every hop (here: NAT64 of loopback)."""

    def redirect(conn: socket.socket, server: ScriptedServer) -> None:
        read_request(conn)
        location = f"http://[64:ff9b::7f00:1]:{server.port}/"
        conn.sendall(http_response({"Location": location}, b"", "302 Found"))

    with (
        ScriptedServer(redirect) as server,
        server.fetcher() as f,
        pytest.raises(UnsafeURLError, match="non-public"),
    ):
        f.get(server.url())
