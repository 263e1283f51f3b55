"""The one SSRF-safe HTTP fetcher. Every outbound request of retrieval goes through it.

Rules against server-side request forgery, applied to the first URL and again to every redirect hop:

- http/https only, no userinfo;
- the host is resolved (``resolver`` seam, ``getaddrinfo`` by default; numeric forms such as
  ``2130706433`` or ``0x7f.1`` are parsed as the addresses they are) and the URL is refused if ANY
  address is not public (``pipeline.netguard.is_public_address``: IPv6 forms embedding an IPv4
  address - mapped, NAT64, 6to4, Teredo, ... - are judged by that IPv4 address);
- the connection is pinned to the checked address (the URL's host is replaced by the IP; the
  ``Host`` header and TLS SNI keep the name, so certificates are still checked for the name);
- redirects are followed by hand, at most ``fetch_max_redirects``; ``Authorization`` is dropped
  when a redirect leaves the origin;
- the body is read raw and its Content-Encoding undone here with bounded output
  (``pipeline.fetch_decode``: at most two gzip/deflate layers), under a byte cap on the DECODED
  size: text is cut and marked truncated, binary (PDF) over the cap is refused; the content type
  must be on an allowlist;
- connect/read timeouts per operation, and ONE total deadline per fetch (all redirect hops)
  that bounds the name lookup, connect, TLS, the response headers and the body
  (``pipeline.fetch_transport``), so neither dripping headers nor a dripping body hold a worker;
  ``trust_env=False`` (no proxies or netrc from the environment).

With the ``transport`` seam (tests, the recorded web: in-process, no sockets) the SSRF checks,
caps and content rules are the same, but timeouts are the transport's business, and a body the
transport has already read is taken as it is (httpx decoded it).

``FETCH_ALLOW_HOSTS`` exempts named hosts from the address check: an entry is a host name or
address as written in the URL (``127.0.0.1``, ``intranet.local``) or ``host:port``. It matches
the URL's host, never the resolved address, so an allowed name does not allow other names (such
as ``localhost``) that resolve to the same place.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipeline.errors import (
    FetchNetworkError,
    UnsafeURLError,
    UnsupportedContentError,
)
from pipeline.fetch_decode import ACCEPT_ENCODING, content_codings, decoded_chunks
from pipeline.fetch_policy import (
    PDF_TYPE,
    effective_media_type,
    parse_media_type,
    raise_for_status,
)
from pipeline.fetch_transport import Deadline, DeadlineTransport, deadline_scope, resolve_within
from pipeline.netguard import is_public_address, literal_address
from pipeline.settings import Settings

log = logging.getLogger(__name__)

Resolver = Callable[[str], list[str]]

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
            transport=transport or DeadlineTransport(_ssl_context()),
            trust_env=False,
            follow_redirects=False,
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

    def check_url(self, url: str | httpx.URL, deadline: Deadline | None = None) -> _Target:
        """Validate one hop and pick the address to connect to (raises ``UnsafeURLError``).

        With a ``deadline`` the name lookup is abandoned when it runs out.
        """
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
        literal = literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                ascii_host = parsed.raw_host.decode("ascii").lower().rstrip(".")
                found = (
                    resolve_within(self.resolver, ascii_host, deadline)
                    if deadline is not None
                    else self.resolver(ascii_host)
                )
                addresses = [ipaddress.ip_address(a.split("%")[0]) for a in found]
            except (OSError, UnicodeError, ValueError) as exc:
                raise FetchNetworkError(f"could not resolve {host}: {exc}") from None
        if not addresses:
            raise FetchNetworkError(f"could not resolve {host}")
        if not self._allowed(host, parsed.port):
            for addr in addresses:
                if not is_public_address(addr):
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
        started = time.monotonic()
        deadline = Deadline(self.settings.fetch_total_timeout)  # one for every hop
        with deadline_scope(deadline):
            return self._get(url, accept, headers, check_status, deadline, started)

    def _get(
        self,
        url: str,
        accept: str | None,
        headers: dict[str, str] | None,
        check_status: bool,
        deadline: Deadline,
        started: float,
    ) -> FetchResponse:
        s = self.settings
        extra = dict(headers or {})
        current = _parse_url(url)
        redirects: list[str] = []
        for _hop in range(s.fetch_max_redirects + 1):
            target = self.check_url(current, deadline)
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
        self, target: _Target, accept: str | None, extra: dict[str, str], deadline: Deadline
    ) -> httpx.Response:
        """Send the request; returns once the headers are in (the body is left streaming)."""
        s = self.settings
        if deadline.expired():
            raise FetchNetworkError(f"total fetch timeout ({s.fetch_total_timeout} s) exceeded")
        # Per operation, and never past the deadline (this also bounds the wait for a pooled
        # connection); DeadlineTransport then cuts every socket operation at the deadline too.
        left = deadline.remaining()
        timeout = httpx.Timeout(
            connect=min(s.fetch_connect_timeout, left),
            read=min(s.fetch_read_timeout, left),
            write=min(s.fetch_read_timeout, left),
            pool=min(s.fetch_connect_timeout, left),
        )
        hdrs = {
            "User-Agent": s.fetch_user_agent,
            "Accept": accept or "*/*",
            "Accept-Encoding": ACCEPT_ENCODING,  # exactly what fetch_decode can undo
            **extra,
        }
        hdrs.update(target.headers)
        request = self._client.build_request(
            "GET", target.url, headers=hdrs, timeout=timeout, extensions=target.extensions
        )
        try:
            return self._client.send(request, stream=True)
        except httpx.TimeoutException:
            if deadline.fired or deadline.expired():
                raise FetchNetworkError(
                    f"total fetch timeout ({s.fetch_total_timeout} s) exceeded before "
                    f"{target.host} finished sending its response headers"
                ) from None
            raise FetchNetworkError(f"timed out connecting to {target.host}") from None
        except httpx.HTTPError as exc:
            raise FetchNetworkError(f"{type(exc).__name__} fetching {target.host}") from None

    def _read(
        self, response: httpx.Response, url: str, deadline: Deadline
    ) -> tuple[str, str | None, bytes, str | None]:
        """(media type, charset, body, why the body was cut or None), enforcing the policy.

        The cap applies to the decoded body; decoded pieces are at most ``DECODE_STEP`` bytes,
        so no more than the cap plus one piece is ever held.
        """
        cap = self.settings.fetch_max_bytes
        media, charset = parse_media_type(response.headers.get("content-type"))
        declared = response.headers.get("content-length", "")
        codings = content_codings(response.headers.get("content-encoding"))
        chunks = _body_chunks(response, codings, deadline)
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


def _body_chunks(
    response: httpx.Response, codings: list[str], deadline: Deadline
) -> Generator[bytes, None, None]:
    """The decoded body in bounded pieces, until its end or the deadline."""
    if response.is_stream_consumed:  # an in-process transport read (and decoded) it already
        yield response.content
        return
    yield from decoded_chunks(_raw_chunks(response, deadline), codings)


def _raw_chunks(response: httpx.Response, deadline: Deadline) -> Iterator[bytes]:
    """Body bytes as received (still encoded), until the end or the deadline.

    Each read is cut at the deadline by the transport; a body that keeps dripping is stopped by
    the check after every chunk.
    """
    try:
        for chunk in response.iter_raw():  # as received: a chunk size would hold data back
            if deadline.expired():
                raise _Deadline
            yield chunk
    except httpx.HTTPError as exc:
        if deadline.fired or deadline.expired():
            raise _Deadline from None
        if isinstance(exc, httpx.TimeoutException):
            raise FetchNetworkError("read timed out") from None
        raise FetchNetworkError(f"{type(exc).__name__} while reading the body") from None
