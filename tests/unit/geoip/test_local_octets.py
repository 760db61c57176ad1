"""The local ranges' answer by first octet gives what looking at every range gives."""

from __future__ import annotations

import ipaddress
import random

from dronewatch.geoip.local import GEOIP_LOCAL_V4, LocalNets


def first_reason(ranges: list[tuple[str, str]], packed: bytes) -> str | None:
    """The reason of the first range, in checking order, that holds the address."""
    addr = ipaddress.IPv4Address(packed)
    for net, reason in ranges:
        if addr in ipaddress.ip_network(net, strict=False):
            return reason
    return None


def test_reason_by_octet_matches_every_range() -> None:
    """Random IPv4 addresses (many in the first octets of the built-in and configured ranges,
    some of those spanning a whole octet or more) get the reason of the first range holding
    them, configured ranges first."""
    rng = random.Random(18)
    extra, link = ["10.1.0.0/16", "8.0.0.0/7", "11.0.0.0/8"], ["192.168.2.0/24"]
    nets = LocalNets(extra, drone_link=link)
    ranges = [(n, "drone-link") for n in link] + [(n, "configured") for n in extra]
    ranges += list(GEOIP_LOCAL_V4)
    firsts = [int(ipaddress.ip_network(n).network_address) >> 24 for n, _ in ranges]
    for _ in range(20_000):
        first = rng.choice(firsts) if rng.random() < 0.7 else rng.randrange(256)
        packed = bytes([first, rng.choice((0, 1, 2, 168, rng.randrange(256)))]) + rng.randbytes(2)
        assert nets.reason(packed) == first_reason(ranges, packed), packed
