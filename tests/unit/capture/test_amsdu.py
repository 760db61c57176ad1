"""802.11 A-MSDUs (IEEE 802.11-2020 9.3.2.2.2): one frame, several packets, each read as its own,
as tshark reads them; in 802.11 captures with and without radiotap and in GRE from an Aruba
access point (Zeek's `gre-aruba-amsdu.pcap` is held to Zeek's logs by tests/golden/test_zeek.py)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP
from scapy.packet import Packet

from dronewatch.capture.base import RawPacket
from dronewatch.capture.decode import Decoder
from dronewatch.capture.encap import is_aruba_wlan
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import EngineOptions
from dronewatch.core.flow import Packet as Decoded
from dronewatch.core.flow import ip_str, mac_str
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import run_source
from dronewatch.judge.flowlog import FlowRecord
from tests.unit.capture.captures import pcap_bytes
from tests.unit.capture.links import _aruba, amsdu_subframes, dot11, msdu, radiotap
from tests.unit.fastpath.test_bulk import both, write_capture

PHONE, CLOUD = "10.77.0.2", "47.88.0.13"
SIZES = (0, 1, 2, 3, 6)
"""UDP payloads of the subframes: MSDUs of 36 to 42 bytes, every remainder of 4 (the padding
after each but the last subframe depends on it)."""


def senders(n: int) -> list[bytes]:
    """A source MAC per subframe."""
    return [bytes.fromhex(f"02000000aa{i:02x}") for i in range(n)]


def frame_of(*msdus: bytes, macs: list[bytes] | None = None) -> bytes:
    """A from-DS QoS data frame whose A-MSDU holds `msdus`, each from its own MAC."""
    macs = macs or senders(len(msdus))
    subframes = b""
    for i, (data, mac) in enumerate(zip(msdus, macs, strict=True)):
        sub = amsdu_subframes(data, sa=mac)
        subframes += sub if i == len(msdus) - 1 else sub + b"\x00" * (-len(sub) % 4)
    return dot11(subframes, 0, ds=2, qos=True, amsdu=True)


LINKS: dict[str, tuple[int, Callable[[bytes], bytes]]] = {
    "dot11": (105, lambda f: f),
    "radiotap_fcs": (127, lambda f: radiotap(f, fcs=True)),
    "gre_aruba": (1, _aruba),
}


def datagrams() -> list[Packet]:
    return [
        IP(src=PHONE, dst=CLOUD) / UDP(sport=40000 + i, dport=40100) / (b"x" * size)
        for i, size in enumerate(SIZES)
    ]


def decode_all(data: bytes, linktype: int) -> tuple[Decoder, list[Decoded]]:
    """Every packet the decoder makes of one frame: the one it returns, then `more`."""
    dec = Decoder()
    pkt = dec.decode(RawPacket(1.0, linktype, data, len(data), 0, 1))
    if pkt is None:
        assert dec.more is None
        return dec, []
    return dec, [pkt, *(dec.more or ())]


@pytest.mark.parametrize("link", sorted(LINKS))
def test_every_msdu_is_a_packet_of_its_own(link: str) -> None:
    """Each subframe's MSDU is a packet with the subframe's own source address, in order, the
    padding after each (every remainder of 4) passed over and none after the last."""
    linktype, wrap = LINKS[link]
    macs = senders(len(SIZES))
    data = wrap(frame_of(*(msdu(p) for p in datagrams()), macs=macs))
    dec, packets = decode_all(data, linktype)
    assert [(p.sport, len(p.payload)) for p in packets] == [
        (40000 + i, size) for i, size in enumerate(SIZES)
    ]
    assert [p.src_mac for p in packets] == macs
    assert {mac_str(p.dst_mac) for p in packets} == {"0c:84:dc:00:00:02"}
    assert {(ip_str(p.src), ip_str(p.dst), p.frame) for p in packets} == {(PHONE, CLOUD, 1)}
    assert dec.stats.ip == len(SIZES) and not dec.stats.non_ip and dec.stats.malformed == 0
    assert all(p.raw == data for p in packets)
    tunnels = {(p.tunnel.kind, ip_str(p.tunnel.src)) if p.tunnel else None for p in packets}
    assert tunnels == ({("gre", "192.0.2.10")} if link == "gre_aruba" else {None})


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("link", sorted(LINKS))
def test_the_packets_are_those_tshark_reads(tmp_path: Path, link: str) -> None:
    """Another reading of the same frames: tshark's 802.11 dissector finds the same datagrams,
    source MACs and payload lengths."""
    linktype, wrap = LINKS[link]
    frames = [wrap(frame_of(*(msdu(p) for p in datagrams()[: n + 1]))) for n in range(len(SIZES))]
    path = tmp_path / "amsdu.pcap"
    path.write_bytes(pcap_bytes([(1.0 + i, f) for i, f in enumerate(frames)], linktype=linktype))
    fields = ("udp.srcport", "udp.length", "wlan.sa")
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;"]
        + [arg for f in fields for arg in ("-e", f)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = []
    for line in out.splitlines():
        ports, lengths, _ = (col.split(";") for col in line.split("\t"))
        theirs.append([(int(p), int(n) - 8) for p, n in zip(ports, lengths, strict=True)])
    ours = [[(p.sport, len(p.payload)) for p in decode_all(f, linktype)[1]] for f in frames]
    assert ours == theirs and len(theirs) == len(SIZES)


def test_a_first_msdu_that_is_not_ip_is_counted_and_the_next_returned() -> None:
    """MSDUs that are not IP (ARP, a frame without LLC/SNAP) are counted as the decoder counts
    them anywhere; the packets of the others are still made."""
    udp = IP(src=PHONE, dst=CLOUD) / UDP(sport=5353, dport=5353) / b"m"
    data = frame_of(b"\x42\x42\x03\x00", msdu(ARP(psrc=PHONE)), msdu(udp))
    dec, packets = decode_all(data, 105)
    assert [p.sport for p in packets] == [5353] and dec.more is None
    assert dec.stats.non_ip == {"dot11-non-snap": 1, "arp": 1}


def test_a_subframe_the_capture_cut_gives_what_was_captured() -> None:
    """A frame cut by the snap length inside a subframe's payload gives that packet as captured
    (its payload short, its length from its headers) and ends there; cut inside a subframe's
    header, the frame ends before it; cut inside its packet's headers, that packet is malformed,
    as a frame cut there would be, and the packets before it are kept."""
    whole = frame_of(*(msdu(p) for p in datagrams()))
    fourth = 26 + 3 * 52  # the MAC header, then three subframes padded to 52 bytes
    dec, packets = decode_all(whole[: fourth + 14 + 36 + 1], 105)
    assert [p.sport for p in packets] == [40000, 40001, 40002, 40003]
    assert packets[-1].payload == b"x" and packets[-1].payload_len == 3
    dec, packets = decode_all(whole[: fourth + 10], 105)
    assert [p.sport for p in packets] == [40000, 40001, 40002] and dec.stats.malformed == 0
    dec, packets = decode_all(whole[: fourth + 14 + 30], 105)
    assert [p.sport for p in packets] == [40000, 40001, 40002] and dec.stats.malformed == 1


def test_aruba_protocol_types() -> None:
    """The GRE protocol types of Aruba's 802.11 tunnels, and their neighbours that are not."""
    assert all(is_aruba_wlan(t) for t in (0x8200, 0x8240, 0x82F0, 0x8300, 0x8370, 0x9000))
    assert not any(is_aruba_wlan(t) for t in (0x8201, 0x8380, 0x81F0, 0x9010, 0x0800, 0x88BE))


def test_records_are_the_same_on_both_paths(tmp_path: Path) -> None:
    """A DNS lookup and a TCP session whose packets travel two or three to an A-MSDU (the
    walk hands such frames to the decoder): every packet is in its flow, on both paths."""
    lookup = [
        IP(src=PHONE, dst="10.77.0.1") / UDP(sport=41000, dport=53) / DNS(qd=DNSQR(qname="a.b")),
        IP(src="10.77.0.1", dst=PHONE) / UDP(sport=53, dport=41000) / DNS(qr=1, qd=DNSQR()),
    ]
    up, down = IP(src=PHONE, dst=CLOUD), IP(src=CLOUD, dst=PHONE)
    session = [up / TCP(sport=40000, dport=443, flags="S", seq=1)]
    session.append(down / TCP(sport=443, dport=40000, flags="SA", seq=9, ack=2))
    session += [
        up / TCP(sport=40000, dport=443, flags="PA", seq=2 + 5 * i, ack=10) / b"hello"
        for i in range(30)
    ]
    packets = [*lookup, *session]
    frames, i = [], 0
    while i < len(packets):
        take = 2 + i % 2
        frames.append(frame_of(*(msdu(p) for p in packets[i : i + take])))
        i += take
    path = tmp_path / "amsdu.pcap"
    path.write_bytes(pcap_bytes([(1000.0 + n, f) for n, f in enumerate(frames)], linktype=105))
    ref, bulk = both(path, EngineOptions(inspect_packets=2))
    assert ref.capture.packets == len(frames) and ref.capture.ip_packets == len(packets)
    records: list[Record] = []
    run_source(FileSource(str(path)), records.append)
    flows = [r for r in records if isinstance(r, FlowRecord)]
    assert sorted(r.orig_pkts + r.resp_pkts for r in flows) == [2, len(session)]
    assert bulk.capture.ip_packets == len(packets)


def subframe(kind: int, size: int, n: int) -> bytes:
    """An MSDU of kind `kind`: a TCP segment or a UDP datagram of one of a few flows, ARP, or a
    frame without LLC/SNAP."""
    up = IP(src=PHONE, dst=CLOUD)
    if kind == 0:
        return msdu(up / UDP(sport=40000 + n % 3, dport=9000) / (b"u" * size))
    if kind == 1:
        return msdu(up / TCP(sport=41000, dport=443, flags="PA", seq=1 + n * 64) / (b"t" * size))
    if kind == 2:
        return msdu(ARP(psrc=PHONE))
    return b"\x42\x42\x03" + b"\x00" * size


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    link=st.sampled_from(sorted(LINKS)),
    frames=st.lists(
        st.tuples(
            st.lists(
                st.tuples(st.sampled_from([0, 0, 1, 1, 2, 3]), st.integers(0, 40)), max_size=5
            ),
            st.lists(st.tuples(st.integers(0, 160), st.integers(0, 255)), max_size=2),
            st.one_of(st.none(), st.integers(0, 200)),
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_any_a_msdu_gives_the_same_records_on_both_paths(
    tmp_path: Path,
    link: str,
    frames: list[tuple[list[tuple[int, int]], list[tuple[int, int]], int | None]],
) -> None:
    """A-MSDUs of any make (IP packets, ARP, frames without LLC/SNAP, every padding, none at
    all), bytes overwritten and cut anywhere: the C walk reads the ones it can whole and hands
    the rest to the decoder, and the records are the per-packet path's."""
    linktype, wrap = LINKS[link]
    out = []
    for n, (parts, flips, cut) in enumerate(frames):
        data = bytearray(wrap(frame_of(*(subframe(k, size, n) for k, size in parts))))
        for at, value in flips:
            if at < len(data):
                data[at] = value
        out.append((1000.0 + n * 0.01, bytes(data if cut is None else data[:cut])))
    path = tmp_path / "amsdu.pcap"
    write_capture(path, out, linktype, False)
    both(path, EngineOptions(inspect_packets=1))
