"""Encapsulation headers: what carries a packet from a remote mirror, an overlay or an access link.

GRE (RFC 2784, keys and sequence numbers RFC 2890), ERSPAN types I, II and III over GRE
(draft-foschiano-erspan-03), 802.11 frames over GRE (Aruba access points' tunnels to their
controller, which a controller's mirror carries), VXLAN (RFC 7348) and Geneve (RFC 8926) over
UDP, MPLS label stacks (RFC 3032) and PPPoE sessions (RFC 2516). Each function reads one header
and says where the inner packet starts and what it is (`Inner`), or None when the header is not
one it reads: the decoder then judges the outer packet as it is (a GRE packet of a protocol not
listed here stays a GRE packet, a datagram to UDP 4789 without the VXLAN "valid VNI" flag stays a
datagram). VXLAN and Geneve are recognised on their well-known destination ports only. The C
walk (`fastpath/_fastpath.c`) reads the same headers by the same rules.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

GRE_CHECKSUM = 0x8000
GRE_ROUTING = 0x4000
GRE_KEY = 0x2000
GRE_SEQUENCE = 0x1000
GRE_VERSION = 0x0007

ETH_TYPE_IP = 0x0800
ETH_TYPE_IP6 = 0x86DD
ETH_TYPE_TEB = 0x6558
"""Transparent Ethernet bridging: an Ethernet frame follows (gretap, VXLAN-like GRE, Geneve)."""
ETH_TYPE_ERSPAN = 0x88BE
"""ERSPAN type II, or type I when the GRE header has no sequence number."""
ETH_TYPE_ERSPAN_III = 0x22EB
ETH_TYPE_MPLS = 0x8847
ETH_TYPE_MPLS_MULTICAST = 0x8848
ETH_TYPE_PPPOE_SESSION = 0x8864

INNER_IP = 0
"""`Inner.inner` for an IP packet whose version is its first nibble (ERSPAN III frame type 2)."""
INNER_DOT11 = 1
"""`Inner.inner` for an 802.11 frame without radiotap or FCS (GRE from an Aruba access point)."""

GRE_INNER = frozenset(
    (ETH_TYPE_IP, ETH_TYPE_IP6, ETH_TYPE_TEB, ETH_TYPE_MPLS, ETH_TYPE_MPLS_MULTICAST)
)
"""GRE protocol types taken out as plain GRE."""
GENEVE_INNER = frozenset((ETH_TYPE_IP, ETH_TYPE_IP6, ETH_TYPE_TEB))

ERSPAN_II_VERSION = 1
ERSPAN_III_VERSION = 2
ERSPAN_III_FRAME_ETHERNET = 0
ERSPAN_III_FRAME_IP = 2
ERSPAN_III_PLATFORM = 0x01
"""The O bit: an 8-byte platform-specific subheader follows the ERSPAN III header."""

UDP_PORT_VXLAN = 4789
UDP_PORT_GENEVE = 6081
UDP_TUNNEL_PORTS = frozenset((UDP_PORT_VXLAN, UDP_PORT_GENEVE))
VXLAN_VALID_VNI = 0x08

MPLS_BOTTOM = 0x100

PPPOE_VERSION_TYPE = 0x11
PPP_IP = 0x21
PPP_IP6 = 0x57

MAX_ENCAPSULATIONS = 3
"""Nested encapsulations taken out of one packet; a deeper one is judged as the packet it is."""

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_GRE = struct.Struct("!HH")


class Inner(NamedTuple):
    """Where an encapsulated packet starts, and what carried it."""

    kind: str
    """`core.flow.TUNNEL_KINDS`."""
    ident: int | None
    """VNI, session id, GRE key or MPLS label (`core.flow.Tunnel.ident`)."""
    at: int
    """Offset of the inner packet in the frame."""
    inner: int
    """What starts there: an EtherType (`ETH_TYPE_TEB` for an Ethernet frame) or `INNER_IP`."""
    vlan: int | None = None
    """The original VLAN an ERSPAN header names (0: none)."""


def is_aruba_wlan(ptype: int) -> bool:
    """Whether a GRE protocol type is one an Aruba access point gives the 802.11 frames it
    tunnels to its controller: 0x8200 to 0x8370 by steps of 0x10, and 0x9000 (the types
    Wireshark's GRE dissector names Aruba WLAN; Zeek's reads them as 802.11 too)."""
    return ptype == 0x9000 or (0x8200 <= ptype <= 0x8370 and not ptype & 0xF)


def gre(data: bytes, at: int, stop: int) -> Inner | None:
    """The packet inside the GRE header at `at` (the header and any ERSPAN header lying before
    `stop`): plain GRE of IP, MPLS, Ethernet or 802.11 (`is_aruba_wlan`), or ERSPAN; None for
    anything else."""
    if at + 4 > stop:
        return None
    flags, ptype = _GRE.unpack_from(data, at)
    if flags & (GRE_VERSION | GRE_ROUTING):
        return None  # version 1 is PPTP's enhanced GRE; routing (RFC 1701) is deprecated
    key_at = at + (8 if flags & GRE_CHECKSUM else 4)
    end = key_at + (4 if flags & GRE_KEY else 0) + (4 if flags & GRE_SEQUENCE else 0)
    if end > stop:
        return None
    key = _U32.unpack_from(data, key_at)[0] if flags & GRE_KEY else None
    if ptype in GRE_INNER:
        return Inner("gre", key, end, ptype)
    if is_aruba_wlan(ptype):
        return Inner("gre", key, end, INNER_DOT11)
    if ptype == ETH_TYPE_ERSPAN:
        if not flags & GRE_SEQUENCE:
            return Inner("erspan_i", key, end, ETH_TYPE_TEB)
        if end + 8 > stop:
            return None
        # Ver(4) VLAN(12) | COS(3) En(2) T(1) Session ID(10) | Reserved(12) Index(20)
        word, session = _U16.unpack_from(data, end)[0], _U16.unpack_from(data, end + 2)[0]
        if word >> 12 != ERSPAN_II_VERSION:
            return None
        return Inner("erspan_ii", session & 0x3FF, end + 8, ETH_TYPE_TEB, word & 0xFFF)
    if ptype == ETH_TYPE_ERSPAN_III:
        if end + 12 > stop:
            return None
        # Ver(4) VLAN(12) | COS(3) BSO(2) T(1) Session ID(10) | Timestamp(32) |
        # SGT(16) | P(1) FT(5) HW ID(6) D(1) Gra(2) O(1)
        word, session = _U16.unpack_from(data, end)[0], _U16.unpack_from(data, end + 2)[0]
        last = _U16.unpack_from(data, end + 10)[0]
        frame_type = (last >> 10) & 0x1F
        length = 20 if last & ERSPAN_III_PLATFORM else 12
        if word >> 12 != ERSPAN_III_VERSION or end + length > stop:
            return None
        if frame_type == ERSPAN_III_FRAME_ETHERNET:
            inner = ETH_TYPE_TEB
        elif frame_type == ERSPAN_III_FRAME_IP:
            inner = INNER_IP
        else:
            return None
        return Inner("erspan_iii", session & 0x3FF, end + length, inner, word & 0xFFF)
    return None


def udp_tunnel(data: bytes, at: int, stop: int, dport: int) -> Inner | None:
    """The packet inside a VXLAN or Geneve header at `at` (a UDP payload to `dport`), or None."""
    if at + 8 > stop:
        return None
    if dport == UDP_PORT_VXLAN:
        # Flags(8: I = valid VNI) | Reserved(24) | VNI(24) | Reserved(8)
        if not data[at] & VXLAN_VALID_VNI:
            return None
        return Inner("vxlan", _U32.unpack_from(data, at + 4)[0] >> 8, at + 8, ETH_TYPE_TEB)
    if dport == UDP_PORT_GENEVE:
        # Ver(2) Opt Len(6) | O C Rsvd(6) | Protocol Type(16) | VNI(24) | Reserved(8) | options
        first = data[at]
        end = at + 8 + (first & 0x3F) * 4
        ptype = _U16.unpack_from(data, at + 2)[0]
        if first >> 6 or end > stop or ptype not in GENEVE_INNER:
            return None
        return Inner("geneve", _U32.unpack_from(data, at + 4)[0] >> 8, end, ptype)
    return None


def mpls(data: bytes, at: int) -> tuple[int, int]:
    """The bottom label of the MPLS label stack at `at` and where the packet under it starts.
    Raises struct.error when the frame ends inside the stack."""
    while True:
        entry = _U32.unpack_from(data, at)[0]
        at += 4
        if entry & MPLS_BOTTOM:
            return entry >> 12, at


def pppoe(data: bytes, at: int) -> tuple[int, int, int] | None:
    """(session id, PPP protocol, where the PPP payload starts) of the PPPoE session header at
    `at`, or None when it is not a session's data (version/type, code). The PPP protocol field
    may be compressed to one byte (RFC 1661 6.5). Raises struct.error or IndexError when the
    frame ends inside the headers."""
    version_type, code, session = data[at], data[at + 1], _U16.unpack_from(data, at + 2)[0]
    if version_type != PPPOE_VERSION_TYPE or code != 0:
        return None
    if data[at + 6] & 1:
        return session, data[at + 6], at + 7
    return session, _U16.unpack_from(data, at + 6)[0], at + 8
