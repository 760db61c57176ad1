"""Decode link, network and transport headers into `Packet`s.

Link types: Ethernet (Ethernet II, or IEEE 802.3 with LLC/SNAP) with 802.1Q/QinQ (1), BSD NULL
and LOOP (0, 108), raw IP (12, 14, 101, 228, 229), Linux SLL (113) and SLL2 (276), PPP (9, 50:
a modem's or a cellular link's capture), 802.11 (105) and 802.11 with radiotap (127). IP
fragments are reassembled (`capture.fragments`) and the whole datagram decoded once it is
complete.
A frame too short for its headers is counted as malformed, never raised.

Encapsulations (`capture.encap`) are taken off and the inner packet is decoded as if seen
directly, with `Packet.tunnel` saying what carried it: ERSPAN types I, II and III and plain GRE in
an IP packet, VXLAN and Geneve in a UDP datagram to their well-known ports, MPLS label stacks and
PPPoE sessions in an Ethernet frame. An outer IP packet that is a fragment, or a first fragment,
is taken apart once reassembled. VLAN tags are read wherever an EtherType is.
The C walk (`fastpath/_fastpath.c`) makes the same decisions; `tests/unit/fastpath/test_bulk.py`
compares the two.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from dronewatch.capture import checksum, encap
from dronewatch.capture.base import RawPacket
from dronewatch.capture.encap import (
    ETH_TYPE_MPLS,
    ETH_TYPE_MPLS_MULTICAST,
    ETH_TYPE_PPPOE_SESSION,
    ETH_TYPE_TEB,
    INNER_DOT11,
    INNER_IP,
    MAX_ENCAPSULATIONS,
    PPP_IP,
    PPP_IP6,
    UDP_TUNNEL_PORTS,
    Inner,
)
from dronewatch.capture.fragments import FragmentReassembler
from dronewatch.core.flow import IP_PROTO_TCP, IP_PROTO_UDP, Dot11Frame, Packet, Tunnel

IP_PROTO_SCTP = 132

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW_OPENBSD = 12
LINKTYPE_RAW_14 = 14
LINKTYPE_PPP_HDLC = 50
LINKTYPE_RAW = 101
LINKTYPE_IEEE802_11 = 105
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

LINKTYPE_NAMES = {
    LINKTYPE_NULL: "null",
    LINKTYPE_ETHERNET: "ethernet",
    LINKTYPE_PPP: "ppp",
    LINKTYPE_RAW_OPENBSD: "raw",
    LINKTYPE_RAW_14: "raw",
    LINKTYPE_PPP_HDLC: "ppp-hdlc",
    LINKTYPE_RAW: "raw",
    LINKTYPE_IEEE802_11: "802.11",
    LINKTYPE_LOOP: "loop",
    LINKTYPE_LINUX_SLL: "linux-sll",
    LINKTYPE_IEEE802_11_RADIOTAP: "802.11-radiotap",
    LINKTYPE_IPV4: "ipv4",
    LINKTYPE_IPV6: "ipv6",
    LINKTYPE_LINUX_SLL2: "linux-sll2",
}

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IP6 = 0x86DD
ETH_TYPE_8021Q = 0x8100
ETH_TYPE_8021AD = 0x88A8
ETH_TYPE_QINQ_OLD = 0x9100
VLAN_TYPES = frozenset((ETH_TYPE_8021Q, ETH_TYPE_8021AD, ETH_TYPE_QINQ_OLD))
ETH_MAX_LENGTH = 1500
"""A type field up to this is an IEEE 802.3 length: an LLC header follows, not an EtherType."""
LLC_SNAP = b"\xaa\xaa\x03\x00\x00\x00"
"""An LLC/SNAP header with an EtherType after it (RFC 1042: IP over IEEE 802 networks)."""
DOT11_QOS_AMSDU = 0x80
"""In the first byte of a QoS data frame's QoS Control field: the body is an A-MSDU."""
_AMSDU_HEADER = 14
"""An A-MSDU subframe's header: destination and source address, then the MSDU's length."""

# IPv6 extension headers that are skipped to reach the transport header (RFC 8200 4.1).
IP6_EXT_HEADERS = frozenset((0, 43, 60, 135, 139, 140))
IP6_FRAGMENT = 44
IP6_AH = 51
IP6_READ_PAST = IP6_EXT_HEADERS | {IP6_FRAGMENT, IP6_AH}
"""The IPv6 next headers the decoder reads past (or reassembles) to the transport header."""
IP_PROTO_GRE = 47

# Radiotap fields before "antenna signal" (bit 5), as (alignment, size) (radiotap.org/fields):
# TSFT, Flags, Rate, Channel (frequency + flags), FHSS (hop set + pattern).
RADIOTAP_FIELDS = ((8, 8), (1, 1), (1, 1), (2, 4), (1, 2))
RADIOTAP_FLAGS_FCS = 0x10

_ETH = struct.Struct("!6s6sH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_PORTS_TCP = struct.Struct("!HHIIBB")
_PORTS_UDP = struct.Struct("!HHH")
_U16 = struct.Struct("!H")


@dataclass(slots=True)
class DecodeStats:
    """Frames that did not become IP packets, by kind."""

    ip: int = 0
    non_ip: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    fragments: int = 0
    bad_checksums: int = 0
    """IP packets dropped for a wrong IPv4 header, TCP, UDP or ICMP checksum
    (`capture.checksum`)."""
    encrypted: Counter[bytes] = field(default_factory=Counter)
    """Protected 802.11 data frames (`dot11-protected` in `non_ip`: a WPA network's, unreadable
    without its key) by the MAC that sent them, as a readable frame's source is taken: what a
    device sent that nobody can say did not carry data."""


class Decoder:
    """Turns raw frames into `Packet`s; keeps counts of what was not IP."""

    def __init__(self, checksums: str = "ignore") -> None:
        self.stats = DecodeStats()
        self.fragments = FragmentReassembler()
        self.checksums = checksum.MODE_CODES[checksums]
        """How wrong checksums are taken (`capture.checksum`): IGNORE, AUTO or VERIFY."""
        self.more: list[Packet] | None = None
        """The other packets of the frame `decode` read last, in their order after the one it
        returned (the MSDUs of an 802.11 A-MSDU, `_amsdu`); None for every other frame. Whoever
        takes a frame's packet takes these too (`Pipeline.feed`)."""
        self.on_arp: Callable[[bytes], None] | None = None
        """Where the address an ARP request shows on the link goes (`_arp`): the run's on-link
        table (`dronewatch.geoip.onlink`), set by the pipeline; None: ARP is only counted."""

    def decode(self, raw: RawPacket) -> Packet | None:
        """A `Packet` for an IP frame or an 802.11 management frame; None for anything else. A
        frame that carries several packets (an 802.11 A-MSDU) gives the first, the rest in
        `more`."""
        self.more = None
        lt = raw.linktype
        data = raw.data
        pkt = Packet(raw.ts, raw.frame, raw.wirelen, len(data), lt, raw.iface)
        pkt.raw = data
        try:
            if lt == LINKTYPE_ETHERNET:
                return self._ethernet(pkt, data, 0, 0)
            if lt in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW_14):
                return self._ip(pkt, data, 0, 0)
            if lt == LINKTYPE_RAW_OPENBSD:
                return self._ip(pkt, data, 0, 0)
            if lt == LINKTYPE_LINUX_SLL:
                return self._sll(pkt, data)
            if lt == LINKTYPE_LINUX_SLL2:
                return self._sll2(pkt, data)
            if lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
                return self._null(pkt, data, lt)
            if lt == LINKTYPE_IEEE802_11_RADIOTAP:
                return self._radiotap(pkt, data)
            if lt == LINKTYPE_IEEE802_11:
                return self._dot11(pkt, data, 0)
            if lt == LINKTYPE_PPP or lt == LINKTYPE_PPP_HDLC:
                return self._ppp(pkt, data)
        except (struct.error, IndexError):
            self.stats.malformed += 1
            return None
        self.stats.non_ip[f"linktype-{lt}"] += 1
        return None

    def _ethernet(self, pkt: Packet, data: bytes, off: int, depth: int) -> Packet | None:
        dst, src, etype = _ETH.unpack_from(data, off)
        pkt.dst_mac = dst
        pkt.src_mac = src
        if etype <= ETH_MAX_LENGTH and data[off + 14 : off + 20] == LLC_SNAP:
            # IEEE 802.3 with LLC/SNAP (RFC 1042): the EtherType follows the SNAP header.
            return self._ethertype(pkt, data, off + 22, _U16.unpack_from(data, off + 20)[0], depth)
        return self._ethertype(pkt, data, off + 14, etype, depth)

    def _ethertype(
        self, pkt: Packet, data: bytes, off: int, etype: int, depth: int
    ) -> Packet | None:
        """What follows an EtherType: VLAN tags (802.1Q, QinQ), then IP, MPLS, PPPoE or else."""
        while etype in VLAN_TYPES:
            tci, etype = struct.unpack_from("!HH", data, off)
            if pkt.vlan is None:
                pkt.vlan = tci & 0x0FFF
            off += 4
        if etype == ETH_TYPE_IP or etype == ETH_TYPE_IP6:
            return self._ip(pkt, data, off, depth)
        if depth < MAX_ENCAPSULATIONS:
            if etype == ETH_TYPE_MPLS or etype == ETH_TYPE_MPLS_MULTICAST:
                return self._mpls(pkt, data, off, depth)
            if etype == ETH_TYPE_PPPOE_SESSION:
                return self._pppoe(pkt, data, off, depth)
        if etype == ETH_TYPE_ARP:
            self.stats.non_ip["arp"] += 1
            if self.on_arp is not None:
                self._arp(data, off)
            return None
        self.stats.non_ip[f"ethertype-0x{etype:04x}"] += 1
        return None

    def _arp(self, data: bytes, off: int) -> None:
        """An ARP message (RFC 826) over Ethernet for IPv4: a request's sender address is its
        sender's own, on the link; a probe (RFC 5227: sender address 0.0.0.0) asks for the
        address its sender is taking. A reply may be a proxy's for an address beyond the link,
        and a request's target is what its sender takes for on-link, maybe by mistake: neither
        is taken. Anything else, or a message cut short, says nothing."""
        head = data[off : off + 8]
        if head != _ARP_ETHERNET_IPV4_REQUEST or len(data) < off + 28:
            return
        sender = data[off + 14 : off + 18]
        assert self.on_arp is not None
        self.on_arp(data[off + 24 : off + 28] if sender == _ARP_UNSPECIFIED else sender)

    def _mpls(self, pkt: Packet, data: bytes, off: int, depth: int) -> Packet | None:
        label, off = encap.mpls(data, off)
        # No field says what the stack carries: an IP header's first nibble is its version.
        version = data[off] >> 4
        if version != 4 and version != 6:
            self.stats.non_ip["mpls-non-ip"] += 1
            return None
        self._enter(pkt, "mpls", label, False)
        return self._ip(pkt, data, off, depth + 1)

    def _pppoe(self, pkt: Packet, data: bytes, off: int, depth: int) -> Packet | None:
        found = encap.pppoe(data, off)
        if found is None or (found[1] != PPP_IP and found[1] != PPP_IP6):
            self.stats.non_ip["pppoe-non-ip"] += 1  # discovery is its own EtherType (0x8863)
            return None
        self._enter(pkt, "pppoe", found[0], False)
        return self._ip(pkt, data, found[2], depth + 1)

    def _enter(self, pkt: Packet, kind: str, ident: int | None, outer_ip: bool) -> None:
        """The packet is taken out of an encapsulation: note the outermost one, and forget what
        the outer headers set that the inner ones may not (VLAN, and with an outer IP header its
        addresses, ports and MACs)."""
        if pkt.tunnel is None:
            src, dst = (pkt.src, pkt.dst) if outer_ip else (b"", b"")
            pkt.tunnel = Tunnel(kind, src, dst, pkt.vlan, ident)
        pkt.vlan = None
        if outer_ip:
            pkt.src_mac = pkt.dst_mac = pkt.src = pkt.dst = b""
            pkt.ip_version = pkt.proto = pkt.sport = pkt.dport = pkt.ip_len = 0

    def _inner(
        self, pkt: Packet, data: bytes, inner: Inner, depth: int, stop: int
    ) -> Packet | None:
        """The packet inside an IP-level encapsulation (GRE, ERSPAN, VXLAN, Geneve) whose outer
        packet ends at `stop`."""
        self._enter(pkt, inner.kind, inner.ident, True)
        if inner.vlan:
            pkt.vlan = inner.vlan
        if inner.inner == INNER_DOT11:  # the frame ends where its carrier does
            return self._dot11(pkt, data[inner.at : stop], depth + 1)
        if inner.inner == ETH_TYPE_TEB:
            return self._ethernet(pkt, data, inner.at, depth + 1)
        if inner.inner == INNER_IP:
            return self._ip(pkt, data, inner.at, depth + 1)
        return self._ethertype(pkt, data, inner.at, inner.inner, depth + 1)

    def _sll(self, pkt: Packet, data: bytes) -> Packet | None:
        # Linux cooked v1: packet type, ARPHRD, address length, 8-byte address, protocol.
        _ptype, hatype, alen, addr, proto = struct.unpack_from("!HHH8sH", data, 0)
        if hatype == 1 and alen == 6:
            pkt.src_mac = addr[:6]
        return self._ethertype(pkt, data, 16, proto, 0)

    def _sll2(self, pkt: Packet, data: bytes) -> Packet | None:
        # Linux cooked v2: protocol, reserved, ifindex, ARPHRD, packet type, address length/value.
        proto, _res, _ifindex, hatype, _ptype, alen, addr = struct.unpack_from("!HHIHBB8s", data, 0)
        if hatype == 1 and alen == 6:
            pkt.src_mac = addr[:6]
        return self._ethertype(pkt, data, 20, proto, 0)

    def _ppp(self, pkt: Packet, data: bytes) -> Packet | None:
        """PPP (RFC 1661), with the HDLC-like framing of RFC 1662 (address 0xff, control 0x03)
        or without it, the protocol field in one byte when compressed (RFC 1661 6.5: its first
        byte is odd); or Cisco HDLC (address 0x0f or 0x8f, control 0, an EtherType), which
        link type 50 also holds."""
        first = data[0]
        if first == 0x0F or first == 0x8F:
            return self._ethertype(pkt, data, 4, _U16.unpack_from(data, 2)[0], 0)
        off = 2 if first == 0xFF and data[1] == 0x03 else 0
        if data[off] & 1:
            proto, off = data[off], off + 1
        else:
            proto, off = _U16.unpack_from(data, off)[0], off + 2
        if proto == PPP_IP or proto == PPP_IP6:
            return self._ip(pkt, data, off, 0)
        self.stats.non_ip[f"ppp-0x{proto:04x}"] += 1  # LCP, IPCP, CHAP...: the link's control
        return None

    def _null(self, pkt: Packet, data: bytes, lt: int) -> Packet | None:
        if lt == LINKTYPE_LOOP:
            family = struct.unpack_from("!I", data, 0)[0]
        else:
            # DLT_NULL stores the family in the capturing host's byte order.
            family = struct.unpack_from("<I", data, 0)[0]
            if family > 0xFFFF:
                family = struct.unpack_from(">I", data, 0)[0]
        if family == 2 or family in (10, 24, 28, 30):
            return self._ip(pkt, data, 4, 0)
        self.stats.non_ip[f"null-family-{family}"] += 1
        return None

    def _radiotap(self, pkt: Packet, data: bytes) -> Packet | None:
        _ver, _pad, rlen, present = struct.unpack_from("<BBHI", data, 0)
        # Skip extended presence bitmaps (bit 31 chains another 32-bit word).
        off = 8
        word = present
        while word & 0x80000000:
            word = struct.unpack_from("<I", data, off)[0]
            off += 4
        flags = 0
        rssi: int | None = None
        freq: int | None = None
        for bit, (align, size) in enumerate(RADIOTAP_FIELDS):
            if not present & (1 << bit):
                continue
            off = (off + align - 1) & ~(align - 1)
            if bit == 1:
                flags = data[off]
            elif bit == 3:
                freq = struct.unpack_from("<H", data, off)[0]
            off += size
        if present & (1 << 5):
            rssi = struct.unpack_from("<b", data, off)[0]
        frame = data[rlen:]
        if flags & RADIOTAP_FLAGS_FCS:
            frame = frame[:-4]
        out = self._dot11(pkt, frame, 0)
        if out is not None and out.dot11 is not None:
            out.dot11.rssi_dbm = rssi
            out.dot11.freq_mhz = freq
        return out

    def _dot11(self, pkt: Packet, data: bytes, depth: int) -> Packet | None:
        """The 802.11 frame `data` (its MAC header first, no FCS)."""
        fc0 = data[0]
        fc1 = data[1]
        ftype = (fc0 >> 2) & 3
        subtype = fc0 >> 4
        if ftype == 0:
            if len(data) < 24:
                self.stats.malformed += 1
                return None
            addr2 = data[10:16]
            pkt.src_mac = addr2
            pkt.dst_mac = data[4:10]
            pkt.dot11 = Dot11Frame(subtype, addr2, data[16:22], data[24:])
            self.stats.non_ip[f"dot11-mgmt-{subtype}"] += 1
            return pkt
        if ftype != 2:
            self.stats.non_ip["dot11-ctrl" if ftype == 1 else "dot11-other"] += 1
            return None
        to_ds = fc1 & 1
        from_ds = fc1 & 2
        hdr = 30 if (to_ds and from_ds) else 24
        amsdu = False
        if subtype & 0x8:  # QoS data
            amsdu = len(data) > hdr and bool(data[hdr] & DOT11_QOS_AMSDU)
            hdr += 2
            if fc1 & 0x80:  # +HTC
                hdr += 4
        if subtype & 0x4:  # null function: no body
            self.stats.non_ip["dot11-null"] += 1
            return None
        addr1, addr2, addr3 = data[4:10], data[10:16], data[16:22]
        if fc1 & 0x40:
            self.stats.non_ip["dot11-protected"] += 1
            self.stats.encrypted[addr3 if from_ds and not to_ds else addr2] += 1
            return None
        if from_ds and not to_ds:
            pkt.dst_mac, pkt.src_mac = addr1, addr3
        elif to_ds and not from_ds:
            pkt.dst_mac, pkt.src_mac = addr3, addr2
        else:
            pkt.dst_mac, pkt.src_mac = addr1, addr2
        if amsdu:
            return self._amsdu(pkt, data, hdr, depth)
        # LLC/SNAP: AA AA 03 00 00 00 then the EtherType.
        if data[hdr : hdr + 6] != LLC_SNAP:
            self.stats.non_ip["dot11-non-snap"] += 1
            return None
        etype = struct.unpack_from("!H", data, hdr + 6)[0]
        return self._ethertype(pkt, data, hdr + 8, etype, depth)

    def _amsdu(self, pkt: Packet, data: bytes, off: int, depth: int) -> Packet | None:
        """The MSDUs of the A-MSDU at `off` (IEEE 802.11-2020 9.3.2.2.2): subframes of
        destination and source address, length and MSDU (LLC/SNAP, then what its EtherType
        says), each but the last padded to a multiple of 4 bytes. A packet for each: the first
        returned, the others in `more`, each with its subframe's addresses. A subframe the
        capture cut short (a snap length) gives what was captured of it and ends the frame; one
        that cannot be read is counted as malformed and ends it too."""
        end = len(data)
        packets: list[Packet] = []
        sub: Packet | None = pkt
        while off + _AMSDU_HEADER <= end:
            length = _U16.unpack_from(data, off + 12)[0]
            msdu = off + _AMSDU_HEADER
            if sub is None:  # every subframe after the first: a packet of the same frame
                sub = Packet(pkt.ts, pkt.frame, pkt.wirelen, pkt.caplen, pkt.linktype, pkt.iface)
                sub.raw, sub.tunnel = pkt.raw, pkt.tunnel
            sub.dst_mac, sub.src_mac = data[off : off + 6], data[off + 6 : off + 12]
            body = data[msdu : msdu + length]
            if body[:6] != LLC_SNAP or len(body) < 8:
                self.stats.non_ip["dot11-non-snap"] += 1
            else:
                try:
                    found = self._ethertype(sub, body, 8, _U16.unpack_from(body, 6)[0], depth)
                except (struct.error, IndexError):
                    self.stats.malformed += 1
                    break
                if found is not None:
                    packets.append(found)
            sub = None
            off = msdu + length + (-(_AMSDU_HEADER + length) % 4)
        if not packets:
            return None
        if len(packets) > 1:
            self.more = packets[1:]
        return packets[0]

    def _ip(
        self, pkt: Packet, data: bytes, off: int, depth: int, whole: bool = False
    ) -> Packet | None:
        """The IP packet at `off`; `whole`: a datagram the fragment reassembler made (its header
        rebuilt: the fragments' own were checked as they came)."""
        version = data[off] >> 4
        if version == 4:
            vihl, _tos, total, _id, frag, _ttl, proto, _sum, src, dst = _IP4.unpack_from(data, off)
            ihl = (vihl & 0x0F) * 4
            if ihl < 20:
                self.stats.malformed += 1
                return None
            if self.checksums and not whole and not self._header_ok(data, off, ihl, total):
                return None
            pkt.ip_version = 4
            pkt.src = src
            pkt.dst = dst
            pkt.proto = proto
            # Captures with TSO may carry total length 0: fall back to the captured size.
            pkt.ip_len = total if total >= ihl else len(data) - off
            l4 = off + ihl
            end = off + pkt.ip_len
            ends = src, dst
            if frag & 0x3FFF:  # a fragment: decoded once its datagram is whole
                self.stats.fragments += 1
                datagram = self.fragments.add(pkt.ts, data, off)
                return None if datagram is None else self._ip(pkt, datagram, 0, depth, True)
        elif version == 6:
            _vtf, plen, nxt, _hop, src, dst = _IP6.unpack_from(data, off)
            pkt.ip_version = 6
            pkt.src = src
            pkt.dst = dst
            pkt.ip_len = plen + 40
            end = off + 40 + plen
            l4 = off + 40
            ends = src, dst
            while True:
                if nxt in IP6_EXT_HEADERS:
                    nxt2, hlen = data[l4], data[l4 + 1]
                    if nxt == 43 or nxt == 60:
                        ends = _ip6_transport_ends(data, l4, nxt, ends)
                    l4 += (hlen + 1) * 8
                    nxt = nxt2
                elif nxt == IP6_AH:
                    nxt2, hlen = data[l4], data[l4 + 1]
                    l4 += (hlen + 2) * 4
                    nxt = nxt2
                elif nxt == IP6_FRAGMENT:  # decoded once its datagram is whole
                    self.stats.fragments += 1
                    datagram = self.fragments.add(pkt.ts, data, off, l4)
                    return None if datagram is None else self._ip(pkt, datagram, 0, depth, True)
                else:
                    break
            pkt.proto = nxt
            pkt.src, pkt.dst = ends
        else:
            self.stats.malformed += 1
            return None
        proto = pkt.proto
        if depth < MAX_ENCAPSULATIONS and (proto == IP_PROTO_GRE or proto == IP_PROTO_UDP):
            inner = _encapsulated(data, proto, l4, min(end, len(data)))
            if inner is not None:
                if (
                    proto == IP_PROTO_UDP
                    and self.checksums
                    and not self._tunnel_ok(data, l4, end, ends)
                ):
                    return None
                return self._inner(pkt, data, inner, depth, min(end, len(data)))
        if proto == IP_PROTO_TCP:
            sport, dport, seq, ack, doff, flags = _PORTS_TCP.unpack_from(data, l4)
            pkt.sport = sport
            pkt.dport = dport
            pkt.tcp_seq = seq
            pkt.tcp_ack = ack
            pkt.tcp_flags = flags
            start = l4 + (doff >> 4) * 4
        elif proto == IP_PROTO_UDP:
            sport, dport, _ulen = _PORTS_UDP.unpack_from(data, l4)
            pkt.sport = sport
            pkt.dport = dport
            start = l4 + 8
        elif proto == IP_PROTO_SCTP:
            pkt.sport, pkt.dport = _PORTS_UDP.unpack_from(data, l4)[:2]
            start = l4 + 12  # the SCTP common header (RFC 9260 3.1)
        elif proto == 1 or proto == 58:
            # ICMP type and code stand in for ports, as Zeek and Community ID do.
            pkt.sport = data[l4]
            pkt.dport = data[l4 + 1]
            start = l4 + 4
        else:
            self.stats.ip += 1
            return pkt
        if end < start:
            end = start
        pkt.payload_len = end - start
        pkt.payload = data[start:end]
        # Counted once its transport header was read: a packet cut before it is malformed only.
        self.stats.ip += 1
        at = _CHECKSUM_AT.get(proto, -1) if self.checksums else -1
        if at >= 0 and end <= len(data) and end - l4 >= at + 2:  # whole, with its field
            if not checksum.segment_ok(*ends, proto, data[l4:end], at, self.checksums):
                self.stats.bad_checksums += 1
                if proto != IP_PROTO_TCP and proto != IP_PROTO_UDP:
                    return None  # an ICMP message: no flow letter for it
                pkt.bad_checksum = True
        return pkt

    def _header_ok(self, data: bytes, off: int, ihl: int, total: int) -> bool:
        """Whether an IPv4 header's checksum is taken as right (`capture.checksum`); counts the
        packet dropped when not. In mode `verify`, a total length of 0 (a segment the sender's
        card was to cut, its checksums unfilled) is wrong too, as in Zeek."""
        if off + ihl > len(data):
            return True  # cut by the snap length: cannot be checked
        if checksum.header_ok(data[off : off + ihl], self.checksums) and not (
            total == 0 and self.checksums == checksum.VERIFY
        ):
            return True
        self.stats.bad_checksums += 1
        return False

    def _tunnel_ok(self, data: bytes, l4: int, end: int, ends: tuple[bytes, bytes]) -> bool:
        """Whether a tunnel's UDP datagram (VXLAN, Geneve) is taken as right
        (`capture.checksum.tunnel_ok`); counts the packet dropped when not: its decapsulating
        receiver dropped it, so the packet inside was never delivered (no flow is made of it)."""
        if end > len(data) or end - l4 < 8:
            return True  # cut by the snap length: cannot be checked
        if checksum.tunnel_ok(*ends, data[l4:end], self.checksums):
            return True
        self.stats.bad_checksums += 1
        return False


_ARP_ETHERNET_IPV4_REQUEST = bytes.fromhex("0001080006040001")
"""An ARP header's first 8 bytes for a request resolving IPv4 over Ethernet (RFC 826: hardware
type 1, protocol 0x0800, address lengths 6 and 4, operation 1)."""
_ARP_UNSPECIFIED = bytes(4)

_CHECKSUM_AT = {IP_PROTO_TCP: 16, IP_PROTO_UDP: 6, 1: 2, 58: 2}
"""Where the checksum field lies in each checked transport header."""
_HOME_ADDRESS = 0xC9
"""The Home Address destination option (RFC 6275 6.3): the transport's source address."""


def _ip6_transport_ends(
    data: bytes, at: int, kind: int, ends: tuple[bytes, bytes]
) -> tuple[bytes, bytes]:
    """The addresses of an IPv6 packet's transport endpoints past the extension header at `at`
    (those its checksum covers, RFC 8200 8.1, and its flow is keyed by, as Zeek keys it): a
    routing header with segments left names the final destination last (type 0 and 2); a Home
    Address option names the source (RFC 6275 6.3)."""
    hlen = (data[at + 1] + 1) * 8
    if kind == 43:
        rtype, left = data[at + 2], data[at + 3]
        if left and rtype in (0, 2) and hlen >= 24:
            return ends[0], data[at + hlen - 16 : at + hlen]
        return ends
    i, stop = at + 2, at + hlen
    while i < stop:
        opt = data[i]
        if opt == 0:  # Pad1
            i += 1
            continue
        size = data[i + 1]
        if opt == _HOME_ADDRESS and size == 16:
            return data[i + 2 : i + 18], ends[1]
        i += 2 + size
    return ends


def _encapsulated(data: bytes, proto: int, l4: int, stop: int) -> Inner | None:
    """The packet a GRE packet, or a UDP datagram to a tunnel port, carries (the headers lying
    before `stop`), or None when it is not one (it is then judged as it is)."""
    if proto == IP_PROTO_GRE:
        return encap.gre(data, l4, stop)
    if l4 + 8 <= stop:
        dport = _U16.unpack_from(data, l4 + 2)[0]
        if dport in UDP_TUNNEL_PORTS:
            return encap.udp_tunnel(data, l4 + 8, stop, dport)
    return None


def linktype_name(lt: int) -> str:
    """A short name for a link type number."""
    return LINKTYPE_NAMES.get(lt, f"linktype-{lt}")
