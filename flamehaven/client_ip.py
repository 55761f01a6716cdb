"""The client's address: REMOTE_ADDR, unless settings name trusted proxies.

``TRUSTED_PROXIES`` is empty (nobody: ``X-Forwarded-For`` is ignored), a count
(that many proxies always stand in front of the service, the nearest being
REMOTE_ADDR), or a comma-separated list of CIDRs (the proxies' own addresses).
With a list, ``X-Forwarded-For`` is read right to left and believed only while
the hop that wrote it is a trusted proxy, so a client cannot choose its own
address by sending the header itself. A count cannot tell a proxy from a
client that bypasses it; use it only where clients cannot reach the service
directly.

django-ipware 8.0.0 (python-ipware 4.1.1) was measured against these promises
and does not keep them: its trusted-proxy list means one proxy per entry,
matched in order against the last hops of ``X-Forwarded-For`` (REMOTE_ADDR not
among them), not a set of networks walked while the hop is inside one. So
``get_client_ip(request, proxy_trusted_ips=["10.0.0.0/8", "::1/128"])``, with
REMOTE_ADDR ``::1`` and ``X-Forwarded-For: 2001:db8::7``, returns ``None``
instead of ``2001:db8::7``.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = parse_trusted_proxies(settings.TRUSTED_PROXIES)
    if not trusted:
        return remote
    forwarded = [
        hop.strip()
        for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if hop.strip()
    ]
    if isinstance(trusted, int):
        chain = [*forwarded, remote]
        return _valid(chain[max(0, len(chain) - 1 - trusted)]) or remote
    address = remote
    for hop in reversed(forwarded):
        if not in_networks(address, trusted):
            break
        hop = _valid(hop)
        if hop is None:  # garbage written by whoever was before the proxy
            break
        address = hop
    return address


@lru_cache(maxsize=8)
def parse_trusted_proxies(value: str) -> int | tuple[Network, ...]:
    value = value.strip()
    if not value:
        return 0
    if value.isdigit():
        return int(value)
    return parse_networks(tuple(value.split(",")))


@lru_cache(maxsize=8)
def parse_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """The networks of some CIDRs, blank entries skipped (a trailing comma).

    Shared by TRUSTED_PROXIES and METRICS_ALLOWED_CIDRS; a malformed entry
    raises ValueError. A tuple, so the parse is cached across requests.
    """
    return tuple(
        ipaddress.ip_network(cidr.strip(), strict=False)
        for cidr in cidrs
        if cidr.strip()
    )


def in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    """Whether an address is inside one of the networks; not an address: no."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _valid(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None
