"""The fetcher's own httpx transport: every socket operation obeys the fetch's total deadline.

httpx's timeouts are per operation, so a server that sends one header byte per second never
trips the read timeout and holds a worker for as long as it likes. Here the network backend
under httpcore gives every connect, TLS handshake, read and write the smaller of its own
timeout and the time left until the deadline of the fetch in progress (``deadline_scope``),
and refuses to start one once the deadline has passed. That bounds the whole exchange -
connect, TLS, request, response headers and body - not just the body.

Everything else is httpcore's stock connection pool: connections go to the address in the
URL (the fetcher has already pinned it to the checked IP), TLS verifies ``sni_hostname``.
``resolve_within`` bounds the name lookup that comes before, which no socket timeout covers.
"""

from __future__ import annotations

import contextlib
import contextvars
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpcore
import httpx

from pipeline.errors import FetchNetworkError


class Deadline:
    """A point in (monotonic) time; ``fired`` records that it, not a per-op timeout, hit."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.fired = False

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        if self.remaining() <= 0:
            self.fired = True
        return self.fired


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "fetch_deadline", default=None
)


@contextlib.contextmanager
def deadline_scope(deadline: Deadline) -> Iterator[Deadline]:
    """Connections opened inside the scope (this thread) are bound by ``deadline``."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)


def resolve_within(resolve: Callable[[str], list[str]], host: str, deadline: Deadline) -> list[str]:
    """``resolve(host)`` given at most the time left; a lookup still running is abandoned.

    ``getaddrinfo`` cannot be interrupted, so it runs in a daemon thread that is left to finish
    (the system resolver's own timeouts end it) while the fetch gives up at the deadline.
    """
    result: list[list[str] | BaseException] = []

    def run() -> None:
        try:
            result.append(resolve(host))
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    worker = threading.Thread(target=run, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline.remaining()))
    if not result:
        deadline.fired = True
        raise FetchNetworkError(f"total fetch timeout exceeded resolving {host}")
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


@contextlib.contextmanager
def _within(deadline: Deadline, timeout: float | None, error: type[Exception]) -> Iterator[float]:
    """The timeout to give one socket operation: its own, or the time left if that is less.

    No time left raises ``error`` before the operation starts; a timeout raised by an operation
    that was given the time left (not its own timeout) marks the deadline as fired.
    """
    left = deadline.remaining()
    if left <= 0:
        deadline.fired = True
        raise error("total fetch timeout exceeded")
    bounded = left if timeout is None else min(timeout, left)
    try:
        yield bounded
    except httpcore.TimeoutException:
        if timeout is None or bounded < timeout:
            deadline.fired = True
        raise


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _within(self._deadline, timeout, httpcore.ReadTimeout) as bounded:
            return self._inner.read(max_bytes, bounded)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _within(self._deadline, timeout, httpcore.WriteTimeout) as bounded:
            self._inner.write(buffer, bounded)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        with _within(self._deadline, timeout, httpcore.ConnectTimeout) as bounded:
            tls = self._inner.start_tls(ssl_context, server_hostname, bounded)
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, with connections bound by the deadline of the current scope."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        deadline = _current.get()
        if deadline is None:  # outside a fetch: plain per-operation timeouts
            return self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        with _within(deadline, timeout, httpcore.ConnectTimeout) as bounded:
            stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream, deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("the fetcher does not use unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpcore -> httpx, most specific first (httpx keeps its own mapping private).
_ERRORS: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.TimeoutException, httpx.TimeoutException),
]


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc) or type(exc).__name__, request=request) from exc
        raise


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes], request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors(self._request):
            yield from self._inner

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            with _httpx_errors(self._request):
                close()


class DeadlineTransport(httpx.BaseTransport):
    """HTTP/1.1 over httpcore's pool and the deadline backend; no keep-alive, no proxies."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            # Never reuse a connection: two names on one address must not share a TLS session,
            # and a connection must not outlive the deadline of the fetch that opened it.
            max_keepalive_connections=0,
            max_connections=100,  # httpx's default (httpcore's own is 10)
            network_backend=_DeadlineBackend(),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors(request):
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, request),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()
