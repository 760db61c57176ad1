"""Tests for the DNS name cache: lookups, the LRU bound, and CNAME chains named by the query."""

from __future__ import annotations

import dpkt
import pytest

from dronewatch.analyzers.dns import DnsAnalyzer
from dronewatch.core.dnscache import DNSCACHE_MAX_ENTRIES, DnsNameCache
from dronewatch.core.flow import IP_PROTO_UDP
from dronewatch.core.hooks import Context, DnsCache, Record
from tests.factories import ip, make_flow, make_udp


def test_unknown_address_has_no_name() -> None:
    """An address never answered for has no name."""
    assert DnsNameCache().name_for(ip("198.51.100.1")) is None


def test_remembers_ipv4_and_ipv6() -> None:
    """Both 4- and 16-byte addresses map to the name remembered for them."""
    cache = DnsNameCache()
    cache.remember(ip("198.51.100.1"), "api.example.com", 1.0)
    cache.remember(ip("2001:db8::1"), "v6.example.com", 2.0)
    assert cache.name_for(ip("198.51.100.1")) == "api.example.com"
    assert cache.name_for(ip("2001:db8::1")) == "v6.example.com"
    assert cache.seen_at(ip("2001:db8::1")) == 2.0
    assert len(cache) == 2
    assert ip("198.51.100.1") in cache


def test_latest_answer_wins() -> None:
    """A later answer for the same address replaces the earlier name."""
    cache = DnsNameCache()
    cache.remember(ip("198.51.100.1"), "old.example.com", 1.0)
    cache.remember(ip("198.51.100.1"), "new.example.com", 2.0)
    assert cache.name_for(ip("198.51.100.1")) == "new.example.com"
    assert len(cache) == 1


def test_bounded_lru_evicts_least_recently_used() -> None:
    """Past max_entries the least recently used address goes; a lookup counts as a use."""
    cache = DnsNameCache(max_entries=2)
    a, b, c = ip("198.51.100.1"), ip("198.51.100.2"), ip("198.51.100.3")
    cache.remember(a, "a.example", 1.0)
    cache.remember(b, "b.example", 2.0)
    assert cache.name_for(a) == "a.example"  # a is now the most recently used
    cache.remember(c, "c.example", 3.0)
    assert len(cache) == 2
    assert cache.name_for(b) is None
    assert cache.name_for(a) == "a.example"
    assert cache.name_for(c) == "c.example"


def test_default_bound() -> None:
    """The default bound is 100,000 addresses, and a bound below one is refused."""
    assert DnsNameCache().max_entries == DNSCACHE_MAX_ENTRIES == 100_000
    with pytest.raises(ValueError):
        DnsNameCache(max_entries=0)


def test_ignores_non_addresses_and_blocked_answers() -> None:
    """Bad lengths, empty names and 0.0.0.0 / :: (sinkholed names) are not remembered."""
    cache = DnsNameCache()
    cache.remember(b"\x01\x02\x03", "short.example", 1.0)
    cache.remember(ip("198.51.100.1"), "", 1.0)
    cache.remember(ip("0.0.0.0"), "blocked.example", 1.0)
    cache.remember(ip("::"), "blocked.example", 1.0)
    assert len(cache) == 0


def test_satisfies_the_dns_cache_protocol() -> None:
    """The cache can be handed to a Context as its DnsCache."""
    cache: DnsCache = DnsNameCache()
    ctx = Context(emit=lambda record: None, dns=cache)
    ctx.dns.remember(ip("198.51.100.9"), "x.example", 1.0)
    assert ctx.dns.name_for(ip("198.51.100.9")) == "x.example"


def test_cname_chain_is_remembered_under_the_query_name() -> None:
    """After a CNAME chain resolves, the address is named by what the client asked for."""
    rr = dpkt.dns.DNS.RR
    answer = dpkt.dns.DNS(
        id=7,
        op=dpkt.dns.DNS_QR | dpkt.dns.DNS_RD | dpkt.dns.DNS_RA,
        qd=[dpkt.dns.DNS.Q(name="mydjiflight.dji.com", type=dpkt.dns.DNS_A)],
        an=[
            rr(name="mydjiflight.dji.com", type=dpkt.dns.DNS_CNAME, cname="a.cdn.example"),
            rr(name="a.cdn.example", type=dpkt.dns.DNS_CNAME, cname="edge.cdn.example"),
            rr(name="edge.cdn.example", type=dpkt.dns.DNS_A, ip=ip("198.51.100.13")),
        ],
        ns=[],
        ar=[],
    )
    records: list[Record] = []
    cache = DnsNameCache()
    analyzer = DnsAnalyzer(Context(emit=records.append, dns=cache))
    pkt = make_udp(bytes(answer), src="192.0.2.53", dst="192.168.1.3", sport=53, dport=40000)
    flow = make_flow(pkt)
    assert flow.proto == IP_PROTO_UDP
    analyzer.packet(flow, pkt)
    assert cache.name_for(ip("198.51.100.13")) == "mydjiflight.dji.com"
    assert len(records) == 1
