"""Community ID v1 flow hashes (corelight/community-id-spec), to join records across tools."""

from __future__ import annotations

import base64
import hashlib
import struct

from dronewatch.core.flow import IP_PROTO_ICMP, IP_PROTO_ICMP6, IP_PROTO_TCP, IP_PROTO_UDP
from dronewatch.fastpath import native

IP_PROTO_SCTP = 132

PORT_PROTOS = frozenset((IP_PROTO_TCP, IP_PROTO_UDP, IP_PROTO_SCTP))
"""Protocols whose ports are hashed; ICMP hashes its type and code in their place, and every
other protocol hashes no port at all."""

# ICMP types that come in request/reply pairs: the pair makes the flow bidirectional (the
# spec's table, which is Zeek's ICMP4_counterpart/ICMP6_counterpart).
ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
"""Echo, timestamp, information, router solicitation/advertisement, address mask."""
ICMP6_PAIRS = {
    128: 129,
    129: 128,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    130: 131,
    131: 130,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}
"""Echo, router and neighbour discovery, multicast listener query/report, node information
query/response (139/140), home agent address discovery request/reply (144/145)."""


def community_id(
    proto: int, saddr: bytes, sport: int, daddr: bytes, dport: int, seed: int = 0
) -> str:
    """The `1:<base64>` Community ID of a flow; for ICMP, ports are the type and code."""
    one_way = False
    if proto in (IP_PROTO_ICMP, IP_PROTO_ICMP6):
        pairs = ICMP4_PAIRS if proto == IP_PROTO_ICMP else ICMP6_PAIRS
        icmp_type, icmp_code = sport, dport
        if icmp_type in pairs:
            sport, dport = icmp_type, pairs[icmp_type]
        else:
            sport, dport = icmp_type, icmp_code
            one_way = True
    elif proto not in PORT_PROTOS:
        sport = dport = 0
    if not one_way and (saddr, sport) > (daddr, dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    ports = proto in PORT_PROTOS or proto == IP_PROTO_ICMP or proto == IP_PROTO_ICMP6
    return _hash(seed, saddr, daddr, proto, sport, dport, ports)


def community_hash_py(
    seed: int, saddr: bytes, daddr: bytes, proto: int, sport: int, dport: int, ports: bool
) -> str:
    """`1:` and the base64 SHA-1 of the spec's input: seed, addresses, protocol, a zero byte and,
    when `ports`, the ports (the C extension's `community_hash` makes the same, faster)."""
    data = struct.pack("!H", seed) + saddr + daddr + struct.pack("!BB", proto, 0)
    if ports:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


_hash = community_hash_py if (_c := native()) is None else _c.community_hash
