"""Who is on the other end: the client's IP address. Pure.

Behind a trusted proxy (`GIFTWIRE_TRUSTED_PROXIES`: addresses or networks) the address is
the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (all of the
header's lines joined in order: a proxy may append a line of its own after the client's);
from any other peer the header is ignored (a client cannot claim an address by sending it).
IPv4-mapped IPv6 addresses count as the IPv4 address."""

from __future__ import annotations

import functools
import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())


def parse_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address, IPv4-mapped IPv6 (`::ffff:1.2.3.4`) unwrapped to IPv4; None if malformed."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    ip = parse_address(address)
    return ip is not None and any(ip in net for net in networks)


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    return in_networks(address, trusted)


def client_address(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if not _trusted(hop, trusted):
            ip = parse_address(hop)
            return str(ip) if ip is not None else peer  # a malformed hop: trust none before it
    return peer


@functools.lru_cache(maxsize=65_536)  # the risk engine asks once per gift signal
def network_of(address: str, v4: int = 24, v6: int = 64) -> str:
    """The address's network, /24 (IPv4) or /64 (IPv6) unless told: one cluster of the risk
    engine (GIFTWIRE_CLUSTER_PREFIX_V4/_V6), one client of the handshake bound (IPv6)."""
    ip = parse_address(address)
    if ip is None:
        return address
    prefix = v4 if ip.version == 4 else v6
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
