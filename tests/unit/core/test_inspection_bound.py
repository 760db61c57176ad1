"""The engine's bound on inspection while every analyzer waits (`EngineOptions.stall_packets`)."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP, UDP

from dronewatch.analyzers._tls_hello import TLS_EXT_EARLY_DATA
from dronewatch.analyzers.dtls import DtlsAnalyzer
from dronewatch.analyzers.http import HttpAnalyzer, HttpRecord
from dronewatch.analyzers.mqtt import MqttAnalyzer, MqttRecord
from dronewatch.analyzers.tls import TlsAnalyzer, TlsOptions, TlsRecord
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import Engine, EngineOptions
from dronewatch.core.flow import TCP_ACK, Flow, Packet
from dronewatch.core.hooks import Analyzer, Record
from dronewatch.core.pipeline import run_source
from dronewatch.judge.flowlog import FlowRecord, flow_record
from tests.factories import RecordingContext, make_udp
from tests.pcaps import PCAPS
from tests.unit.analyzers.test_dtls import FULL_HANDSHAKE, client_hello_body
from tests.unit.analyzers.test_dtls import PEER_A as DTLS_A
from tests.unit.analyzers.test_dtls import PEER_B as DTLS_B
from tests.unit.analyzers.test_dtls import handshake as dtls_handshake
from tests.unit.analyzers.test_dtls import record as dtls_record
from tests.unit.analyzers.test_mqtt import connect as mqtt_connect
from tests.unit.analyzers.test_mqtt import publish as mqtt_publish
from tests.unit.analyzers.test_tls import full_handshake
from tests.unit.analyzers.test_tls_hello import (
    SPEC_CIPHERS,
    client_hello_msg,
    ext,
    make_certificate,
    record,
    spec_hello,
    vec,
)
from tests.unit.capture.captures import pcap_bytes
from tests.unit.core.tcpconv import TcpConversation
from tests.unit.fastpath.test_bulk import CLOUD, ETH, PHONE, both, config

UNBOUNDED = EngineOptions(stall_packets=0, stall_bytes=0)
DTLS_HANDSHAKE = [(src == DTLS_A, data) for src, data in FULL_HANDSHAKE]
"""The crafted DTLS handshake of the analyzer's tests, as (sent by the client, datagram)."""


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


ENGINE_BOUND_ONLY = TlsOptions(hello_answer_packets=0)
"""TLS without its own bound after a ClientHello: the engine's alone stops a flow."""


def run(
    packets: list[Packet],
    options: EngineOptions | None = None,
    *,
    http: bool = False,
    tls: TlsOptions = ENGINE_BOUND_ONLY,
) -> tuple[Flow, list[Record]]:
    """The packets through an engine with the TLS analyzer (and HTTP's): the flow, and every
    record."""

    def make(ctx: RecordingContext) -> list[Analyzer]:
        return [TlsAnalyzer(ctx, tls), *([HttpAnalyzer(ctx)] if http else [])]

    return run_with(make, packets, options)


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


def test_a_tls_client_that_sends_on_after_its_hello_stops_sooner() -> None:
    """A TLS client sends nothing between its ClientHello and the server's first flight but an
    alert: past `hello_answer_packets` more packets from it (uploads, here) the flight went by
    out of view, and the flow stops there, well before the engine's bound; a client offering
    early data (0-RTT) is held to the engine's bound alone, as is every client with the TLS
    bound off (0)."""
    flow, records = run(stalled_tls(20), tls=TlsOptions())
    assert flow.inspection == "stopped: tls waited for ServerHello (2 packets, 2400 bytes)"
    (tls,) = [r for r in records if isinstance(r, TlsRecord)]
    assert tls.server_name == "example.org"
    engine_only, _ = run(stalled_tls(20), tls=ENGINE_BOUND_ONLY)
    assert engine_only.inspection.endswith("(12 packets, 14400 bytes)")
    # The same with a hello that offers early data (extension 42, empty in a ClientHello).
    conv = TcpConversation()
    sni = ext(0x0000, vec(2, b"\x00" + vec(2, b"example.org")))
    hello = client_hello_msg(SPEC_CIPHERS, [sni, ext(TLS_EXT_EARLY_DATA)])
    early = [*conv.handshake(), conv.send(record(hello))]
    for _ in range(20):
        early += [conv.send(upload()), conv.ack(from_client=False)]
    zero_rtt, _ = run(early, tls=TlsOptions())
    assert zero_rtt.inspection.endswith("(12 packets, 14400 bytes)")
    with pytest.raises(ValueError, match="hello_answer_packets=-1"):
        TlsOptions(hello_answer_packets=-1)


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
    with pytest.raises(ValueError, match="within -1"):
        flow.wait("tls", "ServerHello", "resp", -1)
    flow.wait("tls", "ServerHello", "resp")
    assert flow.waiting == (("tls", "ServerHello", "resp", 0),)
    flow.wait("tls", "ServerHello", "resp", 2)
    assert flow.waiting == (("tls", "ServerHello", "resp", 2),)
    flow.decline("tls")
    assert flow.waiting == ()


# --- HTTP, MQTT and DTLS waits -------------------------------------------------------------------


def run_with(
    make: Callable[[RecordingContext], list[Analyzer]],
    packets: list[Packet],
    options: EngineOptions | None = None,
) -> tuple[Flow, list[Record]]:
    """The packets through an engine with the analyzers `make` builds: the one flow, and every
    record."""
    ctx = RecordingContext()
    engine = Engine(make(ctx), ctx, options)
    for pkt in packets:
        engine.process(pkt)
    (flow,) = engine.flows.values()
    engine.finish()
    return flow, ctx.records


def same_unbounded(
    make: Callable[[RecordingContext], list[Analyzer]], packets: list[Packet]
) -> tuple[Flow, list[Record]]:
    """Run the packets with a bound of one packet and one byte and unbounded; assert that
    nothing stopped and every record is the unbounded run's; return the bounded run."""
    bounded, bounded_records = run_with(
        make, packets, EngineOptions(stall_packets=1, stall_bytes=1)
    )
    free, free_records = run_with(make, packets, UNBOUNDED)
    assert bounded.inspection == ""
    assert bounded_records == free_records
    assert flow_record(bounded) == flow_record(free)
    return bounded, bounded_records


def http_only(ctx: RecordingContext) -> list[Analyzer]:
    return [HttpAnalyzer(ctx)]


def test_http_request_without_response_stops() -> None:
    """A request read whole and no response: the client's later bytes, which start no message,
    are handed while HTTP waits for the response, then the flow stops; the request's record is
    the unbounded run's."""
    conv = TcpConversation(server=("203.0.113.10", 80))
    packets = [*conv.handshake(), conv.send(b"GET /fw HTTP/1.1\r\nHost: drone.example\r\n\r\n")]
    for _ in range(30):
        packets += [conv.send(b"\x00\x01" * 300), conv.ack(from_client=False)]
    flow, records = run_with(http_only, packets)
    free, free_records = run_with(http_only, packets, UNBOUNDED)
    assert flow.inspection == "stopped: http waited for response (12 packets, 7200 bytes)"
    assert free.inspection == "" and records == free_records
    (http,) = [r for r in records if isinstance(r, HttpRecord)]
    assert http.uri == "/fw" and http.status_code is None


def test_http_connect_without_answer_stops_with_tls() -> None:
    """A CONNECT whose answer never shows, then TLS through the tunnel: HTTP waits for the
    response, TLS for the ServerHello, and the flow stops saying both."""
    conv = TcpConversation(server=("203.0.113.10", 8080))
    packets = [
        *conv.handshake(),
        conv.send(b"CONNECT cloud.example:443 HTTP/1.1\r\nHost: cloud.example:443\r\n\r\n"),
        conv.send(record(spec_hello())),
    ]
    for _ in range(20):
        packets += [conv.send(upload()), conv.ack(from_client=False)]
    flow, _ = run(packets, EngineOptions(stall_packets=5), http=True)
    assert flow.inspection.startswith("stopped: ")
    assert "http waited for response" in flow.inspection
    assert "tls waited for ServerHello" in flow.inspection


def test_http_client_still_sending_requests_is_never_stopped() -> None:
    """Pipelined requests, whole or cut over two segments, and no response ever: every segment
    is read in step, so even a bound of one packet stops nothing (a one-way capture's requests
    are all written)."""
    conv = TcpConversation(server=("203.0.113.10", 80))
    packets = conv.handshake()
    for n in range(20):
        head = b"GET /tile/%d HTTP/1.1\r\nHost: maps.example\r\n\r\n" % n
        packets += [conv.send(head[:20]), conv.send(head[20:])] if n % 2 else [conv.send(head)]
    _, records = same_unbounded(http_only, packets)
    assert len([r for r in records if isinstance(r, HttpRecord)]) == 20


def test_complete_http_sessions_unchanged_under_the_tightest_bound() -> None:
    """Keep-alive requests each answered (a body in several segments), and an upgrade: nothing
    stops with a bound of one packet and one byte."""
    conv = TcpConversation(server=("203.0.113.10", 80))
    packets = conv.handshake()
    for n in range(5):
        packets.append(conv.send(b"GET /a/%d HTTP/1.1\r\nHost: h.example\r\n\r\n" % n))
        body = b"z" * 3000
        packets.append(conv.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n"))
        packets += [conv.reply(body[at : at + 1000]) for at in range(0, 3000, 1000)]
        packets.append(conv.ack())
    packets.append(conv.send(b"GET /ws HTTP/1.1\r\nHost: h.example\r\nUpgrade: websocket\r\n\r\n"))
    packets.append(conv.reply(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"))
    packets += [conv.send(b"\x81\x05hello") for _ in range(10)]
    _, records = same_unbounded(http_only, packets)
    assert [r.status_code for r in records if isinstance(r, HttpRecord)] == [200] * 5 + [101]


def mqtt_only(ctx: RecordingContext) -> list[Analyzer]:
    return [MqttAnalyzer(ctx)]


def test_mqtt_connect_without_connack_stops() -> None:
    """A CONNECT, then client bytes that are no MQTT packet and no CONNACK: MQTT waits for the
    CONNACK and the flow stops after the bound; the connect record is the unbounded run's."""
    conv = TcpConversation(server=("203.0.113.10", 1883))
    packets = [*conv.handshake(), conv.send(mqtt_connect("drone-7"))]
    for _ in range(20):
        packets += [conv.send(b"\x30\xff\xff\xff\xff\xff" + b"\x00" * 100), conv.ack(False)]
    flow, records = run_with(mqtt_only, packets)
    free, free_records = run_with(mqtt_only, packets, UNBOUNDED)
    assert flow.inspection == "stopped: mqtt waited for CONNACK (12 packets, 1272 bytes)"
    assert free.inspection == "" and records == free_records
    assert [r.client_id for r in records if isinstance(r, MqttRecord)] == ["drone-7"]


def test_mqtt_client_publishing_without_connack_is_never_stopped() -> None:
    """A client publishes before (and without) a CONNACK, some publishes cut over segments: it
    is read in step, so a bound of one packet stops nothing and every topic is counted."""
    conv = TcpConversation(server=("203.0.113.10", 1883))
    packets = [*conv.handshake(), conv.send(mqtt_connect("drone-7"))]
    for n in range(20):
        message = mqtt_publish(f"telemetry/{n % 3}", b"p" * 200)
        packets += [conv.send(message[:50]), conv.send(message[50:])]
    _, records = same_unbounded(mqtt_only, packets)
    counts = [r.publishes for r in records if isinstance(r, MqttRecord) and r.topic]
    assert sorted(counts) == [6, 7, 7]


def test_complete_mqtt_session_unchanged_under_the_tightest_bound() -> None:
    """CONNECT, CONNACK, then publishes both ways: nothing waits after the CONNACK."""
    conv = TcpConversation(server=("203.0.113.10", 1883))
    packets = [*conv.handshake(), conv.send(mqtt_connect("drone-7"))]
    packets.append(conv.reply(b"\x20\x02\x00\x00"))
    for n in range(15):
        packets.append(conv.send(mqtt_publish("up", b"u" * 100)))
        packets.append(conv.reply(mqtt_publish("down", b"d" * (n + 1))))
    same_unbounded(mqtt_only, packets)


def dtls_only(ctx: RecordingContext) -> list[Analyzer]:
    return [DtlsAnalyzer(ctx)]


def dtls_datagrams(exchange: list[tuple[bool, bytes]]) -> list[Packet]:
    """UDP datagrams between a client (port 40000) and a server (port 50000)."""
    return [
        make_udp(
            payload,
            src=DTLS_A if client else DTLS_B,
            dst=DTLS_B if client else DTLS_A,
            sport=40000 if client else 50000,
            dport=50000 if client else 40000,
            ts=1.0 + i * 0.1,
        )
        for i, (client, payload) in enumerate(exchange)
    ]


def test_dtls_client_hello_without_answer_stops() -> None:
    """A ClientHello resent and nothing from the server: DTLS waits for the ServerHello and the
    flow stops; its record (the hello, unanswered) is the unbounded run's."""
    hello = dtls_record(22, dtls_handshake(1, client_hello_body()))
    packets = dtls_datagrams([(True, hello)] * 20)
    flow, records = run_with(dtls_only, packets)
    free, free_records = run_with(dtls_only, packets, UNBOUNDED)
    assert flow.inspection.startswith("stopped: dtls waited for ServerHello (12 packets, ")
    assert free.inspection == "" and records == free_records
    (rec,) = [r for r in records if isinstance(r, TlsRecord)]
    assert not rec.established


def test_complete_dtls_handshake_unchanged_under_the_tightest_bound() -> None:
    """A ClientHello resent twice before its answer, then the handshake and data: nothing stops
    with a bound of one packet and one byte."""
    hello = dtls_record(22, dtls_handshake(1, client_hello_body()))
    exchange = [(True, hello)] * 2 + [(client, data) for client, data in DTLS_HANDSHAKE[1:]]
    exchange += [(n % 2 == 0, dtls_record(23, bytes(60), epoch=1)) for n in range(20)]
    flow, records = same_unbounded(dtls_only, dtls_datagrams(exchange))
    (rec,) = [r for r in records if isinstance(r, TlsRecord)]
    assert rec.established and flow.waiting == ()


def tcp_frame(
    t: float, port: int, out: bool, flags: str, payload: bytes = b"", *, seq: int, ack: int = 0
) -> tuple[float, bytes]:
    """A frame of the phone's connection from port 41000 to the cloud's `port` (`out`: sent
    by the phone)."""
    if out:
        seg = ETH() / IP(src=PHONE, dst=CLOUD) / TCP(sport=41000, dport=port, flags=flags)
    else:
        seg = ETH() / IP(src=CLOUD, dst=PHONE) / TCP(sport=port, dport=41000, flags=flags)
    seg[TCP].seq, seg[TCP].ack = seq, ack
    return t, raw(seg / payload if payload else seg)


def one_way_session(
    start: float, port: int, first: bytes, then: bytes
) -> list[tuple[float, bytes]]:
    """A connection whose server answers the SYN and acknowledges, never sends data: the
    client's `first` message, then 60 segments of `then`."""
    frames = [
        tcp_frame(start, port, True, "S", seq=0),
        tcp_frame(start + 0.01, port, False, "SA", seq=0, ack=1),
        tcp_frame(start + 0.02, port, True, "A", seq=1, ack=1),
        tcp_frame(start + 0.03, port, True, "PA", first, seq=1, ack=1),
    ]
    seq = 1 + len(first)
    for i in range(60):
        t = start + 0.1 + i * 0.05
        frames.append(tcp_frame(t, port, True, "PA", then, seq=seq, ack=1))
        seq += len(then)
        frames.append(tcp_frame(t + 0.001, port, False, "A", seq=1, ack=seq))
    return frames


def test_http_mqtt_dtls_stops_same_on_both_paths(tmp_path: Path) -> None:
    """An unanswered HTTP request, MQTT CONNECT and DTLS ClientHello, each followed by client
    bytes the analyzer cannot read: each flow stops on both paths alike, with its reason, and
    the C walk counts more packets than it does unbounded. (The HTTP flow stops only after the
    `inspect_packets` every analyzer sees: until then the TLS analyzer, which looks for a TLS
    start on an HTTP flow and does not wait, reads it too.)"""
    hello = dtls_record(22, dtls_handshake(1, client_hello_body()))
    frames = [
        *one_way_session(
            1000.0, 80, b"GET /fw HTTP/1.1\r\nHost: drone.example\r\n\r\n", b"\x00\x01" * 300
        ),
        *one_way_session(1000.5, 1883, mqtt_connect("drone-7"), b"\x30\xff\xff\xff\xff\xff" * 20),
    ]
    for i in range(30):
        udp = ETH() / IP(src=PHONE, dst=CLOUD) / UDP(sport=41001, dport=50000) / hello
        frames.append((1001.0 + i * 0.05, raw(udp)))
    path = tmp_path / "waits.pcap"
    path.write_bytes(pcap_bytes(sorted(frames)))
    _, bulk = both(path)
    records: list[Record] = []
    run_source(FileSource(str(path)), records.append, config(True))
    flows = {r.resp_p: r.inspection or "" for r in records if isinstance(r, FlowRecord)}
    assert flows[80].startswith("stopped: http waited for response (12 packets")
    assert flows[1883].startswith("stopped: mqtt waited for CONNACK (12 packets")
    assert flows[50000].startswith("stopped: dtls waited for ServerHello (12 packets")
    unbounded = run_source(FileSource(str(path)), lambda record: None, config(True, UNBOUNDED))
    assert bulk.bulk_packets > unbounded.bulk_packets
