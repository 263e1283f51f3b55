"""SafeFetcher against hostile servers on loopback: compression bombs, stacked encodings,
dripping headers, slow hops and slow name lookups.

Each server is a raw TCP script (``ScriptedServer``), so it can misbehave below HTTP: send
headers a byte at a time, or notice the moment the client hangs up. Time bounds asserted here
are liveness guards only (generous multiples of the deadline), never performance goals.
"""

from __future__ import annotations

import gzip
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.errors import FetchNetworkError, UnsafeURLError, UnsupportedContentError
from pipeline.fetch import SafeFetcher
from pipeline.fetch_transport import DeadlineTransport
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


def silent_tls_server(conn: socket.socket, server: ScriptedServer) -> None:
    """Takes the TLS ClientHello and never answers it; notes when the client hangs up."""
    conn.settimeout(15)
    while conn.recv(4096):
        pass
    server.client_left.set()


def test_a_tls_handshake_that_never_completes_is_cut_at_the_total_deadline():
    with ScriptedServer(silent_tls_server) as server:
        started = time.monotonic()
        with (
            server.fetcher(fetch_total_timeout=1.0, fetch_connect_timeout=30) as f,
            pytest.raises(FetchNetworkError, match="total fetch timeout"),
        ):
            f.get(f"https://127.0.0.1:{server.port}/")
        assert server.client_left.wait(5), "the fetcher kept the connection open"
    assert time.monotonic() - started < 10  # liveness guard only


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for ``secure.test`` (certificate file, key file)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=secure.test", "-addext", "subjectAltName=DNS:secure.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_through_the_deadline_transport_keeps_pinning_sni_and_host(certificate):
    """Connected to the checked IP; the handshake names (and verifies) the host; Host intact."""
    cert, key = certificate
    seen: dict[str, str | None] = {}
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server_tls.sni_callback = lambda sock, name, ctx: seen.__setitem__("sni", name)

    def tls_echo(conn: socket.socket, server: ScriptedServer) -> None:
        with server_tls.wrap_socket(conn, server_side=True) as tls:
            request = read_request(tls).decode()
            host = [ln for ln in request.split("\r\n") if ln.lower().startswith("host:")]
            seen["host"] = host[0].split(":", 1)[1].strip()
            tls.sendall(http_response({"Content-Type": "text/plain"}, b"over tls"))

    with ScriptedServer(tls_echo) as server:
        settings = Settings(fetch_allow_hosts=[f"secure.test:{server.port}"])
        transport = DeadlineTransport(ssl.create_default_context(cafile=str(cert)))
        resolver = {"secure.test": ["127.0.0.1"]}.__getitem__
        with SafeFetcher(settings, transport=transport, resolver=resolver) as f:
            response = f.get(f"https://secure.test:{server.port}/")
    assert response.content == b"over tls"
    assert seen == {"sni": "secure.test", "host": f"secure.test:{server.port}"}


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
