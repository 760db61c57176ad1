"""The bulk path (the C walk and frame counters of `dronewatch.fastpath`) gives exactly the
per-packet path's records, alerts and coverage."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet

from dronewatch.analyzers.mqtt import MqttRecord
from dronewatch.capture.base import RawPacket
from dronewatch.capture.checksum import CHECKSUM_MODES
from dronewatch.capture.decode import Decoder
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import Engine, EngineOptions
from dronewatch.core.flow import Flow
from dronewatch.core.flow import Packet as DecodedPacket
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, RunResult, run_source
from dronewatch.fastpath import NO_C_ENV
from dronewatch.geoip.maxmind import MaxMindResolver
from dronewatch.judge.classify import Classifier
from dronewatch.judge.policy import Policy
from tests.pcaps import PCAPS, all_captures
from tests.unit.capture.captures import epb, idb, pcap_bytes, shb, spb
from tests.unit.capture.links import LINK_WRAPS

PHONE, CLOUD = "10.77.0.2", "203.0.113.7"
PHONE6, CLOUD6 = "2001:db8::2", "2001:db8:1::7"


def ETH() -> Ether:  # noqa: N802 - reads like the scapy layer it stands for
    return Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")


@functools.cache
def classifier() -> Classifier:
    return Classifier.load()


def config(
    bulk: bool, engine: EngineOptions | None = None, checksums: str = "ignore"
) -> AnalysisConfig:
    return AnalysisConfig(
        policy=Policy().with_ldm(True),
        classifier=classifier(),
        resolver=MaxMindResolver.bundled(),
        engine=engine,
        bulk=bulk,
        checksums=checksums,
    )


def both(
    path: Path, engine: EngineOptions | None = None, checksums: str = "ignore"
) -> tuple[RunResult, RunResult]:
    """Analyze `path` on both paths and assert they agree; return (per-packet, bulk) results."""
    got: dict[bool, list[Record]] = {False: [], True: []}
    results = {
        bulk: run_source(FileSource(str(path)), got[bulk].append, config(bulk, engine, checksums))
        for bulk in (False, True)
    }
    assert got[True] == got[False]
    assert results[True].alerts == results[False].alerts
    assert results[True].capture == results[False].capture
    assert results[False].bulk_packets == 0
    return results[False], results[True]


@pytest.mark.parametrize(
    "capture", [pytest.param(p, id=str(p.relative_to(PCAPS))) for p in all_captures()]
)
def test_every_capture_same_on_both_paths(capture: Path) -> None:
    both(capture)


@pytest.mark.parametrize(
    "capture",
    [
        pytest.param(p, id=str(p.relative_to(PCAPS)))
        for p in all_captures()
        if p.parent.name in ("scenarios", "lab")
    ],
)
def test_a_full_flow_table_evicts_alike_on_both_paths(capture: Path) -> None:
    """With a table of 3 flows, evictions come in the middle of the C walk's windows, between
    packets it counts itself: the records are those of the per-packet path."""
    ref, _ = both(capture, EngineOptions(max_flows=3))
    assert ref.capture.evicted_flows or ref.capture.flows <= 3


def _tcp(
    ts: float, sport: int, flags: str, payload: bytes = b"", **kw: object
) -> tuple[float, bytes]:
    frame = ETH() / IP(src=PHONE, dst=CLOUD) / TCP(sport=sport, dport=443, flags=flags, **kw)
    return ts, raw(frame / payload if payload else frame)


def long_upload(start: float, sport: int, seconds: int) -> list[tuple[float, bytes]]:
    """A TCP upload lasting `seconds`: handshake, 10 data packets and ACKs a second, close."""
    back = ETH() / IP(src=CLOUD, dst=PHONE) / TCP(sport=443, dport=sport, flags="SA")
    frames = [_tcp(start, sport, "S"), (start + 0.01, raw(back)), _tcp(start + 0.02, sport, "A")]
    for i in range(seconds * 10):
        t = start + 0.1 + i * 0.1
        frames.append(_tcp(t, sport, "PA", b"x" * 1200, seq=1 + i * 1200))
        ack = ETH() / IP(src=CLOUD, dst=PHONE) / TCP(sport=443, dport=sport, flags="A")
        frames.append((t + 0.001, raw(ack)))
    end = start + 0.2 + seconds
    fin_back = ETH() / IP(src=CLOUD, dst=PHONE) / TCP(sport=443, dport=sport, flags="FA")
    return [*frames, _tcp(end, sport, "FA"), (end + 0.01, raw(fin_back))]


def test_long_flows_are_counted_in_bulk(tmp_path: Path) -> None:
    """Flows that outlive many sweeps go through the array path, with the same records."""
    frames = sorted(long_upload(1000.0, 40001, 60) + long_upload(1010.5, 40002, 45))
    path = tmp_path / "long.pcap"
    path.write_bytes(pcap_bytes(frames))
    ref, bulk = both(path)
    assert ref.capture.packets == len(frames)
    # All but the first inspected packets of each flow skip the per-packet path.
    assert bulk.bulk_packets > 0.7 * len(frames)  # 0.32 when every body segment was handed over
    assert [a.bytes_out for a in bulk.alerts] == [a.bytes_out for a in ref.alerts]


def test_offloaded_segments_with_zero_ip_length_count_their_bytes(tmp_path: Path) -> None:
    """A segment captured before the sender's NIC cut it (TCP segmentation offload) is larger
    than the MTU and has an IPv4 total length of 0 (`ldap/missing_ldap_logs.pcapng` of Zeek's
    traces): both paths count the IP bytes the packet holds (Zeek's conn-size adds the 0)."""
    frames = long_upload(1000.0, 40001, 1)
    big = ETH() / IP(src=PHONE, dst=CLOUD, len=0) / TCP(sport=40001, dport=443, flags="PA")
    frames.insert(3, (1000.05, raw(big / (b"y" * 3000))))
    path = tmp_path / "tso.pcap"
    path.write_bytes(pcap_bytes(sorted(frames)))
    got: list[Record] = []
    run_source(FileSource(str(path)), got.append, config(False))
    flow = next(r for r in got if r.log == "flows")
    sent = sum(len(f) - 14 for _, f in frames if IP(f[14:]).src == PHONE)
    assert flow.orig_bytes == sent  # type: ignore[attr-defined]
    assert flow.orig_pkts == sum(1 for _, f in frames if IP(f[14:]).src == PHONE)  # type: ignore[attr-defined]
    both(path)


def test_damaged_file_same_on_both_paths(tmp_path: Path) -> None:
    """A file cut inside a record: same packets before the damage, same message."""
    frames = long_upload(1000.0, 40001, 5)
    data = pcap_bytes(frames)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: len(data) - 700])
    ref, bulk = both(path)
    assert ref.capture.errors and "file ends first" in ref.capture.errors[0]
    assert bulk.capture.errors == ref.capture.errors


# Random traffic: a few flows of each kind (TCP, UDP, ICMP, ICMPv6, ESP, VRRP), packets at random
# gaps that cross the sweep, idle and active timeouts, with every TCP flag pattern, non-IP frames
# and fragments; in every link type the walk reads, each packet in a frame of that link type drawn
# at random (VLAN tags, 802.11 data, control and management frames, ERSPAN, GRE, VXLAN, Geneve,
# MPLS, PPPoE, nested ones, and headers that must be left alone: `tests.unit.capture.links`),
# sometimes cut short by the snap length; written as pcap, or as pcapng with two interfaces and
# simple packet blocks.
FLOWS = [
    ("tcp", 4, 40001),
    ("tcp", 4, 40001),
    ("udp", 4, 9003),
    ("tcp", 4, 40002),
    ("tcp", 6, 40003),
    ("udp", 4, 9003),
    ("udp", 6, 50000),
    ("udp", 4, 53),
    ("icmp", 4, 0),
    ("icmp", 6, 0),
    ("esp", 4, 50),
    ("esp", 6, 50),
    ("vrrp", 4, 112),
]
ICMP_TYPES = {  # (type, code) by the event's flags: requests and replies, messages without a pair
    4: {"A": (8, 0), "PA": (0, 0), "S": (13, 0), "SA": (14, 0), "R": (3, 1), "F": (11, 0)},
    6: {"A": (128, 0), "PA": (129, 0), "S": (135, 0), "SA": (136, 0), "R": (1, 4), "F": (2, 0)},
}
"""ICMP and ICMPv6 messages of the random flows: paired types (echo, timestamp, neighbour
discovery) make one flow of both directions, the others one flow each way."""
EVENTS = st.lists(
    st.tuples(
        st.integers(0, len(FLOWS) + 1),  # flow index; the last two: ARP, IPv4 fragment
        st.booleans(),  # from the phone
        st.sampled_from([0.0, 0.001, 0.001, 0.01, 0.3, 1.5, 4.0, 12.0]),  # gap before the packet
        # Mostly data and ACKs, so flows settle and the bulk path has work; handshakes, closes
        # and odd flag sets, many of them empty (the C walk adds an empty segment's letter).
        st.sampled_from(
            ["A", "PA", "PA", "PA", "A", "PA", "PA", "S", "SA", "FA", "R", "F", "SF", "", "RA"]
        ),
        st.sampled_from([0, 0, 1, 12, 40]),  # payload bytes
        st.integers(0, 1000),  # which frame of the link type carries it
        st.sampled_from([None] * 12 + [0, 3, 13, 20, 34, 38, 46, 54, 60, 70, 90]),  # snap length
    ),
    min_size=1,
    max_size=150,
)
LINKTYPES = sorted(LINK_WRAPS)


def body(index: int, out: bool, flags: str, size: int) -> Packet:
    """The packet of event `index` (a flow's, ARP or a later IPv4 fragment), without link layer."""
    if index == len(FLOWS):
        return ARP(psrc=PHONE, pdst="10.77.0.1")
    if index == len(FLOWS) + 1:  # a fragment other than the first
        return IP(src=PHONE, dst=CLOUD, frag=3, proto=17) / b"tail"
    proto, version, port = FLOWS[index]
    src, dst = (PHONE, CLOUD) if version == 4 else (PHONE6, CLOUD6)
    if not out:
        src, dst = dst, src
    l3 = IP(src=src, dst=dst) if version == 4 else IPv6(src=src, dst=dst)
    sport, dport = (port, 443) if out else (443, port)
    if proto in ("esp", "vrrp"):  # protocols without ports: the flow of the two addresses
        if version == 4:
            return IP(src=src, dst=dst, proto=port) / (b"p" * size)
        return IPv6(src=src, dst=dst, nh=port) / (b"p" * size)
    if proto == "icmp":
        kind, code = ICMP_TYPES[version].get(flags, (8, 0) if version == 4 else (128, 0))
        message = bytes([kind, code, 0, 0, 0x12, 0x34, 0, size]) + b"p" * size
        # Its checksum left 0 (the random traffic takes checksums as they come).
        if version == 4:
            return IP(src=src, dst=dst, proto=1) / message
        return IPv6(src=src, dst=dst, nh=58) / message
    if proto == "udp":
        sport, dport = (port, port + 1) if out else (port + 1, port)
        l4 = UDP(sport=sport, dport=dport)
    else:
        l4 = TCP(sport=sport, dport=dport, flags=flags)
    return l3 / l4 / (b"p" * size)


def frame(linktype: int, wrap: int, packet: Packet, snap: int | None) -> bytes:
    wraps = LINK_WRAPS[linktype]
    data = list(wraps.values())[wrap % len(wraps)](packet)
    return data if snap is None else data[:snap]


def write_capture(path: Path, frames: list[tuple[float, bytes]], linktype: int, ng: bool) -> None:
    """`frames` as a pcap file, or as pcapng: interfaces 0 and 1 of `linktype`, each frame in an
    enhanced packet block of one of them, or now and then in a simple packet block (no time)."""
    if not ng:
        path.write_bytes(pcap_bytes(frames, linktype=linktype))
        return
    blocks = [shb(), idb(linktype), idb(linktype)]
    for n, (ts, data) in enumerate(frames):
        if n % 7 == 3:
            blocks.append(spb(data))
        else:
            blocks.append(epb(int(n % 3 == 1), round(ts * 1e6), data))
    path.write_bytes(b"".join(blocks))


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=EVENTS,
    inspect=st.sampled_from([1, 2, 32]),
    linktype=st.sampled_from(LINKTYPES),
    ng=st.booleans(),
    max_flows=st.sampled_from([2, 3, 250_000]),
)
def test_random_traffic_same_on_both_paths(
    tmp_path: Path,
    events: list[tuple[int, bool, float, str, int, int, int | None]],
    inspect: int,
    linktype: int,
    ng: bool,
    max_flows: int,
) -> None:
    """Random traffic in any link type and encapsulation gives the same records on both paths,
    a full flow table evicting flows in the middle of a walk included."""
    ts = 1_700_000_000.0
    frames = []
    for index, out, gap, flags, size, wrap, snap in events:
        ts += gap
        frames.append((ts, frame(linktype, wrap, body(index, out, flags, size), snap)))
    path = tmp_path / ("random.pcapng" if ng else "random.pcap")
    write_capture(path, frames, linktype, ng)
    engine = EngineOptions(
        inspect_packets=inspect,
        udp_idle_s=10.0,
        tcp_idle_s=20.0,
        active_s=30.0,
        sweep_every_s=1.0,
        max_flows=max_flows,
    )
    both(path, engine)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    linktype=st.sampled_from(LINKTYPES),
    frames=st.lists(
        st.tuples(
            st.integers(0, len(FLOWS) + 1),
            st.integers(0, 1000),
            st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
            st.one_of(st.none(), st.integers(0, 120)),
        ),
        min_size=1,
        max_size=60,
    ),
    checksums=st.sampled_from(CHECKSUM_MODES),
)
def test_damaged_frames_same_on_both_paths(
    tmp_path: Path,
    linktype: int,
    frames: list[tuple[int, int, list[tuple[int, int]], int | None]],
    checksums: str,
) -> None:
    """Frames of every link type and carrier with bytes overwritten at random (lengths, flags,
    versions, EtherTypes, so checksums too) and cut anywhere: the walk reads, counts or hands
    over each as the decoder decides, in every `--checksums` mode."""
    out = []
    for n, (index, wrap, flips, cut) in enumerate(frames):
        data = bytearray(frame(linktype, wrap, body(index, n % 2 == 0, "PA", 12), cut))
        for at, value in flips:
            if at < len(data):
                data[at] = value
        out.append((1000.0 + n * 0.01, bytes(data)))
    path = tmp_path / "damaged.pcap"
    write_capture(path, out, linktype, False)
    both(path, EngineOptions(inspect_packets=1), checksums)


@functools.cache
def sessions() -> tuple[Packet, ...]:
    """A TCP upload (handshake, data and ACKs, close) and a UDP exchange, then ARP and a later
    IPv4 fragment: packets without a link layer. Built once, and read back from their bytes so
    that wrapping one in a frame reuses its bytes instead of building it again."""
    up, down = IP(src=PHONE, dst=CLOUD), IP(src=CLOUD, dst=PHONE)
    out: list[Packet] = [
        up / TCP(sport=40001, dport=443, flags="S"),
        down / TCP(sport=443, dport=40001, flags="SA"),
        up / TCP(sport=40001, dport=443, flags="A"),
    ]
    for i in range(12):
        out.append(up / TCP(sport=40001, dport=443, flags="PA", seq=1 + i * 100) / (b"u" * 100))
        out.append(down / TCP(sport=443, dport=40001, flags="A"))
        out.append(IPv6(src=PHONE6, dst=CLOUD6) / UDP(sport=50000, dport=7000) / (b"d" * (i % 9)))
        out.append(IPv6(src=CLOUD6, dst=PHONE6) / UDP(sport=7000, dport=50000) / b"back")
    out.append(up / TCP(sport=40001, dport=443, flags="FA"))
    out.append(down / TCP(sport=443, dport=40001, flags="FA"))
    out.append(ARP(psrc=PHONE, pdst="10.77.0.1"))
    out.append(IP(src=PHONE, dst=CLOUD, frag=3, proto=17) / b"tail")
    return tuple(type(p)(raw(p)) for p in out)


EVERY_FRAME = [
    pytest.param(linktype, name, id=f"{linktype}-{name}")
    for linktype, wraps in sorted(LINK_WRAPS.items())
    for name in wraps
]


@pytest.mark.parametrize(("linktype", "wrap"), EVERY_FRAME)
def test_every_carrier_same_on_both_paths(tmp_path: Path, linktype: int, wrap: str) -> None:
    """Flows started by packets seen directly (past their inspected packets) and carried on in
    one kind of frame (a tag, an encapsulation, one the decoder must leave alone, 802.11 frames
    it only counts) give the same records on both paths, as pcap and as pcapng."""
    wraps = LINK_WRAPS[linktype]
    plain, carrier = next(iter(wraps.values())), wraps[wrap]
    frames = [
        (1000.0 + i * 0.05, (plain if i < 20 else carrier)(p)) for i, p in enumerate(sessions())
    ]
    for ng in (False, True):
        path = tmp_path / ("carried.pcapng" if ng else "carried.pcap")
        write_capture(path, frames, linktype, ng)
        ref, bulk = both(path, EngineOptions(inspect_packets=2))
        assert ref.capture.packets == len(frames)
        if carries_dns(linktype, wrap):
            assert bulk.bulk_packets > 0


@functools.cache
def dns_exchange(n: int) -> tuple[Packet, ...]:
    """`n` DNS queries from the phone and their answers, on one UDP flow (built once per `n`)."""
    out: list[Packet] = []
    for i in range(n):
        query = DNS(id=i, rd=1, qd=DNSQR(qname="mydjiflight.dji.com"))
        answer = DNS(
            id=i,
            qr=1,
            qd=DNSQR(qname="mydjiflight.dji.com"),
            an=DNSRR(rrname="mydjiflight.dji.com", rdata="47.88.0.13"),
        )
        out.append(IP(src=PHONE, dst="10.77.0.1") / UDP(sport=41000, dport=53) / query)
        out.append(IP(src="10.77.0.1", dst=PHONE) / UDP(sport=53, dport=41000) / answer)
    return tuple(out)


def followed(path: Path, bulk: bool, monkeypatch: pytest.MonkeyPatch) -> list[Packet]:
    """The packets the engine hands to the followers of a flow, in order, on one path."""
    seen: list[DecodedPacket] = []
    real = Engine.to_followers

    def spy(self: Engine, flow: Flow, pkt: DecodedPacket) -> None:
        seen.append(pkt)
        real(self, flow, pkt)

    monkeypatch.setattr(Engine, "to_followers", spy)
    engine = EngineOptions(inspect_packets=2)
    run_source(FileSource(str(path)), lambda record: None, config(bulk, engine))
    monkeypatch.setattr(Engine, "to_followers", real)
    return seen  # type: ignore[return-value]


def carries_dns(linktype: int, wrap: str) -> bool:
    """Whether the decoder finds the DNS query in that frame (not an outer packet, not a frame
    it only counts)."""
    data = LINK_WRAPS[linktype][wrap](dns_exchange(1)[0])
    pkt = Decoder().decode(RawPacket(0.0, linktype, data, len(data), 0, 1))
    return pkt is not None and pkt.dport == 53


CARRYING_DNS = [
    pytest.param(linktype, name, id=f"{linktype}-{name}")
    for linktype, wraps in sorted(LINK_WRAPS.items())
    for name in wraps
    if carries_dns(linktype, name)
]


@pytest.mark.parametrize(("linktype", "wrap"), CARRYING_DNS)
def test_followers_get_the_decoders_packets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, linktype: int, wrap: str
) -> None:
    """A followed flow's datagrams that the C walk hands to the followers are the packets the
    per-packet decoder makes (MACs, VLAN, tunnel, payload), in every link type and carrier."""
    frames = [
        (1000.0 + i * 0.01, LINK_WRAPS[linktype][wrap](p)) for i, p in enumerate(dns_exchange(30))
    ]
    path = tmp_path / "dns.pcapng"
    write_capture(path, frames, linktype, ng=True)
    ref = followed(path, False, monkeypatch)
    bulk = followed(path, True, monkeypatch)
    assert len(ref) > 40
    assert bulk == ref


def tcp_exchange() -> tuple[Packet, ...]:
    """A TCP connection over IPv4 and one over IPv6 (handshake, data both ways with options,
    a push, the close), a datagram to another port, ICMP and ICMPv6 echoes and an unreachable
    port: what the walk reads whole."""
    out: list[Packet] = []
    for ip, back in (
        (IP(src=PHONE, dst="10.77.0.9"), IP(src="10.77.0.9", dst=PHONE)),
        (IPv6(src="fd00::2", dst="fd00::9"), IPv6(src="fd00::9", dst="fd00::2")),
    ):
        c, s = 1000, 5000
        out += [
            ip / TCP(sport=40000, dport=8883, flags="S", seq=c, options=[("MSS", 1460)]),
            back / TCP(sport=8883, dport=40000, flags="SA", seq=s, ack=c + 1),
            ip / TCP(sport=40000, dport=8883, flags="A", seq=c + 1, ack=s + 1),
            ip / TCP(sport=40000, dport=8883, flags="PA", seq=c + 1, ack=s + 1) / b"\x10hello",
            back / TCP(sport=8883, dport=40000, flags="A", seq=s + 1, ack=c + 7) / (b"w" * 40),
            ip / TCP(sport=40000, dport=8883, flags="FA", seq=c + 7, ack=s + 41),
            back / TCP(sport=8883, dport=40000, flags="FA", seq=s + 41, ack=c + 8),
            ip / UDP(sport=40001, dport=9999) / b"datagram",
        ]
    out += [  # ICMP echo both ways, a message without a pair, and ICMPv6's
        IP(src=PHONE, dst="10.77.0.9") / ICMP(type=8, id=7, seq=1) / b"ping",
        IP(src="10.77.0.9", dst=PHONE) / ICMP(type=0, id=7, seq=1) / b"ping",
        IP(src="10.77.0.1", dst=PHONE) / ICMP(type=3, code=1) / (b"\x45" + bytes(27)),
        IPv6(src="fd00::2", dst="fd00::9") / ICMPv6EchoRequest(id=7, data=b"ping"),
        IPv6(src="fd00::9", dst="fd00::2") / ICMPv6EchoReply(id=7, data=b"ping"),
    ]
    return tuple(out)


def handed(path: Path, bulk: bool, monkeypatch: pytest.MonkeyPatch) -> dict[int, Packet]:
    """The packets the engine is handed, by frame, on one path."""
    seen: dict[int, DecodedPacket] = {}
    real = Engine.process

    def spy(self: Engine, pkt: DecodedPacket) -> None:
        seen[pkt.frame] = pkt
        real(self, pkt)

    monkeypatch.setattr(Engine, "process", spy)
    run_source(FileSource(str(path)), lambda record: None, config(bulk))
    monkeypatch.setattr(Engine, "process", real)
    return seen  # type: ignore[return-value]


@pytest.mark.parametrize(("linktype", "wrap"), CARRYING_DNS)
def test_the_walk_hands_over_the_decoders_packets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, linktype: int, wrap: str
) -> None:
    """Every packet the C walk hands to the engine (a flow's first packets, TCP control
    segments, what its analyzers read) is the packet the per-packet decoder makes of its frame,
    every field of it (an encapsulated packet's `Tunnel` too), in every link type and carrier,
    TCP, UDP and ICMP over IPv4 and IPv6, whether the walk made it or the decoder did (a carrier
    the walk leaves to the decoder)."""
    frames = [
        (1000.0 + i * 0.01, LINK_WRAPS[linktype][wrap](p))
        for i, p in enumerate((*tcp_exchange(), *dns_exchange(3)))
    ]
    path = tmp_path / "mixed.pcapng"
    write_capture(path, frames, linktype, ng=True)
    ref = handed(path, False, monkeypatch)
    bulk = handed(path, True, monkeypatch)
    assert len(bulk) > 12 and set(bulk) <= set(ref)
    assert {frame: ref[frame] for frame in bulk} == bulk


def test_flow_cut_by_active_timeout_within_a_segment(tmp_path: Path) -> None:
    """Packets counted in bulk reach their flow before a later packet of it ends the flow."""
    frames = [
        (1000.0 + i, raw(ETH() / IP(src=PHONE, dst=CLOUD) / UDP(sport=50000, dport=7000) / b"d"))
        for i in range(40)
    ]
    path = tmp_path / "active.pcap"
    path.write_bytes(pcap_bytes(frames))
    engine = EngineOptions(inspect_packets=1, active_s=30.0, udp_idle_s=100.0, sweep_every_s=500.0)
    ref, bulk = both(path, engine)
    assert bulk.bulk_packets > 30


def test_no_c_switch_runs_every_packet_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRONEWATCH_NO_C set: no packet is counted in bulk, and the records are the same."""
    path = PCAPS / "scenarios" / "dji_fly_ldm_on_violation.pcap"
    with_c: list[Record] = []
    assert run_source(FileSource(str(path)), with_c.append, config(True)).bulk_packets > 0
    monkeypatch.setenv(NO_C_ENV, "1")
    without: list[Record] = []
    assert run_source(FileSource(str(path)), without.append, config(True)).bulk_packets == 0
    assert without == with_c


def http_keep_alive(lose: int | None = None) -> list[tuple[float, bytes]]:
    """A keep-alive HTTP connection: a GET answered with a 150,000-byte body in 1,448-byte
    segments (the client acknowledging every second one), then a second GET and its short
    answer, then the close; `lose`: the index of a body segment the capture misses (its bytes
    acknowledged all the same)."""
    sport, c, s = 40100, 1000, 5000
    t = 2000.0
    frames: list[tuple[float, bytes]] = []

    def up(flags: str, payload: bytes = b"") -> None:
        nonlocal t, c
        t += 0.001
        seg = (
            ETH() / IP(src=PHONE, dst=CLOUD) / TCP(sport=sport, dport=80, flags=flags, seq=c, ack=s)
        )
        frames.append((t, raw(seg / payload if payload else seg)))
        c += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    def down(flags: str, payload: bytes = b"", keep: bool = True) -> None:
        nonlocal t, s
        t += 0.001
        seg = (
            ETH() / IP(src=CLOUD, dst=PHONE) / TCP(sport=80, dport=sport, flags=flags, seq=s, ack=c)
        )
        if keep:
            frames.append((t, raw(seg / payload if payload else seg)))
        s += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    up("S")
    down("SA")
    up("A")
    for n, (path, body) in enumerate(
        ((b"/tiles/1", bytes(range(256)) * 585 + b"x" * 240), (b"/db", b"ok"))
    ):
        up("PA", b"GET " + path + b" HTTP/1.1\r\nHost: tiles.example\r\n\r\n")
        message = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        for i in range(0, len(message), 1448):
            down(
                "PA" if i + 1448 >= len(message) else "A",
                message[i : i + 1448],
                keep=n or i // 1448 != lose,
            )
            if (i // 1448) % 2:
                up("A")
        up("A")
    up("FA")
    down("FA")
    up("A")
    return frames


@pytest.mark.parametrize(("lose", "counted"), [(None, 0.7), (60, 0.7), (20, 0.3)])
def test_http_bodies_are_passed_over_by_the_walk(
    tmp_path: Path, lose: int | None, counted: float
) -> None:
    """Past the inspected packets, the body of an HTTP response of known length is passed over
    (`Flow.pass_over`): the C walk counts its segments itself, the second request on the
    connection is read where the body ends, and the records are the per-packet path's, a lost
    segment inside the body included (counted in the body's length, as a gap's bytes are). A
    segment lost while the flow is still inspected (20) leaves the stream waiting at the hole
    until the client's next request gives it up (its bare ACKs do not), so the walk hands the
    body over as before (about 0.32 of the packets counted in C when nothing was passed over)."""
    frames = http_keep_alive(lose)
    path = tmp_path / "keepalive.pcap"
    path.write_bytes(pcap_bytes(frames))
    got: list[Record] = []
    ref, bulk = both(path)
    run_source(FileSource(str(path)), got.append, config(True))
    http = [r.to_dict() for r in got if r.log == "http"]
    assert [(h["uri"], h["response_body_len"]) for h in http] == [("/tiles/1", 150_000), ("/db", 2)]
    # Past the inspected packets (32), the walk counts the body's segments, the client's ACKs too.
    assert bulk.bulk_packets > counted * len(frames)
    flow = next(r.to_dict() for r in got if r.log == "flows")
    assert flow["missed_bytes"] == (1448 if lose is not None else 0)


MQTT_TWISTS = ("lost", "swapped", "split", "merged", "new_topic", "alias", "retransmitted")


def mqtt_session(twist: str | None = None, level: int = 4) -> list[tuple[float, bytes]]:
    """An MQTT telemetry connection (3.1.1, or 5.0 with a property on every publish): CONNECT,
    CONNACK, SUBSCRIBE, then 300 OSD publishes a tenth of a second apart with the broker's ACKs,
    a QoS 1 event and its PUBACK every 50th, a PINGREQ and PINGRESP, then the close. `twist`:
    what happens past the inspected packets: `lost` (a publish the capture misses, its bytes
    acknowledged), `swapped` (two publishes captured in the wrong order), `split` (a publish cut
    over two segments), `merged` (two publishes in one segment), `new_topic` (a topic first seen
    late), `alias` (5.0: a topic alias set, then used), `retransmitted` (a publish sent twice)."""
    from tests.unit.analyzers.test_mqtt import connect, packet, publish, s

    sport, c, b = 41883, 1000, 9000
    t = 3000.0
    frames: list[tuple[float, bytes]] = []
    held: list[tuple[float, bytes]] = []

    def seg(up: bool, flags: str, payload: bytes = b"", seq: int | None = None) -> bytes:
        src, dst, sp, dp = (PHONE, CLOUD, sport, 1883) if up else (CLOUD, PHONE, 1883, sport)
        tcp = TCP(sport=sp, dport=dp, flags=flags, seq=seq if seq is not None else (c if up else b))
        tcp.ack = b if up else c
        frame = ETH() / IP(src=src, dst=dst) / tcp
        return raw(frame / payload if payload else frame)

    def send(up: bool, flags: str, payload: bytes = b"", keep: bool = True) -> None:
        nonlocal t, c, b
        t += 0.1 if up and payload else 0.001
        if keep:
            frames.append((t, seg(up, flags, payload)))
        if up:
            c += len(payload) + (1 if "S" in flags or "F" in flags else 0)
        else:
            b += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    props = b"\x01\x01" if level == 5 else b""  # payload format indicator: UTF-8
    osd = "thing/product/1581F5FHD22AB00D0123/osd"
    send(True, "S")
    send(False, "SA")
    send(True, "A")
    send(True, "PA", connect("pilot2-rc-5YSZL9A00100AB", level))
    send(False, "PA", packet(0x20, b"\x00\x00" + (b"\x00" if level == 5 else b"")))
    subscribe = b"\x00\x01" + (b"\x00" if level == 5 else b"") + s("thing/product/5YS/services")
    send(True, "PA", packet(0x82, subscribe + b"\x01"))
    for i in range(300):
        body = b'{"seq":%d,"lat":47.39,"lon":8.54,"height":%d}' % (i, 100 + i % 7)
        message = publish(osd, body, level=level, props=props)
        if i % 50 == 49:
            message = publish("thing/product/5YS/events", b"{}", qos=1, level=level, props=props)
        if i == 120 and twist == "new_topic":
            message = publish("thing/product/5YS/state", body, level=level, props=props)
        if i in (120, 121) and twist == "alias":
            alias = b"\x23\x00\x07"  # topic alias 7: set with the topic, then used alone
            message = publish(osd if i == 120 else "", body, level=level, props=props + alias)
        if i == 120 and twist == "merged":
            message += publish(osd, body, level=level, props=props)
        if i == 120 and twist == "split":
            send(True, "A", message[:9])
            send(True, "PA", message[9:])
        elif i == 120 and twist == "swapped":
            held.append((t + 0.1, seg(True, "PA", message)))
            send(True, "PA", message, keep=False)
        elif i == 121 and twist == "swapped":
            send(True, "PA", message)
            frames.append((t + 0.0005, held.pop()[1]))
        elif i == 120 and twist == "retransmitted":
            send(True, "PA", message)
            frames.append((t + 0.05, seg(True, "PA", message, seq=c - len(message))))
        else:
            send(True, "PA", message, keep=not (i == 120 and twist == "lost"))
        if i % 50 == 49:
            send(False, "PA", packet(0x40, b"\x00\x01"))  # PUBACK
        elif i % 2:
            send(False, "A")
    send(True, "PA", b"\xc0\x00")  # PINGREQ
    send(False, "PA", b"\xd0\x00")  # PINGRESP
    send(True, "FA")
    send(False, "FA")
    send(True, "A")
    return sorted(frames)


@pytest.mark.parametrize(
    ("twist", "level"),
    [(None, 4), (None, 5), *((twist, 5 if twist == "alias" else 4) for twist in MQTT_TWISTS)],
)
def test_mqtt_publishes_are_counted_by_the_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, twist: str | None, level: int
) -> None:
    """Past the inspected packets, the segments of a followed MQTT flow that hold only packets
    its analyzer would merely count go to the flow's C counter (`MqttCounter`) in the walk
    itself; whatever it refuses (a new topic, an alias, a packet cut over segments, bytes after a
    hole or out of order, a retransmission) reaches the analyzer. The records are the per-packet
    path's and those of the analyzer alone, without the extension."""
    frames = mqtt_session(twist, level)
    path = tmp_path / "mqtt.pcap"
    path.write_bytes(pcap_bytes(frames))
    got: list[Record] = []
    ref, bulk = both(path)
    run_source(FileSource(str(path)), got.append, config(True))
    monkeypatch.setenv(NO_C_ENV, "1")
    alone: list[Record] = []
    run_source(FileSource(str(path)), alone.append, config(False))
    assert got == alone
    mqtt = {(r.msg_type, r.topic): r for r in got if isinstance(r, MqttRecord)}
    osd = mqtt[("publish", "thing/product/1581F5FHD22AB00D0123/osd")]
    # 294 OSD publishes (the aliased two resolved to their topic), give or take the twist's.
    extra = {"lost": -1, "new_topic": -1, "merged": 1}.get(twist or "", 0)
    assert osd.publishes == 294 + extra
    assert mqtt[("publish", "thing/product/5YS/events")].publishes == 6
    # The OSD publishes past the inspected packets are counted in C.
    assert bulk.bulk_packets > 0.8 * len(frames)


def test_an_unknown_udp_flow_leaves_inspection_early(tmp_path: Path) -> None:
    """A phone's RTP call to a public address (no protocol any analyzer reads): QUIC and DTLS
    give it up at its first datagram, MAVLink, Tello and Parrot after their probe, so the C walk
    counts the rest instead of the first 32 going to every UDP analyzer; same records."""
    rtp = bytes.fromhex("80600001") + bytes(8) + b"\x00" * 160
    frames = [
        (
            1000.0 + i * 0.02,
            raw(ETH() / IP(src=PHONE, dst=CLOUD) / UDP(sport=40000, dport=5004) / rtp),
        )
        for i in range(200)
    ]
    path = tmp_path / "rtp.pcap"
    path.write_bytes(pcap_bytes(frames))
    _, bulk = both(path)
    assert bulk.bulk_packets >= 200 - 8  # 168 while each analyzer waited for the 32nd datagram


def test_control_segments_are_accounted_by_the_walk(tmp_path: Path) -> None:
    """The walk runs the TCP state machine itself on the segments without payload that change a
    connection's state (the SYN-ACK, the first bare ACK of each end, the FINs, the ACK after the
    close): of each connection only its first segment, which makes the flow, goes to the engine,
    which sets the close timers the FINs call for when the walk asks. Same records and histories
    as the per-packet path."""
    frames: list[tuple[float, bytes]] = []
    for n in range(20):
        sport, t = 42000 + n, 1000.0 + n
        up = ETH() / IP(src=PHONE, dst=CLOUD)
        down = ETH() / IP(src=CLOUD, dst=PHONE)
        for dt, side, flags, seq, ack in (
            (0.000, up, "S", 100, 0),
            (0.001, down, "SA", 500, 101),
            (0.002, up, "A", 101, 501),  # the originator's first bare ACK: A
            (0.003, down, "A", 501, 101),  # the responder's: a
            (0.004, up, "A", 101, 501),  # no letter: counted as before
            (0.005, up, "FA", 101, 501),
            (0.006, down, "FA", 501, 102),
            (0.007, up, "A", 102, 502),
        ):
            sp, dp = (sport, 443) if side is up else (443, sport)
            tcp = TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack)
            frames.append((t + dt, raw(side / tcp)))
    path = tmp_path / "handshakes.pcap"
    path.write_bytes(pcap_bytes(frames))
    got: list[Record] = []
    _, bulk = both(path)
    run_source(FileSource(str(path)), got.append, config(True))
    ended = flows(got)
    assert {(f["history"], f["conn_state"], f["end_reason"]) for f in ended} == {
        ("ShAaFf", "SF", "tcp_close")
    }
    assert {f["duration_s"] for f in ended} == {0.006}  # the ACK after both FINs is not counted
    assert bulk.bulk_packets == 7 * 20  # 1 a flow when the engine ran the state machine


def test_unread_data_that_retransmits_or_meets_a_hole_is_accounted_by_the_walk(
    tmp_path: Path,
) -> None:
    """Past its inspected packets, a flow nobody follows only has its counters and its TCP state
    to keep: the walk runs the state machine itself on the data segments its plain counting
    leaves (the retransmission that writes `T`, data above a hole, the ACK that reveals the gap
    and writes `G`). Only the SYN and the inspected payload packets reach the engine."""
    up = ETH() / IP(src=PHONE, dst=CLOUD)
    down = ETH() / IP(src=CLOUD, dst=PHONE)
    frames: list[tuple[float, bytes]] = []
    t = 1000.0

    def send(is_up: bool, flags: str, seq: int, ack: int, data: bytes = b"") -> None:
        nonlocal t
        t += 0.001
        sp, dp = (41000, 7000) if is_up else (7000, 41000)
        frames.append(
            (
                t,
                raw(
                    (up if is_up else down)
                    / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack)
                    / data
                ),
            )
        )

    send(True, "S", 100, 0)
    send(False, "SA", 900, 101)
    seq = 101
    for n in range(40):  # 32 inspected, then 8 only counted
        send(True, "PA", seq, 901, bytes([n % 250 + 1]) * 500)
        seq += 500
        send(False, "A", 901, seq)
    send(True, "PA", seq - 500, 901, b"\x01" * 500)  # a retransmission: T
    send(True, "PA", seq + 500, 901, b"\x02" * 500)  # above a hole of 500 bytes
    send(False, "A", 901, seq + 1000)  # past the hole: a gap, G
    send(True, "FA", seq + 1000, 901)
    send(False, "FA", 901, seq + 1001)
    send(True, "A", seq + 1001, 902)
    path = tmp_path / "unread.pcap"
    path.write_bytes(pcap_bytes(frames))
    _, bulk = both(path)
    got: list[Record] = []
    run_source(FileSource(str(path)), got.append, config(True))
    (flow,) = flows(got)
    assert "T" in flow["history"] and "G" in flow["history"]
    assert flow["missed_bytes"] == 500
    assert bulk.bulk_packets == len(frames) - 1 - 32


def flows(records: list[Record]) -> list[dict[str, Any]]:
    """The flows records among `records`, as dicts."""
    return [r.to_dict() for r in records if r.log == "flows"]


def test_walk_hands_over_at_the_close_timer_and_on_reuse(tmp_path: Path) -> None:
    """What the walk leaves to the engine after a close: a segment once the close timer is due
    (the engine ends the flow there and the segment starts a new one), a SYN that reuses the
    5-tuple, a half-closed connection looked at again (`session_s`), a reset."""
    up = ETH() / IP(src=PHONE, dst=CLOUD)
    down = ETH() / IP(src=CLOUD, dst=PHONE)
    frames: list[tuple[float, bytes]] = []

    def conn(sport: int, t: float, steps: tuple[tuple[float, bool, str, int, int], ...]) -> None:
        for dt, is_up, flags, seq, ack in steps:
            sp, dp = (sport, 443) if is_up else (443, sport)
            tcp = TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack)
            frames.append((t + dt, raw((up if is_up else down) / tcp)))

    hello = ((0.0, True, "S", 100, 0), (0.001, False, "SA", 500, 101), (0.002, True, "A", 101, 501))
    closed = ((0.003, True, "FA", 101, 501), (0.004, False, "FA", 501, 102))
    # An ACK within the linger (counted in the flow), then one past it: a new flow.
    conn(40000, 1000.0, (*hello, *closed, (1.0, True, "A", 102, 502), (9.0, True, "A", 102, 502)))
    # A new SYN on the 5-tuple of a closed connection: reuse, a new flow at once.
    conn(40001, 1000.0, (*hello, *closed, (0.5, True, "S", 9000, 0)))
    # One end closes; the other keeps sending ACKs past session_s: looked at again and again.
    half = tuple((2.0 * k, False, "A", 501, 102) for k in range(1, 12))
    conn(40002, 1000.0, (*hello, (0.003, True, "FA", 101, 501), *half))
    # A reset, then the peer's ACKs.
    conn(40003, 1000.0, (*hello, (0.003, True, "R", 101, 0), (0.5, False, "A", 501, 101)))
    frames.sort()
    path = tmp_path / "closes.pcap"
    path.write_bytes(pcap_bytes(frames))
    # Sweeps far apart: the timers act at the flows' own packets, not at a sweep before them.
    engine = EngineOptions(sweep_every_s=100.0)
    per_packet, bulk = both(path, engine)
    assert bulk.bulk_packets > 0
    got: list[Record] = []
    run_source(FileSource(str(path)), got.append, config(True, engine))
    ends = sorted((f["orig_p"], f["end_reason"]) for f in flows(got))
    assert ends == [
        (40000, "eof"),  # the lone ACK past the linger: a flow of its own
        (40000, "tcp_close"),  # with the ACK within the linger
        (40001, "eof"),  # the new SYN, unanswered (no sweep came to end the attempt)
        (40001, "reuse"),
        (40002, "eof"),  # still sending when the capture ends
        (40003, "tcp_close"),
    ]
    half = next(f for f in flows(got) if f["orig_p"] == 40002)
    assert (half["resp_pkts"], half["duration_s"]) == (12, 22.0)
