"""The engine's bound on inspection while every analyzer waits (`EngineOptions.stall_packets`)."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP

from dronewatch.analyzers.http import HttpAnalyzer
from dronewatch.analyzers.tls import TlsAnalyzer, TlsRecord
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import Engine, EngineOptions
from dronewatch.core.flow import TCP_ACK, Flow, Packet
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import run_source
from dronewatch.judge.flowlog import FlowRecord, flow_record
from tests.factories import RecordingContext, make_udp
from tests.pcaps import PCAPS
from tests.unit.analyzers.test_tls import full_handshake
from tests.unit.analyzers.test_tls_hello import make_certificate, record, spec_hello
from tests.unit.capture.captures import pcap_bytes
from tests.unit.core.tcpconv import TcpConversation
from tests.unit.fastpath.test_bulk import CLOUD, ETH, PHONE, both, config

UNBOUNDED = EngineOptions(stall_packets=0, stall_bytes=0)


@pytest.fixture(scope="module")
def certdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a throw-away server certificate."""
    directory = tmp_path_factory.mktemp("tls")
    make_certificate(directory)
    return directory


def upload(size: int = 1200) -> bytes:
    """An application-data record, as a client sends once it thinks the handshake is done."""
    return b"\x17\x03\x03" + (size - 5).to_bytes(2, "big") + b"\x5a" * (size - 5)


def stalled_tls(segments: int) -> list[Packet]:
    """A TLS connection whose ServerHello never comes: a ClientHello, then `segments` uploads,
    each acknowledged by the server, which sends nothing else."""
    conv = TcpConversation()
    packets = [*conv.handshake(), conv.send(record(spec_hello())), conv.ack(from_client=False)]
    for _ in range(segments):
        packets += [conv.send(upload()), conv.ack(from_client=False)]
    return packets


def run(
    packets: list[Packet], options: EngineOptions | None = None, *, http: bool = False
) -> tuple[Flow, list[Record]]:
    """The packets through an engine with the TLS analyzer (and HTTP's): the flow, and every
    record."""
    ctx = RecordingContext()
    analyzers: list[TlsAnalyzer | HttpAnalyzer] = [TlsAnalyzer(ctx)]
    if http:
        analyzers.append(HttpAnalyzer(ctx))
    engine = Engine(analyzers, ctx, options)
    for pkt in packets:
        engine.process(pkt)
    (flow,) = engine.flows.values()
    engine.finish()
    return flow, ctx.records


def test_client_hello_without_server_hello_stops_after_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ClientHello and no ServerHello: the TLS analyzer is handed `stall_packets` uploads
    while it waits, then nothing more, and the flow's record says who waited for what."""
    seen: list[int] = []
    packet = TlsAnalyzer.packet

    def spy(self: TlsAnalyzer, flow: Flow, pkt: Packet) -> None:
        seen.append(pkt.frame)
        packet(self, flow, pkt)

    monkeypatch.setattr(TlsAnalyzer, "packet", spy)
    flow, records = run(stalled_tls(20), EngineOptions(stall_packets=6))
    assert len(seen) == 1 + 6  # the ClientHello, then six uploads while it waits
    assert flow.inspector_names == () and flow.stream is None
    assert flow.inspection == "stopped: tls waited for ServerHello (6 packets, 7200 bytes)"
    assert flow_record(flow).inspection == flow.inspection
    # The TLS record is still written at the flow's end, with what the hello said.
    (tls,) = [r for r in records if isinstance(r, TlsRecord)]
    assert tls.server_name == "example.org" and not tls.established


def test_stalled_flow_records_change_only_by_the_field() -> None:
    """The default bound changes a stalled flow's records by the flow record's `inspection`
    only: the TLS record and the counters are those of an unbounded run."""
    packets = stalled_tls(40)
    bounded, bounded_records = run(packets)
    free, free_records = run(packets, UNBOUNDED)
    assert bounded.inspection == "stopped: tls waited for ServerHello (12 packets, 14400 bytes)"
    assert free.inspection == ""
    assert bounded_records == free_records
    assert flow_record(free) == dataclasses.replace(flow_record(bounded), inspection=None)


def test_stall_bytes_bound_too() -> None:
    """The bytes bound stops a flow before the packets bound does: once the waiting analyzer
    was handed `stall_bytes`, the next packet stops it."""
    flow, _ = run(stalled_tls(20), EngineOptions(stall_packets=100, stall_bytes=4000))
    assert flow.inspection == "stopped: tls waited for ServerHello (4 packets, 4800 bytes)"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_complete_tls_flow_is_unchanged(certdir: Path, version: ssl.TLSVersion) -> None:
    """A whole handshake in many segments, then data: the flow is never stopped, even with a
    bound of one packet, and its records are the unbounded run's."""
    conv = TcpConversation()
    packets = conv.handshake()
    for from_client, data in full_handshake(certdir, version):
        for at in range(0, len(data), 300):  # many segments per flight
            packets.append(conv.segment(from_client, TCP_ACK | 0x08, data[at : at + 300]))
        packets.append(conv.ack(from_client=not from_client))
    for _ in range(30):
        packets += [conv.send(upload()), conv.ack(from_client=False)]
    bounded, bounded_records = run(packets, EngineOptions(stall_packets=1, stall_bytes=1))
    free, free_records = run(packets, UNBOUNDED)
    assert bounded.inspection == "" and bounded.waiting == ()
    assert bounded_records == free_records
    (tls,) = [r for r in bounded_records if isinstance(r, TlsRecord)]
    assert tls.established and tls.version is not None
    assert flow_record(bounded) == flow_record(free)


def test_answer_held_above_a_hole_does_not_count(certdir: Path) -> None:
    """The server's first segment comes last (retransmitted): its later segments, held by the
    stream layer while TLS waits for the ServerHello, do not count, so even a bound of two
    packets stops nothing and the records are the unbounded run's."""
    conv = TcpConversation()
    packets = conv.handshake()
    flights = full_handshake(certdir, ssl.TLSVersion.TLSv1_2)
    for n, (from_client, data) in enumerate(flights):
        if n == 1:  # the server's first flight, its first segment late
            base = conv.seq[False]
            parts = [(at, data[at : at + 60]) for at in range(0, len(data), 60)]
            assert len(parts) > 4
            for at, part in [*parts[1:], parts[0]]:
                flags = TCP_ACK | 0x08
                packets.append(conv.segment(False, flags, part, seq=base + at, advance=False))
            conv.seq[False] = base + len(data)
        else:
            packets.append(conv.segment(from_client, TCP_ACK | 0x08, data))
        packets.append(conv.ack(from_client=not from_client))
    bounded, bounded_records = run(packets, EngineOptions(stall_packets=2))
    free, free_records = run(packets, UNBOUNDED)
    assert bounded.inspection == ""
    assert bounded_records == free_records
    (tls,) = [r for r in bounded_records if isinstance(r, TlsRecord)]
    assert tls.version is not None and tls.established


def test_complete_http_session_is_unchanged() -> None:
    """An HTTP request with a long body, then its response: nothing waits, so a bound of one
    packet changes no record."""
    conv = TcpConversation(server=("203.0.113.10", 80))
    body = b"b" * 30_000
    head = b"POST /up HTTP/1.1\r\nHost: drone.example\r\nContent-Length: %d\r\n\r\n" % len(body)
    packets = [*conv.handshake(), conv.send(head)]
    for at in range(0, len(body), 1000):
        packets += [conv.send(body[at : at + 1000]), conv.ack(from_client=False)]
    packets.append(conv.reply(b"HTTP/1.1 204 No Content\r\nServer: test\r\n\r\n"))
    packets += [conv.ack(), conv.fin(), conv.fin(from_client=False), conv.ack()]
    bounded, bounded_records = run(
        packets, EngineOptions(stall_packets=1, stall_bytes=1), http=True
    )
    free, free_records = run(packets, UNBOUNDED, http=True)
    assert bounded.inspection == ""
    assert any(type(r).__name__ == "HttpRecord" for r in bounded_records)
    assert bounded_records == free_records
    assert flow_record(bounded) == flow_record(free)


def test_scenarios_unchanged_under_the_tightest_bound() -> None:
    """The local-link captures (steady control streams and video the behaviour recogniser
    measures) and a drone app's sessions: with a bound of one packet and one byte no flow is
    stopped and every record is the unbounded run's."""
    tightest = EngineOptions(stall_packets=1, stall_bytes=1)
    for name in ("wifi_toy_drone", "wifi_unknown_drone", "wifi_rtsp_drone", "dji_fly_ldm_off"):
        path = str(PCAPS / "scenarios" / f"{name}.pcap")
        tight: list[Record] = []
        free: list[Record] = []
        run_source(FileSource(path), tight.append, config(True, tightest))
        run_source(FileSource(path), free.append, config(True, UNBOUNDED))
        assert tight == free, name
        flows = [r for r in tight if isinstance(r, FlowRecord)]
        assert flows and not any(r.inspection for r in flows), name
        if name == "wifi_toy_drone":  # the control stream's behaviour is still measured
            assert any(r.control_hz for r in flows if r.category == "local_link")


def test_a_waiting_follower_is_stopped_a_reading_one_is_not() -> None:
    """A follower past the inspected packets that waits is stopped after the bound (the C walk
    then counts the flow alone); the same follower reading, not waiting, is never stopped."""

    class Waiter:
        """Follows every UDP flow and waits on it, or reads it when `waits` is False."""

        name = "waiter"

        def __init__(self, waits: bool) -> None:
            self.waits = waits
            self.packets = 0

        def packet(self, flow: Flow, pkt: Packet) -> None:
            self.packets += 1
            flow.follow(self.name)
            if self.waits:
                flow.wait(self.name, "the other direction")

    for waits, handed, stopped in ((True, 1 + 5, True), (False, 20, False)):
        ctx, follower = RecordingContext(), Waiter(waits)
        engine = Engine([follower], ctx, EngineOptions(inspect_packets=2, stall_packets=5))
        for i in range(20):
            engine.process(make_udp(b"x", ts=1.0 + i, dport=7000))
        (flow,) = engine.flows.values()
        assert follower.packets == handed
        assert (flow.followers == (), engine.inspection_stopped) == (
            (True, 1) if stopped else (False, 0)
        )
        if stopped:
            assert flow.inspection == (
                "stopped: waiter waited for the other direction (5 packets, 5 bytes)"
            )


def segment(
    t: float, sport: int, out: bool, flags: str, payload: bytes = b"", *, seq: int, ack: int = 0
) -> tuple[float, bytes]:
    """A frame of the phone's connection from port `sport` to the cloud's 443 (`out`: sent by
    the phone)."""
    if out:
        seg = ETH() / IP(src=PHONE, dst=CLOUD) / TCP(sport=sport, dport=443, flags=flags)
    else:
        seg = ETH() / IP(src=CLOUD, dst=PHONE) / TCP(sport=443, dport=sport, flags=flags)
    seg[TCP].seq, seg[TCP].ack = seq, ack
    return t, raw(seg / payload if payload else seg)


def stalled_capture(start: float) -> list[tuple[float, bytes]]:
    """Frames of TLS flows whose ServerHello never comes into view: one whose server sends its
    SYN-ACK and ACKs, one with client segments missing now and then, and a complete long
    upload after a ServerHello (which must not stop)."""
    frames: list[tuple[float, bytes]] = []
    hello = record(spec_hello())
    server_hello = b"\x16\x03\x03\x00\x2a\x02\x00\x00\x26\x03\x03" + bytes(32) + b"\x00\x13\x01\x00"
    for n, (sport, lossy, answered) in enumerate(
        ((40010, False, False), (40011, True, False), (40012, False, True))
    ):
        t0 = start + n * 0.003
        frames += [
            segment(t0, sport, True, "S", seq=0),
            segment(t0 + 0.01, sport, False, "SA", seq=0, ack=1),
        ]
        frames.append(segment(t0 + 0.02, sport, True, "A", seq=1, ack=1))
        frames.append(segment(t0 + 0.03, sport, True, "PA", hello, seq=1, ack=1))
        seq, sack = 1 + len(hello), 1
        if answered:
            frames.append(segment(t0 + 0.04, sport, False, "PA", server_hello, seq=1, ack=seq))
            sack += len(server_hello)
        for i in range(60):
            t = t0 + 0.1 + i * 0.05
            if not (lossy and i % 17 == 5):  # a segment lost now and then
                frames.append(segment(t, sport, True, "PA", upload(), seq=seq, ack=sack))
            seq += 1200
            frames.append(segment(t + 0.001, sport, False, "A", seq=sack, ack=seq))
    return sorted(frames)


@pytest.mark.parametrize(
    "engine",
    [None, EngineOptions(stall_packets=3), EngineOptions(stall_packets=0, stall_bytes=5000)],
    ids=["default", "tight", "bytes"],
)
def test_stalled_flows_same_on_both_paths(tmp_path: Path, engine: EngineOptions | None) -> None:
    """Flows whose inspection stops get the same records with and without the C walk, their
    flow records say so, the answered flow's does not, and the C walk counts more packets than
    it does unbounded (the stopped flows' rest)."""
    path = tmp_path / "stalled.pcap"
    path.write_bytes(pcap_bytes(stalled_capture(1000.0)))
    _, bulk = both(path, engine)
    records: list[Record] = []
    run_source(FileSource(str(path)), records.append, config(True, engine))
    flows = {r.orig_p: r.inspection for r in records if isinstance(r, FlowRecord)}
    assert flows[40012] is None
    assert flows[40010] and flows[40010].startswith("stopped: tls waited for ServerHello (")
    assert flows[40011] and flows[40011].startswith("stopped: tls waited for ServerHello (")
    unbounded = run_source(FileSource(str(path)), lambda record: None, config(True, UNBOUNDED))
    assert bulk.bulk_packets > unbounded.bulk_packets


@pytest.mark.parametrize("field", ["stall_packets", "stall_bytes"])
@pytest.mark.parametrize("value", [-1, 2.5, True])
def test_bad_bounds_are_refused(field: str, value: object) -> None:
    """A negative, fractional or boolean bound is a ValueError naming the option."""
    with pytest.raises(ValueError, match=f"EngineOptions.{field}="):
        EngineOptions(**{field: value})


def test_wait_names_a_known_end() -> None:
    """`Flow.wait` refuses a sender that is not an end of the flow."""
    flow = Flow(
        uid="C1",
        proto=6,
        orig_h=b"\x01" * 4,
        orig_p=1,
        resp_h=b"\x02" * 4,
        resp_p=2,
        first_ts=0.0,
        last_ts=0.0,
    )
    with pytest.raises(ValueError, match="sender 'server'"):
        flow.wait("tls", "ServerHello", "server")
    flow.wait("tls", "ServerHello", "resp")
    assert flow.waiting == (("tls", "ServerHello", "resp"),)
    flow.decline("tls")
    assert flow.waiting == ()
