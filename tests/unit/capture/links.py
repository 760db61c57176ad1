"""Frames of every link type and encapsulation the decoder reads, around a given packet (scapy
layers), for the decoder and bulk-path tests. Link-layer headers scapy does not build the way a
capture holds them (802.11 data frames, radiotap) are written byte by byte from their layouts."""

from __future__ import annotations

import struct
from collections.abc import Callable

from scapy.compat import raw
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import (
    ARP,
    GRE,
    LLC,
    SNAP,
    CookedLinux,
    CookedLinuxV2,
    Dot1AD,
    Dot1Q,
    Dot3,
    Ether,
)
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

MIRROR, COLLECTOR = "192.0.2.10", "192.0.2.20"
MIRROR6, COLLECTOR6 = "2001:db8:ffff::10", "2001:db8:ffff::20"
STATION, ACCESS_POINT, OTHER = (
    bytes.fromhex("0c84dc000002"),
    bytes.fromhex("9003b7000001"),
    bytes.fromhex("9003b7000009"),
)

Wrap = Callable[[Packet], bytes]


def eth(**kw: object) -> Ether:
    return Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01", **kw)


def ethertype(body: Packet) -> int:
    """The EtherType of an IP, IPv6 or ARP layer."""
    if isinstance(body, IP):
        return 0x0800
    if isinstance(body, IPv6):
        return 0x86DD
    assert isinstance(body, ARP)
    return 0x0806


def _outer4(proto_layer: Packet) -> Packet:
    return eth() / IP(src=MIRROR, dst=COLLECTOR) / proto_layer


def _outer6(proto_layer: Packet) -> Packet:
    return eth() / IPv6(src=MIRROR6, dst=COLLECTOR6) / proto_layer


def _ppp(body: Packet) -> Packet:
    proto = {0x0800: 0x0021, 0x86DD: 0x0057}.get(ethertype(body), 0xC021)  # ARP: as LCP
    return PPPoE(sessionid=0x1234) / PPP(proto=proto) / body


def _erspan_iii(body: Packet, frame_type: int, platform: bool) -> bytes:
    head = ERSPAN_III(session_id=6, vlan=30, ft=frame_type, o=int(platform))
    if platform:
        head = head / ERSPAN_PlatformSpecific()
    return raw(_outer4(GRE(proto=0x22EB, seqnum_present=1) / head / body))


# Ethernet (link type 1): plain, tagged, and every encapsulation the decoder takes off, plus
# headers it must leave alone (the outer packet is then the packet).
ETHERNET: dict[str, Wrap] = {
    "plain": lambda b: raw(eth(type=ethertype(b)) / b),
    "llc_snap": lambda b: raw(
        Dot3(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
        / LLC(dsap=0xAA, ssap=0xAA, ctrl=3)
        / SNAP(OUI=0, code=ethertype(b))
        / b
    ),
    "vlan": lambda b: raw(eth() / Dot1Q(vlan=7, type=ethertype(b)) / b),
    "qinq": lambda b: raw(eth() / Dot1AD(vlan=100) / Dot1Q(vlan=7, type=ethertype(b)) / b),
    "erspan_i": lambda b: raw(_outer4(GRE(proto=0x88BE)) / eth(type=ethertype(b)) / b),
    "erspan_ii": lambda b: raw(
        eth()
        / Dot1Q(vlan=5)
        / IP(src=MIRROR, dst=COLLECTOR)
        / GRE(proto=0x88BE, seqnum_present=1, sequence_number=7)
        / ERSPAN_II(session_id=5, vlan=7)
        / eth(type=ethertype(b))
        / b
    ),
    "erspan_ii_version_2": lambda b: raw(
        _outer4(GRE(proto=0x88BE, seqnum_present=1)) / ERSPAN_II(ver=2) / eth() / b
    ),
    "erspan_iii": lambda b: _erspan_iii(eth(type=ethertype(b)) / b, 0, True),
    "erspan_iii_version_1": lambda b: raw(
        _outer4(GRE(proto=0x22EB, seqnum_present=1)) / ERSPAN_III(ver=1) / eth() / b
    ),
    "erspan_iii_frame_type_1": lambda b: _erspan_iii(b, 1, False),
    "erspan_iii_ip": lambda b: _erspan_iii(b, 2, False),
    "gre_key_checksum": lambda b: raw(
        _outer4(GRE(key_present=1, key=9, chksum_present=1, proto=ethertype(b))) / b
    ),
    "gre6_teb": lambda b: raw(_outer6(GRE(proto=0x6558)) / eth(type=ethertype(b)) / b),
    "gre_version_1": lambda b: raw(_outer4(GRE(version=1, proto=ethertype(b))) / b),
    "gre_routing": lambda b: raw(_outer4(GRE(routing_present=1, proto=ethertype(b))) / b),
    "gre_mpls": lambda b: raw(_outer4(GRE(proto=0x8847)) / MPLS(label=44, s=1) / b),
    "gre_aruba": lambda b: _aruba(dot11(raw(b), ethertype(b), ds=2, qos=True)),
    "gre_aruba_amsdu": lambda b: _aruba(_amsdu(b)),
    "gre_aruba_amsdu_two": lambda b: _aruba(_amsdu_two(b)),
    "vxlan": lambda b: raw(
        _outer4(UDP(sport=49152, dport=4789)) / VXLAN(vni=4242) / eth(type=ethertype(b)) / b
    ),
    "vxlan_without_vni": lambda b: raw(
        _outer4(UDP(sport=49152, dport=4789)) / VXLAN(flags=0, vni=4242) / eth() / b
    ),
    "vxlan_to_another_port": lambda b: raw(
        _outer4(UDP(sport=4789, dport=4790)) / VXLAN(vni=4242) / eth() / b
    ),
    "geneve6_options": lambda b: raw(
        _outer6(UDP(sport=49153, dport=6081))
        / GENEVE(vni=77, proto=0x6558, optionlen=2, options=b"\x01\x02\x03\x04\x05\x06\x07\x08")
        / eth(type=ethertype(b))
        / b
    ),
    "geneve_ip": lambda b: raw(
        _outer4(UDP(sport=49154, dport=6081)) / GENEVE(vni=78, proto=ethertype(b)) / b
    ),
    "mpls": lambda b: raw(eth(type=0x8847) / MPLS(label=16, s=0) / MPLS(label=17, s=1) / b),
    "pppoe": lambda b: raw(eth() / Dot1Q(vlan=3) / _ppp(b)),
    "pppoe_not_session_data": lambda b: raw(eth(type=0x8864) / PPPoE(code=0x07) / PPP() / b),
    "pppoe_compressed_protocol": lambda b: raw(
        eth(type=0x8864)
        / PPPoE(sessionid=7)
        / bytes([{0x0800: 0x21, 0x86DD: 0x57}.get(ethertype(b), 0x23)])
        / b
    ),
    "gre_first_fragment": lambda b: raw(
        eth() / IP(src=MIRROR, dst=COLLECTOR, flags="MF", proto=47) / GRE() / eth() / b
    ),
    "nested_three": lambda b: raw(
        _outer4(UDP(sport=49155, dport=4789))
        / VXLAN(vni=1)
        / eth()
        / IP(src="198.51.100.1", dst="198.51.100.2")
        / GRE(proto=0x88BE, seqnum_present=1)
        / ERSPAN_II(session_id=9)
        / eth(type=0x8847)
        / MPLS(label=99, s=1)
        / b
    ),
    "nested_four": lambda b: raw(
        eth(type=0x8847)
        / MPLS(label=98, s=1)
        / IP(src=MIRROR, dst=COLLECTOR)
        / GRE(proto=0x6558)
        / eth()
        / IP(src="198.51.100.1", dst="198.51.100.2")
        / UDP(sport=49156, dport=4789)
        / VXLAN(vni=2)
        / eth()
        / IP(src="198.51.100.3", dst="198.51.100.4")
        / GRE(proto=0x6558)
        / eth(type=ethertype(b))
        / b
    ),
}

RAW_IP: dict[str, Wrap] = {
    "plain": lambda b: raw(b),
    "gre": lambda b: raw(IP(src=MIRROR, dst=COLLECTOR) / GRE(proto=ethertype(b)) / b),
    "vxlan6": lambda b: raw(
        IPv6(src=MIRROR6, dst=COLLECTOR6)
        / UDP(sport=49152, dport=4789)
        / VXLAN(vni=7)
        / eth(type=ethertype(b))
        / b
    ),
}


def _family(body: Packet, big: bool, ipv6_family: int) -> bytes:
    family = {0x0800: 2, 0x86DD: ipv6_family}.get(ethertype(body), 99)
    return struct.pack(">I" if big else "<I", family) + raw(body)


NULL: dict[str, Wrap] = {
    "little": lambda b: _family(b, False, 30),
    "big": lambda b: _family(b, True, 24),
}
LOOP: dict[str, Wrap] = {"loop": lambda b: _family(b, True, 28)}

SLL: dict[str, Wrap] = {
    "sll": lambda b: raw(
        CookedLinux(pkttype=4, lladdrtype=1, lladdrlen=6, src=STATION + b"\0\0", proto=ethertype(b))
        / b
    ),
    "sll_vlan": lambda b: raw(
        CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=STATION + b"\0\0", proto=0x8100)
        / Dot1Q(vlan=12, type=ethertype(b))
        / b
    ),
    "sll_gre_tunnel": lambda b: raw(
        CookedLinux(pkttype=0, lladdrtype=778, lladdrlen=4, src=b"\xc0\x00\x02\x0a\0\0\0\0") / b
    ),
}
SLL2: dict[str, Wrap] = {
    "sll2": lambda b: raw(
        CookedLinuxV2(
            proto=ethertype(b), ifindex=3, lladdrtype=1, lladdrlen=6, src=STATION + b"\0\0"
        )
        / b
    ),
    "sll2_not_ethernet": lambda b: raw(
        CookedLinuxV2(
            proto=ethertype(b), ifindex=4, lladdrtype=778, lladdrlen=4, src=b"\xc0\0\2\x0a"
        )
        / b
    ),
    "sll2_mpls": lambda b: raw(
        CookedLinuxV2(proto=0x8847, ifindex=3, lladdrtype=1, lladdrlen=6, src=STATION + b"\0\0")
        / MPLS(label=16, s=1)
        / b
    ),
}


def dot11(
    body: bytes,
    etype: int,
    *,
    ds: int = 1,
    qos: bool = False,
    htc: bool = False,
    protected: bool = False,
    null: bool = False,
    snap: bool = True,
    amsdu: bool = False,
) -> bytes:
    """An 802.11 data frame (IEEE 802.11-2020 9.3.2.1): frame control, duration, addresses 1-3,
    sequence control, address 4 (to and from DS), QoS control, HT control; then LLC/SNAP, or
    with `amsdu` (QoS) the A-MSDU subframes `body` (`amsdu_subframes`)."""
    subtype = (0x8 if qos else 0) | (0x4 if null else 0)
    fc = bytes([(2 << 2) | (subtype << 4), ds | (0x40 if protected else 0) | (0x80 if htc else 0)])
    a1, a2, a3 = {
        0: (ACCESS_POINT, STATION, OTHER),
        1: (ACCESS_POINT, STATION, OTHER),  # to DS: BSSID, source, destination
        2: (STATION, ACCESS_POINT, OTHER),  # from DS: destination, BSSID, source
        3: (ACCESS_POINT, OTHER, STATION),
    }[ds]
    header = fc + b"\x2c\x00" + a1 + a2 + a3 + b"\x10\x00"
    if ds == 3:
        header += OTHER
    if qos:
        header += (b"\x80\x00" if amsdu else b"\x00\x00") + (b"\x00\x00\x00\x00" if htc else b"")
    if amsdu:
        return header + body
    llc = b"\xaa\xaa\x03\x00\x00\x00" + etype.to_bytes(2, "big") if snap else b"\x42\x42\x03"
    return header + llc + body


def msdu(body: Packet) -> bytes:
    """An MSDU of an A-MSDU: LLC/SNAP, then the packet."""
    return b"\xaa\xaa\x03\x00\x00\x00" + ethertype(body).to_bytes(2, "big") + raw(body)


def amsdu_subframes(*msdus: bytes, da: bytes = STATION, sa: bytes = OTHER) -> bytes:
    """A-MSDU subframes (IEEE 802.11-2020 9.3.2.2.2): destination, source, the MSDU's length, the
    MSDU; each but the last padded to a multiple of 4 bytes."""
    out = b""
    for i, data in enumerate(msdus):
        sub = da + sa + len(data).to_bytes(2, "big") + data
        out += sub if i == len(msdus) - 1 else sub + b"\x00" * (-len(sub) % 4)
    return out


def _amsdu(body: Packet) -> bytes:
    """A from-DS A-MSDU: a subframe that is not LLC/SNAP (counted), then the packet's."""
    return dot11(
        amsdu_subframes(b"\x42\x42\x03\x00\x00", msdu(body)), 0, ds=2, qos=True, amsdu=True
    )


def _amsdu_two(body: Packet) -> bytes:
    """A from-DS A-MSDU of the packet twice (every subframe IP: the C walk reads it)."""
    return dot11(amsdu_subframes(msdu(body), msdu(body)), 0, ds=2, qos=True, amsdu=True)


def _aruba(frame: bytes) -> bytes:
    """An 802.11 frame in GRE from an Aruba access point (protocol type 0x8240)."""
    return raw(_outer4(GRE(proto=0x8240) / Raw(frame)))


ACK = b"\xd4\x00\x00\x00" + ACCESS_POINT
BEACON = (
    b"\x80\x00\x00\x00" + b"\xff" * 6 + ACCESS_POINT + ACCESS_POINT + b"\x00\x00"
    b"\x00" * 8 + b"\x64\x00\x01\x04" + b"\x00\x05DRONE"
)

DOT11: dict[str, Wrap] = {
    "to_ds": lambda b: dot11(raw(b), ethertype(b)),
    "from_ds_qos": lambda b: dot11(raw(b), ethertype(b), ds=2, qos=True),
    "wds_qos_htc": lambda b: dot11(raw(b), ethertype(b), ds=3, qos=True, htc=True),
    "ad_hoc": lambda b: dot11(raw(b), ethertype(b), ds=0),
    "protected": lambda b: dot11(raw(b), ethertype(b), protected=True),
    "null": lambda b: dot11(b"", 0, null=True, qos=True),
    "non_snap": lambda b: dot11(raw(b), ethertype(b), snap=False),
    "amsdu": _amsdu,
    "amsdu_two": _amsdu_two,
    "ack": lambda b: ACK,
    "beacon": lambda b: BEACON,
    "other_type": lambda b: b"\x0c\x00" + b"\x00" * 20,
}


def radiotap(frame: bytes, *, fields: str = "flags", fcs: bool = False) -> bytes:
    """A radiotap header (radiotap.org) before `frame`: "flags" (Flags, Rate, Channel, antenna
    signal), "tsft" (TSFT then Flags: 8-byte alignment) or "ext" (an extended presence bitmap
    before Flags); with `fcs`, Flags says the frame ends with a 4-byte FCS, which is appended."""
    flags = 0x10 if fcs else 0x00
    if fields == "flags":
        present, data = 0x2E, bytes([flags, 0x0C]) + struct.pack("<HH", 2437, 0x00A0) + b"\xd6"
    elif fields == "tsft":
        present, data = 0x03, struct.pack("<Q", 123456789) + bytes([flags])
    else:
        present, data = 0x80000002, struct.pack("<I", 0) + bytes([flags])
    head = struct.pack("<BBHI", 0, 0, 8 + len(data), present) + data
    return head + frame + (b"\xde\xad\xbe\xef" if fcs else b"")


RADIOTAP: dict[str, Wrap] = {
    "flags": lambda b: radiotap(dot11(raw(b), ethertype(b))),
    "tsft_fcs": lambda b: radiotap(
        dot11(raw(b), ethertype(b), ds=2, qos=True), fields="tsft", fcs=True
    ),
    "ext_fcs": lambda b: radiotap(dot11(raw(b), ethertype(b)), fields="ext", fcs=True),
    "protected": lambda b: radiotap(dot11(raw(b), ethertype(b), protected=True)),
    "ack": lambda b: radiotap(ACK, fcs=True),
    "beacon": lambda b: radiotap(BEACON),
    "null": lambda b: radiotap(dot11(b"", 0, null=True)),
    "vlan_in_snap": lambda b: radiotap(dot11(raw(Dot1Q(vlan=9, type=ethertype(b)) / b), 0x8100)),
    "amsdu_fcs": lambda b: radiotap(_amsdu(b), fcs=True),
    "amsdu_two_fcs": lambda b: radiotap(_amsdu_two(b), fcs=True),
}

LINK_WRAPS: dict[int, dict[str, Wrap]] = {  # the first frame of each: the packet seen directly
    0: NULL,
    1: ETHERNET,
    101: RAW_IP,
    105: DOT11,
    108: LOOP,
    113: SLL,
    127: RADIOTAP,
    228: RAW_IP,
    276: SLL2,
}
"""Link type -> the frames of it the tests build."""
