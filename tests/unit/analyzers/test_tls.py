"""Tests for the TLS analyzer: TCP reassembly of hellos and the tls.jsonl records."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers._tls_hello import client_hello_from_records, ja3_hash, ja4
from dronewatch.analyzers.tls import TlsAnalyzer, TlsOptions, TlsRecord
from dronewatch.core.flow import IP_PROTO_UDP, TCP_ACK, TCP_SYN, Flow, Packet
from tests.factories import RecordingContext, make_flow, make_packet
from tests.unit.analyzers.test_tls_hello import make_certificate, real_handshake, record, spec_hello

CLIENT, SERVER = "192.168.1.3", "203.0.113.10"
CPORT, SPORT = 50000, 443
CLIENT_ISN = 1_000_000
SERVER_ISN = 7_000_000


@pytest.fixture(scope="module")
def certdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a throw-away server certificate."""
    directory = tmp_path_factory.mktemp("tls")
    make_certificate(directory)
    return directory


@pytest.fixture(scope="module")
def tls13(certdir: Path) -> tuple[bytes, bytes]:
    """Client and server record bytes of a real TLS 1.3 handshake with SNI and ALPN."""
    return real_handshake(certdir, alpn=["h2", "http/1.1"])


def from_client(payload: bytes, seq: int, *, flags: int = 0x18, ts: float = 10.0) -> Packet:
    """A packet from the originator carrying `payload` at sequence number `seq`."""
    return make_packet(
        payload,
        src=CLIENT,
        dst=SERVER,
        sport=CPORT,
        dport=SPORT,
        tcp_seq=seq,
        tcp_flags=flags,
        ts=ts,
    )


def from_server(payload: bytes, seq: int, *, ts: float = 10.1) -> Packet:
    """A packet from the responder carrying `payload` at sequence number `seq`."""
    return make_packet(
        payload, src=SERVER, dst=CLIENT, sport=SPORT, dport=CPORT, tcp_seq=seq, ts=ts
    )


def open_flow(analyzer: TlsAnalyzer, *, syn: bool = True) -> Flow:
    """A TCP flow from CLIENT to SERVER, opened by a SYN the analyzer saw when `syn`."""
    syn_pkt = from_client(b"", CLIENT_ISN, flags=TCP_SYN, ts=9.9)
    flow = make_flow(syn_pkt)
    if syn:
        analyzer.flow_start(flow, syn_pkt)
    return flow


def segments(data: bytes, pieces: int) -> list[tuple[int, bytes]]:
    """`data` cut into `pieces` (offset, bytes) segments of about equal size."""
    step = -(-len(data) // pieces)
    return [(i, data[i : i + step]) for i in range(0, len(data), step)]


def tls_records(ctx: RecordingContext) -> list[TlsRecord]:
    """The tls.jsonl records written so far."""
    out = [r for r in ctx.of("tls") if isinstance(r, TlsRecord)]
    assert len(out) == len(ctx.of("tls"))
    return out


def test_handshake_in_one_segment_each_way(tls13: tuple[bytes, bytes]) -> None:
    """A real ClientHello and ServerHello give one record as soon as both are read."""
    client_bytes, server_bytes = tls13
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer)
    analyzer.packet(flow, from_client(client_bytes, CLIENT_ISN + 1))
    assert ctx.records == []
    analyzer.packet(flow, from_server(server_bytes, SERVER_ISN + 1))
    [rec] = tls_records(ctx)
    hello = client_hello_from_records(client_bytes)
    assert hello is not None
    assert rec.ts == 10.0
    assert (rec.uid, rec.orig_h, rec.orig_p, rec.resp_h, rec.resp_p) == (
        flow.uid,
        CLIENT,
        CPORT,
        SERVER,
        SPORT,
    )
    assert rec.server_name == "drone.example"
    assert rec.alpn == ("h2", "http/1.1")
    assert rec.version == "TLSv1.3"
    assert rec.client_versions[0] == "TLSv1.3"
    assert rec.cipher in ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256")
    assert rec.ja4 == ja4(hello) and rec.ja4 is not None and rec.ja4.startswith("t13d")
    assert rec.ja3_hash == ja3_hash(hello)
    assert rec.established and not rec.hello_retry
    assert rec.to_dict()["alpn"] == ["h2", "http/1.1"]
    assert flow.service == "tls"
    assert flow.meta["sni"] == "drone.example"
    assert flow.meta["alpn"] == ["h2", "http/1.1"]
    assert flow.meta["ja4"] == rec.ja4
    assert flow.meta["ja3"] == rec.ja3_hash
    assert flow.meta["tls_version"] == "TLSv1.3"
    analyzer.flow_end(flow)
    assert len(ctx.records) == 1
    assert analyzer._state == {}


def test_tls12_server_hello(certdir: Path) -> None:
    """A TLS 1.2 server shows up as TLSv1.2 with an ECDHE suite name."""
    client_bytes, server_bytes = real_handshake(certdir, max_version=ssl.TLSVersion.TLSv1_2)
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer)
    analyzer.packet(flow, from_client(client_bytes, CLIENT_ISN + 1))
    analyzer.packet(flow, from_server(server_bytes, SERVER_ISN + 1))
    [rec] = tls_records(ctx)
    assert rec.version == "TLSv1.2"
    assert rec.cipher is not None and rec.cipher.startswith("TLS_ECDHE_ECDSA_WITH_")
    assert flow.meta["tls_version"] == "TLSv1.2"


def test_client_hello_alone_is_logged_at_flow_end(tls13: tuple[bytes, bytes]) -> None:
    """Without a ServerHello the record waits for flow_end and is not established."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer)
    analyzer.packet(flow, from_client(tls13[0], CLIENT_ISN + 1))
    assert ctx.records == []
    assert flow.meta["sni"] == "drone.example"  # facts are published at once
    analyzer.flow_end(flow)
    [rec] = tls_records(ctx)
    assert rec.server_name == "drone.example"
    assert not rec.established and rec.version is None and rec.cipher is None


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0)])
def test_hello_in_three_segments_out_of_order(
    tls13: tuple[bytes, bytes], order: tuple[int, ...]
) -> None:
    """A ClientHello cut in three TCP segments is read whatever order they arrive in."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer)
    pieces = segments(tls13[0], 3)
    for index in order:
        offset, data = pieces[index]
        assert "sni" not in flow.meta
        analyzer.packet(flow, from_client(data, CLIENT_ISN + 1 + offset))
    assert flow.meta["sni"] == "drone.example"
    analyzer.flow_end(flow)
    [rec] = tls_records(ctx)
    assert rec.server_name == "drone.example"


@pytest.mark.parametrize("order", [(1, 2, 0), (2, 0, 1)])
def test_out_of_order_without_the_syn(tls13: tuple[bytes, bytes], order: tuple[int, ...]) -> None:
    """Without the SYN the lowest sequence number seen is taken as the stream start."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer, syn=False)
    for index in order:
        offset, data = segments(tls13[0], 3)[index]
        analyzer.packet(flow, from_client(data, CLIENT_ISN + 1 + offset))
    assert flow.meta.get("sni") == "drone.example"


def test_retransmissions_and_overlaps(tls13: tuple[bytes, bytes]) -> None:
    """Repeated and re-cut segments are tolerated and the hello is read exactly once."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer)
    data = tls13[0]
    base = CLIENT_ISN + 1
    analyzer.packet(flow, from_client(data[:100], base))
    analyzer.packet(flow, from_client(data[:100], base))  # plain retransmission
    analyzer.packet(flow, from_client(data[:60], base))  # shorter copy of the same bytes
    analyzer.packet(flow, from_client(data[50:300], base + 50))  # re-cut, overlapping
    analyzer.packet(flow, from_client(data[300:], base + 300))
    analyzer.packet(flow, from_client(data[300:], base + 300))  # after the hello was read
    analyzer.packet(flow, from_server(tls13[1], SERVER_ISN + 1))
    analyzer.packet(flow, from_server(tls13[1], SERVER_ISN + 1))
    analyzer.flow_end(flow)
    [rec] = tls_records(ctx)
    assert rec.server_name == "drone.example" and rec.established
    assert flow.meta["alpn"] == ["h2", "http/1.1"]


def test_sequence_numbers_wrap(tls13: tuple[bytes, bytes]) -> None:
    """A hello whose segments straddle the 2^32 sequence wrap is reassembled."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    isn = (1 << 32) - 100
    syn = from_client(b"", isn, flags=TCP_SYN)
    flow = make_flow(syn)
    analyzer.flow_start(flow, syn)
    for offset, data in reversed(segments(tls13[0], 3)):
        analyzer.packet(flow, from_client(data, (isn + 1 + offset) % (1 << 32)))
    assert flow.meta["sni"] == "drone.example"


def test_server_hello_split_and_seen_before_syn_ack(tls13: tuple[bytes, bytes]) -> None:
    """A ServerHello cut over two responder segments arriving backwards is still read."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer)
    analyzer.packet(flow, from_client(tls13[0], CLIENT_ISN + 1))
    server = tls13[1]
    analyzer.packet(flow, from_server(server[40:], SERVER_ISN + 41))
    assert ctx.records == []
    analyzer.packet(flow, from_server(server[:40], SERVER_ISN + 1))
    [rec] = tls_records(ctx)
    assert rec.version == "TLSv1.3"


def test_syn_ack_anchors_the_responder_stream(tls13: tuple[bytes, bytes]) -> None:
    """When the flow opens with a SYN-ACK, responder bytes count from its sequence number."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    syn_ack = make_packet(
        b"", src=SERVER, dst=CLIENT, sport=SPORT, dport=CPORT, tcp_seq=SERVER_ISN, tcp_flags=0x12
    )
    flow = make_flow(from_client(b"", CLIENT_ISN))
    analyzer.flow_start(flow, syn_ack)
    analyzer.packet(flow, from_server(tls13[1][30:], SERVER_ISN + 31))
    assert analyzer._state[flow.uid].resp.known_start
    analyzer.packet(flow, from_client(tls13[0], CLIENT_ISN + 1))
    analyzer.packet(flow, from_server(tls13[1][:30], SERVER_ISN + 1))
    [rec] = tls_records(ctx)
    assert rec.established and rec.server_name == "drone.example"


def test_server_hello_alone_is_logged(tls13: tuple[bytes, bytes]) -> None:
    """A ServerHello whose ClientHello was missed still gives a record, at flow_end."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer, syn=False)
    analyzer.packet(flow, from_server(tls13[1], SERVER_ISN + 1))
    assert ctx.records == [] and flow.service == "tls"
    analyzer.flow_end(flow)
    [rec] = tls_records(ctx)
    assert rec.ts == 10.1 and rec.established and rec.version == "TLSv1.3"
    assert rec.server_name is None and rec.client_versions == () and rec.ja4 is None


def test_flow_start_ignores_a_syn_from_the_wrong_side() -> None:
    """A SYN-ACK sent by the originator anchors nothing."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    odd = from_client(b"", CLIENT_ISN, flags=TCP_SYN | TCP_ACK)
    analyzer.flow_start(make_flow(odd), odd)
    assert analyzer._state == {}


def test_data_on_the_syn(tls13: tuple[bytes, bytes]) -> None:
    """A ClientHello carried on the SYN (TCP Fast Open) is read."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    syn = from_client(tls13[0], CLIENT_ISN, flags=TCP_SYN)
    flow = make_flow(syn)
    analyzer.flow_start(flow, syn)
    analyzer.packet(flow, syn)
    assert flow.meta["sni"] == "drone.example"


def test_any_port_and_ipv6() -> None:
    """TLS on a non-443 port between IPv6 hosts is recognised from its bytes alone."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    pkt = make_packet(record(spec_hello()), src="2001:db8::1", dst="2001:db8::2", dport=8883)
    flow = make_flow(pkt)
    analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    [rec] = tls_records(ctx)
    assert (rec.resp_h, rec.resp_p) == ("2001:db8::2", 8883)
    assert rec.server_name == "example.org"
    assert rec.ja4 == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert flow.service == "tls"


def test_plain_http_is_left_alone() -> None:
    """A flow that starts with HTTP gets no record, no service and no meta."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer)
    analyzer.packet(flow, from_client(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", CLIENT_ISN + 1))
    analyzer.packet(flow, from_server(b"HTTP/1.1 200 OK\r\n\r\n", SERVER_ISN + 1))
    analyzer.packet(flow, from_client(record(spec_hello()), CLIENT_ISN + 100))
    analyzer.flow_end(flow)
    assert ctx.records == [] and flow.service == "" and flow.meta == {}
    assert analyzer._state == {}


def test_non_tls_without_syn_is_given_up_after_probing() -> None:
    """Mid-stream non-TLS bytes are buffered only for a few segments."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx, TlsOptions(probe_segments=3))
    flow = open_flow(analyzer, syn=False)
    for i in range(3):
        analyzer.packet(flow, from_client(b"x" * 100, CLIENT_ISN + 1 + 100 * i))
    state = analyzer._state[flow.uid]
    # Given up: the flow's buffers are gone, a shared placeholder says it is done.
    assert state.emitted and state.orig.size == 0 and state.client is None
    analyzer.flow_end(flow)
    assert ctx.records == []


def test_udp_and_empty_payloads_are_ignored() -> None:
    """UDP flows and packets without payload never create state."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    udp = make_packet(record(spec_hello()), proto=IP_PROTO_UDP)
    flow = make_flow(udp)
    analyzer.flow_start(flow, udp)
    analyzer.packet(flow, udp)
    tcp = from_client(b"", CLIENT_ISN + 1, flags=TCP_ACK)
    analyzer.packet(make_flow(tcp, uid="C2"), tcp)
    assert analyzer._state == {} and ctx.records == []


def test_server_alert_ends_the_wait(tls13: tuple[bytes, bytes]) -> None:
    """A responder that answers with an alert gets the record written at once, unestablished."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer)
    analyzer.packet(flow, from_client(tls13[0], CLIENT_ISN + 1))
    analyzer.packet(flow, from_server(b"\x15\x03\x03\x00\x02\x02\x28", SERVER_ISN + 1))
    [rec] = tls_records(ctx)
    assert not rec.established and rec.server_name == "drone.example"


def test_a_hello_too_big_for_the_buffer_is_dropped() -> None:
    """A hello that never fits the buffer budget is abandoned with bounded memory."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx, TlsOptions(max_buffer_bytes=4096))
    flow = open_flow(analyzer)
    header = b"\x16\x03\x01\x3f\xff\x01\x00\x3f\xfb"  # one 16 KiB record, a 16 KiB hello
    stream = header + bytes(20_000)
    for offset, data in segments(stream, 20):
        analyzer.packet(flow, from_client(data, CLIENT_ISN + 1 + offset))
        assert analyzer._state[flow.uid].orig.size <= 4096
    assert analyzer._state[flow.uid].emitted  # given up, buffers dropped
    analyzer.flow_end(flow)
    assert ctx.records == []


def test_segment_count_is_bounded() -> None:
    """Many tiny out-of-order segments stop being kept past the segment budget."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx, TlsOptions(max_segments=8))
    flow = open_flow(analyzer)
    for i in range(1, 20):  # offset 0 never arrives, so nothing can be read
        analyzer.packet(flow, from_client(b"\x16", CLIENT_ISN + 1 + 2 * i))
    assert len(analyzer._state[flow.uid].orig.segments) <= 8


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.integers(min_value=0, max_value=(1 << 32) - 1),
            st.one_of(
                st.binary(min_size=1, max_size=300),
                st.binary(max_size=300).map(lambda b: b"\x16\x03\x01" + b),
                st.binary(max_size=300).map(lambda b: b"\x16\x03\x03\x01\x00\x01" + b),
            ),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_fuzz_hooks_never_raise(packets: list[tuple[bool, int, bytes]], syn: bool) -> None:
    """Arbitrary segments in both directions never make a hook raise."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer, syn=syn)
    for client_side, seq, payload in packets:
        pkt = from_client(payload, seq) if client_side else from_server(payload, seq)
        analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    assert analyzer._state == {}
    assert len(ctx.records) <= 1


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(6)), st.lists(st.integers(0, 5), max_size=4))
def test_fuzz_any_delivery_order_reads_the_hello(order: list[int], repeats: list[int]) -> None:
    """Any order of six segments, with some repeated, yields the hello exactly once."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer)
    pieces = segments(record(spec_hello()), 6)
    for index in list(order) + repeats:
        offset, data = pieces[index]
        analyzer.packet(flow, from_client(data, CLIENT_ISN + 1 + offset))
    analyzer.flow_end(flow)
    [rec] = tls_records(ctx)
    assert rec.ja4 == "t13d1516h2_8daaf6152771_e5627efa2ab1"


def test_state_is_made_by_payload_and_dropped_when_done(tls13: tuple[bytes, bytes]) -> None:
    """A SYN costs only its sequence number; once the hellos are written the flow's buffers and
    hellos are let go and the analyzer declines the flow (memory per flow stays small)."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = open_flow(analyzer)
    assert flow.uid not in analyzer._state and flow.uid in analyzer._syn
    analyzer.packet(flow, from_client(tls13[0], CLIENT_ISN + 1))
    analyzer.packet(flow, from_server(tls13[1], SERVER_ISN + 1))
    [rec] = tls_records(ctx)
    assert rec.established and rec.server_name == "drone.example"
    done = analyzer._state[flow.uid]
    assert done.emitted and done.client is None and done.server is None
    assert flow.uid not in analyzer._syn
    analyzer.flow_end(flow)
    assert analyzer._state == {} and analyzer._syn == {} and len(tls_records(ctx)) == 1
