"""SSRF guard of SafeFetcher: refused forms, directly and through redirects; pinning; allowlist.

The loopback test server is allowed only as ``127.0.0.1:<port>`` (FETCH_ALLOW_HOSTS); every
redirect hop is checked again, so a redirect from it to any other loopback spelling, to the
metadata address or to a private range is refused.
"""

from __future__ import annotations

import ipaddress
import json

import httpx
import pytest

from pipeline.errors import FetchNetworkError, UnsafeURLError
from pipeline.fetch import SafeFetcher
from pipeline.settings import Settings

FORBIDDEN = [
    "http://localhost/",
    "http://LOCALHOST./",
    "http://127.0.0.1/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://10.0.0.1/",
    "http://10.255.1.2:8080/admin",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://0.0.0.0/",
    "http://[fd00::1]/",
    "http://224.0.0.1/",
]


@pytest.fixture
def fetcher():
    with SafeFetcher(Settings()) as f:
        yield f


@pytest.mark.parametrize("url", FORBIDDEN)
def test_private_and_special_addresses_refused(fetcher, url):
    # refused before any connection: as a non-public address, a loopback name, or (0177...)
    # a host httpx will not even parse
    with pytest.raises(UnsafeURLError):
        fetcher.get(url)


# IPv6 forms that embed a private IPv4 address (here mostly 127.0.0.1), which Python 3.11's
# ``is_global`` calls global, plus site-local; each is refused as written in a URL and when a
# name resolves to it.
TRANSITION_FORMS = [
    "64:ff9b::7f00:1",  # NAT64 well-known prefix -> 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 -> 10.0.0.1
    "64:ff9b:1::808:808",  # local-use NAT64 /48: refused whatever it embeds
    "2002:7f00:1::1",  # 6to4 -> 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 -> 169.254.169.254 (metadata)
    "::7f00:1",  # IPv4-compatible ::127.0.0.1
    "::a9fe:a9fe",  # IPv4-compatible ::169.254.169.254
    "::ffff:0:7f00:1",  # IPv4-translated ::ffff:0:127.0.0.1
    "fec0::1",  # site-local
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:a00:1::ffff:ffff",  # Teredo, server 10.0.0.1
]


@pytest.mark.parametrize("address", TRANSITION_FORMS)
def test_ipv6_transition_forms_of_private_addresses_refused_as_literals(fetcher, address):
    with pytest.raises(UnsafeURLError, match="non-public"):
        fetcher.get(f"http://[{address}]/")


@pytest.mark.parametrize("address", TRANSITION_FORMS)
def test_ipv6_transition_forms_of_private_addresses_refused_from_the_resolver(address):
    resolver = {"transition.example": [address]}.__getitem__
    with SafeFetcher(Settings(), resolver=resolver) as f, pytest.raises(UnsafeURLError):
        f.get("http://transition.example/")


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8", "2606:4700::1111", "8.8.8.8"],
)
def test_transition_forms_of_public_addresses_pass_the_check(address):
    """The embedded IPv4 decides: the same forms around a public address are not refused."""
    resolver = {"public.example": [address]}.__getitem__
    with SafeFetcher(Settings(), resolver=resolver) as f:
        target = f.check_url("http://public.example/")  # the check only: nothing is sent
    assert ipaddress.ip_address(target.address) == ipaddress.ip_address(address)
    assert target.headers["Host"] == "public.example"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "scheme 'file'"),
        ("ftp://example.com/x", "scheme 'ftp'"),
        ("gopher://example.com/", "scheme 'gopher'"),
        ("http://user:secret@example.com/", "user name or password"),
        ("http://user@example.com/", "user name or password"),
    ],
)
def test_bad_schemes_and_userinfo_refused(fetcher, url, reason):
    with pytest.raises(UnsafeURLError, match=reason):
        fetcher.get(url)


def test_any_private_address_among_several_is_refused():
    """A name resolving to a public AND a private address is refused (DNS rebinding)."""
    resolver = {"mixed.example": ["93.184.215.14", "10.1.2.3"]}.__getitem__
    with SafeFetcher(Settings(), resolver=resolver) as f, pytest.raises(UnsafeURLError):
        f.get("http://mixed.example/")


def test_ipv4_mapped_ipv6_from_resolver_is_unwrapped():
    resolver = {"mapped.example": ["::ffff:169.254.169.254"]}.__getitem__
    with SafeFetcher(Settings(), resolver=resolver) as f, pytest.raises(UnsafeURLError):
        f.get("http://mapped.example/")


def test_unresolvable_host_is_a_network_error():
    def resolver(host):
        raise OSError("no such host")

    with SafeFetcher(Settings(), resolver=resolver) as f, pytest.raises(FetchNetworkError):
        f.get("http://nowhere.example/")


def test_allowlisted_loopback_server_is_reachable(local_web):
    with SafeFetcher(local_web.settings()) as f:
        response = f.get(local_web.page_url("001"))
    assert response.status_code == 200
    assert b"JavaScript" in response.content


def test_allowlist_is_per_port(local_web):
    settings = local_web.settings()
    other_port = local_web.port + 1 if local_web.port < 65535 else local_web.port - 1
    with SafeFetcher(settings) as f, pytest.raises(UnsafeURLError):
        f.get(f"http://127.0.0.1:{other_port}/")


@pytest.mark.parametrize(
    "target",
    [
        "http://localhost:{port}/pages/001",
        "http://[::1]:{port}/pages/001",
        "http://2130706433:{port}/pages/001",
        "http://0x7f.1:{port}/pages/001",
        "http://169.254.169.254/latest/meta-data/iam",
        "http://10.0.0.7/",
        "http://100.64.0.1/",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1:{port}/pages/001",
    ],
)
def test_redirect_from_allowed_server_to_forbidden_target_is_refused(local_web, target):
    target = target.format(port=local_web.port)
    with SafeFetcher(local_web.settings()) as f, pytest.raises(UnsafeURLError):
        f.get(local_web.url(f"/test/redirect?to={target}"))


def test_redirect_within_the_allowed_server_is_followed(local_web):
    with SafeFetcher(local_web.settings()) as f:
        response = f.get(local_web.url("/test/redirect?to=/pages/002"))
    assert response.url == local_web.page_url("002")
    assert response.redirects == (local_web.page_url("002"),)


def test_redirect_loop_stops_at_the_limit(local_web):
    with SafeFetcher(local_web.settings()) as f, pytest.raises(UnsafeURLError, match="redirects"):
        f.get(local_web.url("/test/loop"))


def test_connection_is_pinned_and_host_header_kept(local_web):
    """A name allowed by the allowlist is connected to at the checked address, Host intact."""
    port = local_web.port
    settings = Settings(fetch_allow_hosts=[f"allowed.test:{port}"])
    resolver = {"allowed.test": ["127.0.0.1"]}.__getitem__
    with SafeFetcher(settings, resolver=resolver) as f:
        response = f.get(f"http://allowed.test:{port}/test/echo")
    headers = json.loads(response.content)
    assert headers["host"] == f"allowed.test:{port}"
    assert headers["user-agent"] == settings.fetch_user_agent


def test_allowlisted_name_does_not_allow_other_names_for_the_same_address(local_web):
    port = local_web.port
    settings = Settings(fetch_allow_hosts=[f"allowed.test:{port}"])
    resolver = {"allowed.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}.__getitem__
    with SafeFetcher(settings, resolver=resolver) as f, pytest.raises(UnsafeURLError):
        f.get(f"http://allowed.test:{port}/test/redirect?to=http://other.test:{port}/test/echo")


def test_authorization_dropped_when_a_redirect_leaves_the_origin(local_web):
    port = local_web.port
    settings = Settings(fetch_allow_hosts=[f"a.test:{port}", f"b.test:{port}"])
    resolver = {"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]}.__getitem__
    with SafeFetcher(settings, resolver=resolver) as f:
        same = f.get(f"http://a.test:{port}/test/echo", headers={"Authorization": "Bearer t0k"})
        moved = f.get(
            f"http://a.test:{port}/test/redirect?to=http://b.test:{port}/test/echo",
            headers={"Authorization": "Bearer t0k"},
        )
    assert json.loads(same.content)["authorization"] == "Bearer t0k"
    assert "authorization" not in json.loads(moved.content)


def test_https_request_is_pinned_with_sni_and_host_of_the_name():
    """Through the transport seam: what would go on the wire for an https URL."""
    seen: list[httpx.Request] = []

    class Capture(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, headers={"content-type": "text/html"}, content=b"<p>x</p>")

    resolver = {"secure.example": ["93.184.215.14"]}.__getitem__
    with SafeFetcher(Settings(), transport=Capture(), resolver=resolver) as f:
        f.get("https://secure.example/path?q=1")
    (request,) = seen
    assert str(request.url) == "https://93.184.215.14/path?q=1"
    assert request.headers["host"] == "secure.example"
    assert request.extensions["sni_hostname"] == "secure.example"
