"""Community ID v1 flow hashes (corelight/community-id-spec), to join records across tools."""

from __future__ import annotations

import base64
import hashlib
import struct

from dronewatch.core.flow import IP_PROTO_ICMP, IP_PROTO_ICMP6

# ICMP types that come in request/reply pairs: the pair makes the flow bidirectional.
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17, 10: 9, 9: 10}
_ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130}


def community_id(
    proto: int, saddr: bytes, sport: int, daddr: bytes, dport: int, seed: int = 0
) -> str:
    """The `1:<base64>` Community ID of a flow; for ICMP, ports are the type and code."""
    one_way = False
    if proto in (IP_PROTO_ICMP, IP_PROTO_ICMP6):
        pairs = _ICMP4_PAIRS if proto == IP_PROTO_ICMP else _ICMP6_PAIRS
        icmp_type, icmp_code = sport, dport
        if icmp_type in pairs:
            sport, dport = icmp_type, pairs[icmp_type]
        else:
            sport, dport = icmp_type, icmp_code
            one_way = True
    if not one_way and (saddr, sport) > (daddr, dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    data = struct.pack("!H", seed) + saddr + daddr + struct.pack("!BBHH", proto, 0, sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
