"""The address rule of the SSRF guard: which IP addresses the fetcher may connect to.

``is_public_address`` is the one place that decides; ``literal_address`` turns a URL host
written as a number (``2130706433``, ``0x7f.1``, ``[::1]``) into the address it stands for.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes whose low 32 bits are an IPv4 address the packet ends up at.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 ::ffff:0:a.b.c.d
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 (deprecated) ::a.b.c.d
# Refused whole: where the IPv4 sits depends on a local choice of prefix length (RFC 8215),
# and by definition it only leads into the operator's own network.
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
# Deprecated site-local (RFC 3879); Python does not count it as private, routers may still.
_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")


def _low_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 transition form leads to (None: no embedded IPv4)."""
    if addr.teredo is not None:
        server, client = addr.teredo
        return [server, client]
    if addr.sixtofour is not None:
        return [addr.sixtofour]
    if addr in _NAT64 or addr in _IPV4_TRANSLATED or addr in _IPV4_COMPATIBLE:
        return [_low_ipv4(addr)]
    return None


def _is_public_ipv4(addr: ipaddress.IPv4Address) -> bool:
    return addr.is_global and not addr.is_multicast


def is_public_address(addr: IPAddress) -> bool:
    """True only for a globally routable unicast address, judged where it really leads.

    IPv4: ``is_global`` and not multicast, which refuses loopback 127/8, private 10/8,
    172.16/12 and 192.168/16, link-local 169.254/16 (cloud metadata), CGNAT 100.64/10,
    "this network" 0/8, reserved 240/4, documentation and benchmarking ranges, multicast.

    IPv6: ``is_global`` and not multicast, which refuses loopback ``::1``, unspecified ``::``,
    unique-local fc00::/7, link-local fe80::/10, documentation ranges, multicast ff00::/8 and
    (on Python 3.11) the IETF protocol block 2001::/23 that holds Teredo. Also refused outright,
    though Python 3.11 calls them global: site-local fec0::/10 (deprecated, RFC 3879, still
    routed inside some networks) and local-use NAT64 64:ff9b:1::/48 (RFC 8215: where the IPv4
    sits depends on a local prefix length, and it only leads into the operator's network).

    IPv6 forms that embed an IPv4 address must ALSO pass on that IPv4 address, with the IPv4
    rule (Python 3.11 calls ``64:ff9b::127.0.0.1`` global, though it reaches 127.0.0.1):

    - IPv4-mapped ``::ffff:a.b.c.d`` (judged by the IPv4 address alone, as the kernel does);
    - IPv4-translated ``::ffff:0:a.b.c.d`` (RFC 2765);
    - IPv4-compatible ``::a.b.c.d`` (deprecated, RFC 4291);
    - NAT64 ``64:ff9b::a.b.c.d`` (64:ff9b::/96, RFC 6052);
    - 6to4 ``2002:AABB:CCDD::/48`` (``.sixtofour``, RFC 3056);
    - Teredo 2001:0::/32 (``.teredo``): both the server and the client address.
    """
    if isinstance(addr, ipaddress.IPv4Address):
        return _is_public_ipv4(addr)
    if addr.ipv4_mapped is not None:
        return _is_public_ipv4(addr.ipv4_mapped)
    if addr in _NAT64_LOCAL_USE or addr in _SITE_LOCAL:
        return False
    embedded = _embedded_ipv4(addr)
    if embedded is not None and not all(_is_public_ipv4(v4) for v4 in embedded):
        return False
    return addr.is_global and not addr.is_multicast


def literal_address(host: str) -> IPAddress | None:
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
