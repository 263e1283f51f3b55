"""The one SSRF-safe HTTP fetcher. Every outbound request of retrieval goes through it.

Rules (FIELD-NOTES, SSRF), applied to the first URL and again to every redirect hop:

- http/https only, no userinfo;
- the host is resolved (``resolver`` seam, ``getaddrinfo`` by default; numeric forms such as
  ``2130706433`` or ``0x7f.1`` are parsed as the addresses they are) and the URL is refused if ANY
  address is not global (IPv4-mapped IPv6 unwrapped);
- the connection is pinned to the checked address (the URL's host is replaced by the IP; the
  ``Host`` header and TLS SNI keep the name, so certificates are still checked for the name);
- redirects are followed by hand, at most ``fetch_max_redirects``; ``Authorization`` is dropped
  when a redirect leaves the origin;
- the body is streamed with a byte cap: text is cut and marked truncated, binary (PDF) over the
  cap is refused; the content type must be on an allowlist;
- connect/read timeouts per operation, and a total deadline for the whole fetch that also stops
  a body that drips forever; ``trust_env=False`` (no proxies or netrc from the environment).

``FETCH_ALLOW_HOSTS`` exempts named hosts from the address check: an entry is a host name or
address as written in the URL (``127.0.0.1``, ``intranet.local``) or ``host:port``. It matches
the URL's host, never the resolved address, so an allowed name does not allow other names (such
as ``localhost``) that resolve to the same place.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipeline.errors import (
    FetchNetworkError,
    UnsafeURLError,
    UnsupportedContentError,
)
from pipeline.fetch_policy import (
    PDF_TYPE,
    effective_media_type,
    parse_media_type,
    raise_for_status,
)
from pipeline.settings import Settings

log = logging.getLogger(__name__)

Resolver = Callable[[str], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle takes ~0.1 s."""
    return httpx.create_ssl_context()


def getaddrinfo_resolver(host: str) -> list[str]:
    """Every address the system resolver gives for ``host`` (the default ``resolver``)."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class FetchResponse:
    """A fetched body (already capped) and what is known about it."""

    url: str  # the final URL, after redirects
    status_code: int
    media_type: str  # lower case, no parameters; "application/pdf" when sniffed
    charset: str | None
    content: bytes
    headers: httpx.Headers
    truncated: bool = False
    truncated_reason: str | None = None
    redirects: tuple[str, ...] = ()
    elapsed: float = 0.0

    @property
    def is_pdf(self) -> bool:
        return self.media_type == PDF_TYPE

    def text(self) -> str:
        """The body decoded with the declared charset (UTF-8 if none); bad bytes replaced."""
        try:
            return self.content.decode(self.charset or "utf-8", errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass
class _Target:
    url: httpx.URL
    host: str
    address: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


def _literal_address(host: str) -> IPAddress | None:
    """The address a numeric host stands for, including legacy IPv4 forms (``0x7f.1``)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if all(c in "0123456789abcdefx." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_public(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


class SafeFetcher:
    """GET with SSRF checks, pinned connections, manual redirects, byte cap and deadlines.

    ``transport`` (an ``httpx.BaseTransport``) and ``resolver`` (``host -> [ip, ...]``) are
    the seams tests and the recorded web use; the checks run the same way with them.
    """

    def __init__(
        self,
        settings: Settings,
        transport: httpx.BaseTransport | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.settings = settings
        self.resolver: Resolver = resolver or getaddrinfo_resolver
        self._allow = {entry.strip().lower() for entry in settings.fetch_allow_hosts}
        self._client = httpx.Client(
            transport=transport,
            verify=_ssl_context(),
            trust_env=False,
            follow_redirects=False,
            # Never reuse a connection: two names on one address must not share a TLS session.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SafeFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- checks ----------------------------------------------------------------------------
    def _allowed(self, host: str, port: int | None) -> bool:
        bare = host.strip("[]")
        names = {bare, f"[{bare}]"} if ":" in bare else {bare}
        return bool(self._allow & (names | {f"{n}:{port}" for n in names if port}))

    def check_url(self, url: str | httpx.URL) -> _Target:
        """Validate one hop and pick the address to connect to (raises ``UnsafeURLError``)."""
        try:
            parsed = httpx.URL(url) if isinstance(url, str) else url
        except httpx.InvalidURL as exc:
            raise UnsafeURLError(f"invalid URL: {exc}") from None
        if parsed.scheme not in {"http", "https"}:
            raise UnsafeURLError(f"scheme {parsed.scheme or '(none)'!r} is not allowed")
        if parsed.userinfo:
            raise UnsafeURLError("URLs with a user name or password are not allowed")
        host = parsed.host.lower().rstrip(".")
        if not host:
            raise UnsafeURLError("URL has no host")
        loopback_name = host == "localhost" or host.endswith(".localhost")  # RFC 6761
        if loopback_name and not self._allowed(host, parsed.port):
            raise UnsafeURLError(f"{host} is a loopback name")
        literal = _literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                ascii_host = parsed.raw_host.decode("ascii").lower().rstrip(".")
                addresses = [
                    ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(ascii_host)
                ]
            except (OSError, UnicodeError, ValueError) as exc:
                raise FetchNetworkError(f"could not resolve {host}: {exc}") from None
        if not addresses:
            raise FetchNetworkError(f"could not resolve {host}")
        if not self._allowed(host, parsed.port):
            for addr in addresses:
                if not _is_public(addr):
                    raise UnsafeURLError(f"{host} resolves to a non-public address ({addr})")
        address = str(addresses[0])
        netloc = parsed.netloc.decode("ascii")
        target = _Target(url=parsed.copy_with(host=address), host=host, address=address)
        target.headers["Host"] = netloc
        if parsed.scheme == "https":
            target.extensions["sni_hostname"] = parsed.raw_host.decode("ascii")
        return target

    # --- fetching --------------------------------------------------------------------------
    def get(
        self,
        url: str,
        *,
        accept: str | None = None,
        headers: dict[str, str] | None = None,
        check_status: bool = True,
    ) -> FetchResponse:
        """Fetch ``url`` (GET). Raises only errors from ``pipeline.errors``.

        ``check_status=False`` returns non-2xx responses instead of raising (bodies still capped).
        """
        s = self.settings
        started = time.monotonic()
        deadline = started + s.fetch_total_timeout
        extra = dict(headers or {})
        current = _parse_url(url)
        redirects: list[str] = []
        for _hop in range(s.fetch_max_redirects + 1):
            target = self.check_url(current)
            response = self._send(target, accept, extra, deadline)
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location:
                response.close()
                nxt = _parse_url(location, base=current)
                if (nxt.scheme, nxt.host, nxt.port) != (current.scheme, current.host, current.port):
                    extra = {k: v for k, v in extra.items() if k.lower() != "authorization"}
                redirects.append(str(nxt))
                current = nxt
                continue
            try:
                if check_status:
                    raise_for_status(response.status_code, response.headers, str(current))
                media, charset, body, cut = self._read(response, str(current), deadline)
            finally:
                response.close()
            log.debug("fetched %s: %s, %d bytes", current, media, len(body))
            return FetchResponse(
                url=str(current),
                status_code=response.status_code,
                media_type=media,
                charset=charset,
                content=body,
                headers=response.headers,
                truncated=cut is not None,
                truncated_reason=cut,
                redirects=tuple(redirects),
                elapsed=time.monotonic() - started,
            )
        raise UnsafeURLError(f"more than {s.fetch_max_redirects} redirects")

    def _send(
        self, target: _Target, accept: str | None, extra: dict[str, str], deadline: float
    ) -> httpx.Response:
        s = self.settings
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchNetworkError("total fetch timeout exceeded")
        timeout = httpx.Timeout(
            connect=min(s.fetch_connect_timeout, remaining),
            read=min(s.fetch_read_timeout, remaining),
            write=min(s.fetch_read_timeout, remaining),
            pool=min(s.fetch_connect_timeout, remaining),
        )
        hdrs = {"User-Agent": s.fetch_user_agent, "Accept": accept or "*/*", **extra}
        hdrs.update(target.headers)
        request = self._client.build_request(
            "GET", target.url, headers=hdrs, timeout=timeout, extensions=target.extensions
        )
        try:
            return self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise FetchNetworkError(f"timed out connecting to {target.host}") from None
        except httpx.HTTPError as exc:
            raise FetchNetworkError(f"{type(exc).__name__} fetching {target.host}") from None

    def _read(
        self, response: httpx.Response, url: str, deadline: float
    ) -> tuple[str, str | None, bytes, str | None]:
        """(media type, charset, body, why the body was cut or None), enforcing the policy."""
        cap = self.settings.fetch_max_bytes
        media, charset = parse_media_type(response.headers.get("content-type"))
        declared = response.headers.get("content-length", "")
        chunks = _deadline_chunks(response, deadline)
        cut = None
        try:
            first = next((c for c in chunks if c), b"")
            media = effective_media_type(media, first, url)
            binary = media == PDF_TYPE
            if binary and declared.isdigit() and int(declared) > cap:
                raise UnsupportedContentError(
                    f"PDF of {declared} bytes exceeds the {cap}-byte limit"
                )
            body = bytearray(first)
            try:
                for chunk in chunks:
                    body += chunk
                    if len(body) > cap:
                        break
            except _Deadline:
                if binary or not body:
                    raise
                cut = "total timeout"  # text: keep what arrived
        except _Deadline:
            raise FetchNetworkError(f"total timeout reading {url}") from None
        finally:
            chunks.close()
        if len(body) > cap:
            if binary:
                raise UnsupportedContentError(f"PDF larger than the {cap}-byte limit")
            del body[cap:]
            cut = f"cut at {cap} bytes"
        return media, charset, bytes(body), cut


class _Deadline(Exception):
    pass


def _parse_url(url: str, base: httpx.URL | None = None) -> httpx.URL:
    try:
        return base.join(url) if base is not None else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UnsafeURLError(f"invalid URL: {url!r}") from None


def _deadline_chunks(response: httpx.Response, deadline: float) -> Generator[bytes, None, None]:
    """Body chunks until the deadline.

    A watchdog shuts the socket down at the deadline, which unblocks a read waiting on a
    server that has stopped sending. That ends a close-delimited body as cleanly as a real end,
    so whether the watchdog fired is what tells the two apart.
    """
    sock = _socket_of(response)
    fired = threading.Event()
    watchdog = None
    if sock is not None:
        remaining = max(0.0, deadline - time.monotonic())
        watchdog = threading.Timer(remaining, _shutdown, (sock, fired))
        watchdog.daemon = True
        watchdog.start()
    try:
        for chunk in response.iter_bytes():  # as received: a chunk size would hold data back
            if fired.is_set() or time.monotonic() > deadline:
                raise _Deadline
            yield chunk
        if fired.is_set():
            raise _Deadline
    except httpx.HTTPError as exc:
        if fired.is_set() or time.monotonic() >= deadline:
            raise _Deadline from None
        if isinstance(exc, httpx.TimeoutException):
            raise FetchNetworkError("read timed out") from None
        raise FetchNetworkError(f"{type(exc).__name__} while reading the body") from None
    finally:
        if watchdog is not None:
            watchdog.cancel()


def _socket_of(response: httpx.Response) -> socket.socket | None:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    try:
        sock = stream.get_extra_info("socket")
    except Exception:  # any backend without a plain socket simply gets no watchdog
        return None
    return sock if isinstance(sock, socket.socket) else None


def _shutdown(sock: socket.socket, fired: threading.Event) -> None:
    fired.set()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
