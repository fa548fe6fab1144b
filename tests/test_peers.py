"""The client's address behind trusted proxies and its risk-engine network (pure, no server):
the rightmost untrusted X-Forwarded-For hop, a malformed hop, IPv4-mapped IPv6, and /24 and
/64 grouping."""

from __future__ import annotations

from server.gateway.peers import client_address, in_networks, network_of, parse_trusted

PROXIES = parse_trusted(("10.0.0.1", "192.168.0.0/16", "fd00::/8"))


def test_the_rightmost_hop_that_is_not_a_trusted_proxy_is_the_client() -> None:
    """Through two trusted proxies the client is the hop before them, not the leftmost one."""
    # A client can write anything there.
    assert client_address("10.0.0.1", "6.6.6.6, 203.0.113.5, 192.168.3.4", PROXIES) == "203.0.113.5"
    assert client_address("10.0.0.1", "203.0.113.5", PROXIES) == "203.0.113.5"


def test_the_header_counts_only_from_a_trusted_peer() -> None:
    """From an untrusted peer, or with no proxies set, the header is ignored: the peer is the client."""
    assert client_address("198.51.100.9", "203.0.113.5", PROXIES) == "198.51.100.9"
    assert client_address("10.0.0.1", "203.0.113.5", ()) == "10.0.0.1"
    assert client_address("10.0.0.1", None, PROXIES) == "10.0.0.1"
    assert client_address("10.0.0.1", "", PROXIES) == "10.0.0.1"


def test_a_malformed_hop_trusts_nothing_before_it() -> None:
    """A hop that is not an address stops the walk: the trusted peer is the client."""
    # The address written before the garbage is not believed.
    assert client_address("10.0.0.1", "203.0.113.5, not-an-ip", PROXIES) == "10.0.0.1"
    assert client_address("10.0.0.1", "203.0.113.5, 1.2.3.4:80, 192.168.1.1", PROXIES) == "10.0.0.1"


def test_only_trusted_hops_leave_the_peer_as_the_client() -> None:
    """A header of nothing but trusted proxies names no client: the peer stands."""
    assert client_address("10.0.0.1", "192.168.1.1, 10.0.0.1", PROXIES) == "10.0.0.1"


def test_ipv4_mapped_ipv6_counts_as_ipv4() -> None:
    """`::ffff:a.b.c.d` is the IPv4 address, as a hop, as a trusted peer and for its /24."""
    assert client_address("10.0.0.1", "::ffff:203.0.113.5", PROXIES) == "203.0.113.5"
    assert client_address("::ffff:10.0.0.1", "203.0.113.5", PROXIES) == "203.0.113.5"
    assert in_networks("::ffff:192.168.9.9", PROXIES)
    assert network_of("::ffff:203.0.113.77") == "203.0.113.0/24"


def test_ipv6_clients_group_by_64_and_ipv4_by_24() -> None:
    """Two addresses of one /64 are one cluster, the next /64 another; IPv4 groups by /24."""
    assert network_of("2001:db8:1:2::1") == network_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert network_of("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert network_of("203.0.113.1") == network_of("203.0.113.254") == "203.0.113.0/24"
    assert network_of("203.0.114.1") != network_of("203.0.113.1")
    assert client_address("fd00::1", "2001:db8::5, fd12::7", PROXIES) == "2001:db8::5"


def test_a_malformed_address_is_its_own_network() -> None:
    """An unparseable address is kept as it is (its own cluster of one), never a crash."""
    assert network_of("garbage") == "garbage"
    assert not in_networks("garbage", PROXIES)


def test_cluster_networks_follow_the_configured_prefixes() -> None:
    """GIFTWIRE_CLUSTER_PREFIX_V4/_V6 set how wide one IP cluster is; out-of-range values are refused."""
    from server.config import Settings, problems

    assert network_of("203.0.113.77", 16, 48) == "203.0.0.0/16"
    assert network_of("2001:db8:1:2::1", 16, 48) == "2001:db8:1::/48"
    for bad in ({"cluster_prefix_v4": 33}, {"cluster_prefix_v4": 7}, {"cluster_prefix_v6": 129}):
        assert any(p.startswith("GIFTWIRE_CLUSTER_PREFIX") for p in problems(Settings(**bad))), bad
