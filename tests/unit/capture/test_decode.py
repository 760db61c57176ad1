"""Link, network and transport decoding into Packets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.dot11 import Dot11, Dot11Beacon, Dot11Elt, RadioTap
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, LLC, SNAP, CookedLinux, CookedLinuxV2, Dot1Q, Dot3, Ether

from dronewatch.capture.base import RawPacket
from dronewatch.capture.decode import LINKTYPE_NAMES, LLC_SNAP, Decoder
from dronewatch.core.flow import ip_str, mac_str
from tests.unit.capture.links import ETHERNET, LINK_WRAPS

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


def test_ipv6_fragment_waits_for_its_datagram() -> None:
    """An IPv6 fragment is counted and held until its datagram is whole
    (`capture.fragments`)."""
    frag = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(offset=100, nh=17)
        / (b"x" * 16)
    )
    dec, pkt = decode(raw(frag), 229)
    assert pkt is None and dec.stats.fragments == 1


def test_ipv4_fragments() -> None:
    """IPv4 fragments are held until their datagram is whole, then decoded as one packet with
    the first fragment's ports and every fragment's payload."""
    first = raw(
        IP(src="1.1.1.1", dst="2.2.2.2", flags="MF", frag=0, id=5)
        / UDP(sport=1, dport=2, len=24)
        / (b"a" * 8)
    )
    later = raw(IP(src="1.1.1.1", dst="2.2.2.2", frag=2, proto=17, id=5) / (b"b" * 8))
    dec = Decoder()
    p1 = dec.decode(RawPacket(1.0, 101, first, len(first), 0, 1))
    p2 = dec.decode(RawPacket(1.0, 101, later, len(later), 0, 2))
    assert p1 is None
    assert p2 is not None and p2.dport == 2 and p2.payload == b"a" * 8 + b"b" * 8
    assert dec.stats.fragments == 2


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


def test_ieee_802_3_llc_snap_frame_to_ip() -> None:
    """An IEEE 802.3 frame (a length where the EtherType goes) with an LLC/SNAP header carries
    its EtherType after it (RFC 1042), as in Zeek's snap-tcp.pcap; other LLC frames (spanning
    tree) are counted, not decoded."""
    frame = ETHERNET["llc_snap"](UDP_PAYLOAD)
    assert frame[12:14] == len(frame[14:]).to_bytes(2, "big") and frame[14:20] == LLC_SNAP
    dec, pkt = decode(frame)
    assert pkt is not None and pkt.payload == b"hello"
    assert (ip_str(pkt.src), pkt.dport) == ("192.168.1.3", 443)
    assert mac_str(pkt.src_mac) == "02:00:00:00:00:02"
    stp = raw(Dot3(dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / bytes(35))
    dec, pkt = decode(stp)
    assert pkt is None and dec.stats.non_ip == {"ethertype-0x0026": 1}
    dec, pkt = decode(frame[:21])  # the SNAP header cut before its EtherType
    assert pkt is None and dec.stats.malformed == 1


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


INNER = IP(src="10.77.0.2", dst="47.88.0.13") / TCP(sport=40000, dport=443, flags="PA") / b"hello"


@pytest.mark.parametrize(
    ("wrap", "kind", "outer", "ident", "tunnel_vlan", "vlan", "mac"),
    [
        ("erspan_i", "erspan_i", "192.0.2.10", None, None, None, True),
        ("erspan_ii", "erspan_ii", "192.0.2.10", 5, 5, 7, True),
        ("erspan_iii", "erspan_iii", "192.0.2.10", 6, None, 30, True),
        ("erspan_iii_ip", "erspan_iii", "192.0.2.10", 6, None, 30, False),
        ("gre_key_checksum", "gre", "192.0.2.10", 9, None, None, False),
        ("gre6_teb", "gre", "2001:db8:ffff::10", None, None, None, True),
        ("gre_mpls", "gre", "192.0.2.10", None, None, None, False),
        ("vxlan", "vxlan", "192.0.2.10", 4242, None, None, True),
        ("geneve6_options", "geneve", "2001:db8:ffff::10", 77, None, None, True),
        ("geneve_ip", "geneve", "192.0.2.10", 78, None, None, False),
        ("mpls", "mpls", None, 17, None, None, True),
        ("pppoe", "pppoe", None, 0x1234, 3, None, True),
        ("pppoe_compressed_protocol", "pppoe", None, 7, None, None, True),
        ("nested_three", "vxlan", "192.0.2.10", 1, None, None, True),
    ],
)
def test_encapsulated_packet_is_decoded_with_its_tunnel(
    wrap: str,
    kind: str,
    outer: str | None,
    ident: int | None,
    tunnel_vlan: int | None,
    vlan: int | None,
    mac: bool,
) -> None:
    """The inner packet comes out as if seen directly, its tunnel noted: the outermost kind,
    outer addresses, the outer frame's VLAN and the VNI/session/key/label; `vlan` is the inner
    frame's (or the original VLAN an ERSPAN header names); MACs are the inner frame's, if any."""
    dec, pkt = decode(ETHERNET[wrap](INNER))
    assert pkt is not None and pkt.tunnel is not None
    assert (ip_str(pkt.src), pkt.sport, ip_str(pkt.dst), pkt.dport) == (
        "10.77.0.2",
        40000,
        "47.88.0.13",
        443,
    )
    assert pkt.payload == b"hello" and pkt.ip_len == len(INNER) and pkt.tcp_flags == 0x18
    tunnel = pkt.tunnel
    assert tunnel.kind == kind and tunnel.ident == ident and tunnel.vlan == tunnel_vlan
    assert (ip_str(tunnel.src) or None) == outer
    assert (ip_str(tunnel.dst) or None) == (None if outer is None else ETHER_COLLECTOR[outer])
    assert pkt.vlan == vlan
    assert mac_str(pkt.src_mac) == ("02:00:00:00:00:02" if mac else "")
    assert dec.stats.ip == 1 and not dec.stats.non_ip and not dec.stats.malformed


ETHER_COLLECTOR = {"192.0.2.10": "192.0.2.20", "2001:db8:ffff::10": "2001:db8:ffff::20"}


@pytest.mark.parametrize(
    "wrap",
    [
        "gre_version_1",
        "gre_routing",
        "vxlan_without_vni",
        "vxlan_to_another_port",
        "erspan_ii_version_2",
        "erspan_iii_version_1",
        "erspan_iii_frame_type_1",
    ],
)
def test_headers_not_taken_apart_leave_the_outer_packet(wrap: str) -> None:
    """GRE of another version or with routing, VXLAN without its VNI flag or on another port,
    ERSPAN of an unknown version or frame type: the outer packet is the packet, with no tunnel."""
    _, pkt = decode(ETHERNET[wrap](INNER))
    assert pkt is not None and pkt.tunnel is None
    assert ip_str(pkt.src) == "192.0.2.10" and pkt.proto in (17, 47)


def test_fragmented_tunnel_packet_is_taken_apart_once_reassembled() -> None:
    """An ERSPAN packet the underlay fragmented is taken apart when its last fragment completes
    it: one inner packet, with its tunnel; the first fragment alone gives nothing yet."""
    from scapy.layers.inet import fragment

    whole = Ether(ETHERNET["erspan_ii"](INNER / (b"x" * 600)))
    pieces = [raw(Ether(src=whole.src, dst=whole.dst) / f) for f in fragment(whole["IP"], 400)]
    assert len(pieces) == 2
    dec = Decoder()
    first = dec.decode(RawPacket(1.0, 1, pieces[0], len(pieces[0]), 0, 1))
    second = dec.decode(RawPacket(1.1, 1, pieces[1], len(pieces[1]), 0, 2))
    assert first is None and second is not None and second.tunnel is not None
    assert second.tunnel.kind == "erspan_ii" and second.dport == 443
    assert second.payload == b"hello" + b"x" * 600 and dec.stats.fragments == 2


def test_fourth_encapsulation_is_left_as_the_packet_it_is() -> None:
    """Three nested encapsulations are taken off; a fourth is the packet seen."""
    _, pkt = decode(ETHERNET["nested_four"](INNER))
    assert pkt is not None and pkt.tunnel is not None and pkt.tunnel.kind == "mpls"
    assert ip_str(pkt.src) == "198.51.100.3" and pkt.proto == 47


@pytest.mark.parametrize(
    ("wrap", "kind"),
    [
        ("mpls", "mpls-non-ip"),
        ("pppoe", "pppoe-non-ip"),
        ("vxlan", "arp"),
        ("gre_mpls", "mpls-non-ip"),
    ],
)
def test_what_is_not_ip_inside_a_tunnel_is_counted(wrap: str, kind: str) -> None:
    """ARP in VXLAN, an MPLS stack over something that is not IP, PPP control protocols: counted
    as frames that are not IP, never as packets."""
    dec, pkt = decode(ETHERNET[wrap](ARP()))
    assert pkt is None and dec.stats.non_ip == {kind: 1} and dec.stats.ip == 0


def test_vlan_tags_in_cooked_and_802_11_frames() -> None:
    """A VLAN tag after a Linux cooked header or an 802.11 LLC/SNAP header is read through."""
    for linktype, wrap in ((113, "sll_vlan"), (127, "vlan_in_snap")):
        _, pkt = decode(LINK_WRAPS[linktype][wrap](INNER), linktype)
        assert pkt is not None and pkt.dport == 443 and pkt.vlan in (9, 12)


@pytest.mark.parametrize(
    ("linktype", "head"),
    [
        (9, b"\xff\x03\x00\x21"),  # RFC 1662 HDLC-like framing, IPv4
        (9, b"\x00\x21"),  # no address and control (RFC 1661 alone)
        (9, b"\x21"),  # protocol field compressed to one byte (RFC 1661 6.5)
        (50, b"\xff\x03\x00\x21"),  # link type 50, PPP in HDLC-like framing
        (50, b"\x0f\x00\x08\x00"),  # link type 50, Cisco HDLC: an EtherType
    ],
)
def test_ppp_links(linktype: int, head: bytes) -> None:
    """PPP captures (a modem's, a cellular link's) lead to the IP packet, however framed."""
    dec, pkt = decode(head + raw(UDP_PAYLOAD), linktype)
    assert pkt is not None and pkt.dport == 443 and pkt.payload == b"hello"
    assert ip_str(pkt.src) == "192.168.1.3" and pkt.tunnel is None
    assert not dec.stats.non_ip and dec.stats.malformed == 0


def test_ppp_ipv6_control_and_truncated_frames() -> None:
    """IPv6 over PPP (0x0057) is read; the link's control protocols (LCP 0xc021) are counted
    as not IP, by protocol; a frame too short for its header is malformed, not raised."""
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5, dport=53) / b"q"
    _, pkt = decode(b"\xff\x03\x00\x57" + raw(v6), 9)
    assert pkt is not None and pkt.ip_version == 6 and pkt.dport == 53
    dec, none = decode(b"\xff\x03\xc0\x21\x01\x01\x00\x04", 9)
    assert none is None and dec.stats.non_ip == {"ppp-0xc021": 1}
    dec, none = decode(b"\xff\x03", 9)
    assert none is None and dec.stats.malformed == 1
    assert LINKTYPE_NAMES[9] == "ppp" and LINKTYPE_NAMES[50] == "ppp-hdlc"
