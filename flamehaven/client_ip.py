"""The client's address: REMOTE_ADDR, unless settings name trusted proxies.

``TRUSTED_PROXIES`` is empty (nobody: ``X-Forwarded-For`` is ignored), a count
(that many proxies always stand in front of the service, the nearest being
REMOTE_ADDR), or a comma-separated list of CIDRs (the proxies' own addresses).
With a list, ``X-Forwarded-For`` is read right to left and believed only while
the hop that wrote it is a trusted proxy, so a client cannot choose its own
address by sending the header itself. A count cannot tell a proxy from a
client that bypasses it; use it only where clients cannot reach the service
directly.
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
        if not _within(address, trusted):
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
    return tuple(
        ipaddress.ip_network(cidr.strip(), strict=False)
        for cidr in value.split(",")
        if cidr.strip()
    )


def _valid(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
