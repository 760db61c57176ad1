"""Link, network and transport decoding into Packets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import (
    IP,
    LLC,
    SNAP,
    TCP,
    UDP,
    CookedLinux,
    Dot1Q,
    Dot11,
    Dot11Beacon,
    Dot11Elt,
    Ether,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    RadioTap,
    raw,
)
from scapy.layers.l2 import CookedLinuxV2

from dronewatch.capture.base import RawPacket
from dronewatch.capture.decode import LINKTYPE_NAMES, Decoder
from dronewatch.core.flow import ip_str, mac_str

UDP_PAYLOAD = IP(src="192.168.1.3", dst="52.84.0.7") / UDP(sport=40000, dport=443) / b"hello"


def decode(data: bytes, linktype: int = 1) -> tuple[Decoder, object]:
    dec = Decoder()
    return dec, dec.decode(RawPacket(1.0, linktype, data, len(data), 0, 1))


def test_ethernet_qinq() -> None:
    """Two VLAN tags are skipped and the outer VLAN id is kept."""
    frame = raw(Ether(src="02:00:00:00:00:01") / Dot1Q(vlan=10) / Dot1Q(vlan=20) / UDP_PAYLOAD)
    _, pkt = decode(frame)
    assert pkt is not None
    assert pkt.vlan == 10 and mac_str(pkt.src_mac) == "02:00:00:00:00:01"
    assert (ip_str(pkt.src), pkt.sport, ip_str(pkt.dst), pkt.dport) == (
        "192.168.1.3",
        40000,
        "52.84.0.7",
        443,
    )
    assert pkt.payload == b"hello" and pkt.payload_len == 5


def test_ethernet_padding_is_not_payload() -> None:
    """Ethernet padding after a short IP packet is not counted as payload."""
    frame = raw(Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / UDP(sport=1, dport=2) / b"x")
    _, pkt = decode(frame + b"\x00" * 12)
    assert pkt is not None and pkt.payload == b"x" and pkt.ip_len == 29


def test_tcp_flags_and_sequence() -> None:
    """TCP ports, flags, sequence number and payload offset are read."""
    frame = raw(Ether() / IP() / TCP(sport=5, dport=6, flags="PA", seq=77) / b"data")
    _, pkt = decode(frame)
    assert pkt is not None and pkt.tcp_flags == 0x18 and pkt.tcp_seq == 77
    assert pkt.payload == b"data"


def test_linux_sll_and_sll2() -> None:
    """Linux cooked v1 and v2 headers lead to the IP packet and the source MAC."""
    v1 = raw(
        CookedLinux(
            pkttype=0,
            lladdrtype=1,
            lladdrlen=6,
            src=b"\x02\x00\x00\x00\x00\x09\x00\x00",
            proto=0x0800,
        )
        / UDP_PAYLOAD
    )
    _, p1 = decode(v1, 113)
    assert p1 is not None and p1.dport == 443 and mac_str(p1.src_mac) == "02:00:00:00:00:09"
    v2 = raw(
        CookedLinuxV2(
            proto=0x0800, lladdrtype=1, lladdrlen=6, src=b"\x02\x00\x00\x00\x00\x08\x00\x00"
        )
        / UDP_PAYLOAD
    )
    _, p2 = decode(v2, 276)
    assert p2 is not None and p2.dport == 443 and mac_str(p2.src_mac) == "02:00:00:00:00:08"


@pytest.mark.parametrize("linktype", [101, 228, 12, 14])
def test_raw_ipv4(linktype: int) -> None:
    """Raw IP link types (PCAPdroid phone-side captures) decode from byte 0."""
    _, pkt = decode(raw(UDP_PAYLOAD), linktype)
    assert pkt is not None and pkt.ip_version == 4 and pkt.payload == b"hello"


def test_raw_ipv6_with_extension_headers() -> None:
    """IPv6 hop-by-hop and destination-options headers are skipped to reach UDP."""
    pkt6 = (
        IPv6(src="2001:db8::1", dst="2a00:1450::5")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / UDP(sport=9, dport=53)
        / b"q"
    )
    _, pkt = decode(raw(pkt6), 229)
    assert pkt is not None and pkt.proto == 17 and pkt.dport == 53 and pkt.payload == b"q"
    assert ip_str(pkt.dst) == "2a00:1450::5"


def test_ipv6_later_fragment_has_no_ports() -> None:
    """An IPv6 fragment with a non-zero offset is kept without a transport header."""
    frag = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(offset=100, nh=17)
        / (b"x" * 16)
    )
    dec, pkt = decode(raw(frag), 229)
    assert pkt is not None and pkt.fragment and pkt.sport == 0 and dec.stats.fragments == 1


def test_ipv4_fragments() -> None:
    """The first IPv4 fragment keeps its ports; later fragments are kept without them."""
    first = raw(
        IP(src="1.1.1.1", dst="2.2.2.2", flags="MF", frag=0) / UDP(sport=1, dport=2) / (b"a" * 8)
    )
    later = raw(IP(src="1.1.1.1", dst="2.2.2.2", frag=2, proto=17) / (b"b" * 8))
    dec = Decoder()
    p1 = dec.decode(RawPacket(1.0, 101, first, len(first), 0, 1))
    p2 = dec.decode(RawPacket(1.0, 101, later, len(later), 0, 2))
    assert p1 is not None and p1.dport == 2 and not p1.fragment
    assert p2 is not None and p2.fragment and p2.payload == b""


@pytest.mark.parametrize(("family", "endian"), [(2, "<"), (2, ">"), (30, "<"), (24, ">")])
def test_bsd_null_loopback(family: int, endian: str) -> None:
    """BSD NULL carries the address family in either byte order."""
    body = (
        raw(UDP_PAYLOAD) if family == 2 else raw(IPv6(src="::1", dst="::1") / UDP(sport=1, dport=2))
    )
    _, pkt = decode(struct.pack(endian + "I", family) + body, 0)
    assert pkt is not None and pkt.ip_version == (4 if family == 2 else 6)


def test_radiotap_beacon_is_a_management_frame() -> None:
    """A radiotap beacon becomes a Dot11Frame with RSSI, frequency and body."""
    beacon = (
        RadioTap(
            present="Flags+Channel+dBm_AntSignal", Flags=0, ChannelFrequency=2437, dBm_AntSignal=-42
        )
        / Dot11(
            type=0,
            subtype=8,
            addr1="ff:ff:ff:ff:ff:ff",
            addr2="60:60:1f:00:00:01",
            addr3="60:60:1f:00:00:01",
        )
        / Dot11Beacon()
        / Dot11Elt(ID=0, info=b"DRONE")
    )
    _, pkt = decode(raw(beacon), 127)
    assert pkt is not None and pkt.ip_version == 0 and pkt.dot11 is not None
    assert pkt.dot11.subtype == 8 and pkt.dot11.rssi_dbm == -42 and pkt.dot11.freq_mhz == 2437
    assert mac_str(pkt.dot11.addr2) == "60:60:1f:00:00:01"
    assert pkt.dot11.body[12:19] == b"\x00\x05DRONE"


def test_dot11_data_llc_snap_to_ip() -> None:
    """An open-network 802.11 data frame (to DS) yields its IP packet and the station MAC."""
    data = (
        Dot11(
            type=2,
            subtype=0,
            FCfield=0x01,
            addr1="90:03:b7:00:00:01",
            addr2="0c:84:dc:00:00:02",
            addr3="90:03:b7:00:00:01",
        )
        / LLC(dsap=0xAA, ssap=0xAA, ctrl=3)
        / SNAP(OUI=0, code=0x0800)
        / UDP_PAYLOAD
    )
    _, pkt = decode(raw(data), 105)
    assert pkt is not None and pkt.dport == 443 and mac_str(pkt.src_mac) == "0c:84:dc:00:00:02"


def test_protected_dot11_data_is_counted_not_decoded() -> None:
    """Encrypted 802.11 data is counted as non-IP."""
    data = Dot11(type=2, subtype=0, FCfield=0x40) / (b"\x00" * 40)
    dec, pkt = decode(raw(data), 105)
    assert pkt is None and dec.stats.non_ip["dot11-protected"] == 1


def test_arp_is_counted() -> None:
    """ARP frames are counted as non-IP."""
    frame = raw(Ether(type=0x0806) / (b"\x00" * 28))
    dec, pkt = decode(frame)
    assert pkt is None and dec.stats.non_ip["arp"] == 1


def test_short_frame_is_malformed() -> None:
    """A frame cut inside its IP header is counted as malformed."""
    dec, pkt = decode(raw(Ether() / UDP_PAYLOAD)[:20])
    assert pkt is None and dec.stats.malformed == 1


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(LINKTYPE_NAMES) + [999]), st.binary(max_size=200))
def test_arbitrary_frames_never_raise(linktype: int, data: bytes) -> None:
    """Any bytes with any link type decode or are counted, never raise."""
    Decoder().decode(RawPacket(0.0, linktype, data, len(data), 0, 1))
