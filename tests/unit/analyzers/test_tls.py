"""Tests for the TLS analyzer: hellos read from the stream layer, the handshake's end, STARTTLS,
and the tls.jsonl records."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers._tls_hello import (
    ClientHello,
    client_hello_from_records,
    ja3_hash,
    ja4,
    under_way,
)
from dronewatch.analyzers.tls import TlsAnalyzer, TlsOptions, TlsRecord
from dronewatch.core.engine import Engine
from dronewatch.core.flow import IP_PROTO_UDP, TCP_SYN, Flow, Packet
from tests.factories import RecordingContext, make_flow, make_packet, pipeline_records
from tests.pcaps import THIRD_PARTY, capture
from tests.unit.analyzers.test_tls_hello import make_certificate, real_handshake, record, spec_hello
from tests.unit.core.tcpconv import TcpConversation


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


def full_handshake(
    certdir: Path, max_version: ssl.TLSVersion, server_group: str | None = None
) -> list[tuple[bool, bytes]]:
    """Every flight of a real handshake, then application data each way: (from client, bytes).
    `server_group` limits the server to one key-exchange group (a HelloRetryRequest when it is
    not the one the client sent a key share for)."""
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certdir / "cert.pem", certdir / "key.pem")
    server_ctx.maximum_version = max_version
    if server_group is not None:
        server_ctx.set_ecdh_curve(server_group)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="drone.example")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    flights: list[tuple[bool, bytes]] = []
    for _ in range(4):
        for is_client, obj, out, peer_in in (
            (True, client, c_out, s_in),
            (False, server, s_out, c_in),
        ):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            data = out.read()
            if data:
                flights.append((is_client, data))
                peer_in.write(data)
    client.write(b"GET / HTTP/1.1\r\n\r\n")
    flights.append((True, c_out.read()))
    s_in.write(flights[-1][1])
    server.read(100)
    server.write(b"HTTP/1.1 200 OK\r\n\r\n")
    flights.append((False, s_out.read()))
    return flights


class Run:
    """A TLS analyzer behind an engine: segments go through the stream layer."""

    def __init__(self, options: TlsOptions | None = None) -> None:
        self.ctx = RecordingContext()
        self.analyzer = TlsAnalyzer(self.ctx, options)
        self.engine = Engine([self.analyzer], self.ctx)
        self.conv = TcpConversation()

    def feed(self, *packets: Packet) -> None:
        for pkt in packets:
            self.engine.process(pkt)

    @property
    def flow(self) -> Flow:
        (flow,) = self.engine.flows.values()
        return flow

    def records(self) -> list[TlsRecord]:
        out = [r for r in self.ctx.of("tls") if isinstance(r, TlsRecord)]
        assert len(out) == len(self.ctx.of("tls"))
        return out

    def finish(self) -> list[TlsRecord]:
        self.engine.finish()
        return self.records()


def test_handshake_in_one_segment_each_way(tls13: tuple[bytes, bytes]) -> None:
    """A real ClientHello and ServerHello fill the record (written at the end: the handshake
    never finished, so not established)."""
    client_bytes, server_bytes = tls13
    run = Run()
    run.feed(*run.conv.handshake(), run.conv.send(client_bytes), run.conv.reply(server_bytes))
    flow = run.flow
    assert flow.service == "tls"
    assert flow.meta["sni"] == "drone.example"
    assert flow.meta["alpn"] == ["h2", "http/1.1"]
    assert flow.meta["tls_version"] == "TLSv1.3"
    [rec] = run.finish()
    hello = client_hello_from_records(client_bytes)
    assert hello is not None
    assert (rec.orig_h, rec.orig_p, rec.resp_h, rec.resp_p) == (
        "192.168.1.3",
        50000,
        "203.0.113.10",
        443,
    )
    assert rec.server_name == "drone.example"
    assert rec.alpn == ("h2", "http/1.1")
    assert rec.version == "TLSv1.3"
    assert rec.client_versions[0] == "TLSv1.3"
    assert rec.cipher in ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256")
    assert rec.ja4 == ja4(hello) and rec.ja4 is not None and rec.ja4.startswith("t13d")
    assert rec.ja3_hash == ja3_hash(hello) == flow.meta["ja3"]
    assert not rec.established and not rec.hello_retry
    assert run.analyzer._state == {}


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_finished_handshake_is_established(certdir: Path, version: ssl.TLSVersion) -> None:
    """Once both sides sent encrypted records and one more came, the handshake is established
    (Zeek's rule) and the record is written at once."""
    run = Run()
    run.feed(*run.conv.handshake())
    for from_client, data in full_handshake(certdir, version):
        run.feed(run.conv.send(data) if from_client else run.conv.reply(data))
    [rec] = run.records()
    assert rec.established
    assert rec.version == ("TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
    assert rec.retry_ja4 is None and not rec.hello_retry


def retry_flights(certdir: Path) -> list[tuple[bool, bytes]]:
    """A real TLS 1.3 handshake whose server takes only P-384: the client's first key share is
    for another group, so the server answers with a HelloRetryRequest and the client sends a
    second ClientHello (after a ChangeCipherSpec, RFC 8446 D.4)."""
    flights = full_handshake(certdir, ssl.TLSVersion.TLSv1_3, server_group="secp384r1")
    assert [from_client for from_client, _ in flights[:3]] == [True, False, True]
    return flights


def second_hello(flights: list[tuple[bool, bytes]]) -> ClientHello:
    """The second ClientHello: the client's second flight after its ChangeCipherSpec record."""
    data = flights[2][1]
    assert data[:6] == bytes.fromhex("140303000101")
    hello = client_hello_from_records(data[6:])
    assert hello is not None
    return hello


def test_second_client_hello_after_hello_retry_request(certdir: Path) -> None:
    """The ClientHello sent in answer to a HelloRetryRequest gives the record's retry_ja4; the
    first ClientHello keeps giving ja4 (and the flow's JA4)."""
    flights = retry_flights(certdir)
    first = client_hello_from_records(flights[0][1])
    assert first is not None
    run = Run()
    run.feed(*run.conv.handshake())
    for from_client, data in flights:
        run.feed(run.conv.send(data) if from_client else run.conv.reply(data))
    flow_ja4 = run.flow.meta["ja4"]
    [rec] = run.finish()
    assert rec.hello_retry
    assert rec.ja4 == ja4(first) == flow_ja4
    assert rec.retry_ja4 == ja4(second_hello(flights))
    assert rec.retry_ja4 is not None and rec.retry_ja4.startswith("t13d")


def test_second_client_hello_cut_over_segments_is_waited_for(certdir: Path) -> None:
    """A second ClientHello cut over three segments is read whole before the record is written,
    though its first segment already ends the handshake by Zeek's rule."""
    flights = retry_flights(certdir)
    run = Run()
    run.feed(*run.conv.handshake(), run.conv.send(flights[0][1]), run.conv.reply(flights[1][1]))
    data = flights[2][1]
    run.feed(run.conv.send(data[:20]), run.conv.send(data[20:100]))
    assert run.records() == []
    run.feed(run.conv.send(data[100:]))
    [rec] = run.records()
    assert rec.retry_ja4 == ja4(second_hello(flights))


def test_a_lost_second_client_hello_gives_no_retry_ja4(certdir: Path) -> None:
    """When the capture lost part of the second ClientHello, the record has the first one's JA4
    and no retry_ja4."""
    flights = retry_flights(certdir)
    run = Run()
    run.feed(*run.conv.handshake(), run.conv.send(flights[0][1]), run.conv.reply(flights[1][1]))
    data = flights[2][1]
    run.conv.send(data[:100])  # lost
    run.feed(run.conv.send(data[100:]), run.conv.ack(from_client=False))
    [rec] = run.finish()
    assert rec.ja4 is not None and rec.retry_ja4 is None


def test_client_hello_alone_is_logged_at_flow_end(tls13: tuple[bytes, bytes]) -> None:
    """Without a ServerHello the record waits for the flow's end and is not established."""
    run = Run()
    run.feed(*run.conv.handshake(), run.conv.send(tls13[0]))
    assert run.records() == []
    [rec] = run.finish()
    assert rec.server_name == "drone.example"
    assert not rec.established and rec.version is None and rec.cipher is None


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0)])
def test_hello_in_three_segments_out_of_order(
    tls13: tuple[bytes, bytes], order: tuple[int, ...]
) -> None:
    """A ClientHello cut in three segments is read whatever order they arrive in."""
    run = Run()
    hs = run.conv.handshake()
    data = tls13[0]
    step = -(-len(data) // 3)
    pieces = [run.conv.send(data[i : i + step]) for i in range(0, len(data), step)]
    run.feed(*hs, *(pieces[i] for i in order))
    assert run.flow.meta["sni"] == "drone.example"


def test_retransmitted_hello_segment_is_read_once(tls13: tuple[bytes, bytes]) -> None:
    """A segment of the hello sent twice changes nothing."""
    run = Run()
    hs = run.conv.handshake()
    half = len(tls13[0]) // 2
    first = run.conv.send(tls13[0][:half])
    again = run.conv.send(tls13[0][:half], seq=first.tcp_seq, advance=False)
    rest = run.conv.send(tls13[0][half:])
    run.feed(*hs, first, again, rest)
    [rec] = run.finish()
    assert rec.server_name == "drone.example"


def test_a_hole_in_the_hello_gives_it_up(tls13: tuple[bytes, bytes]) -> None:
    """Bytes of the hello the capture lost (acknowledged by the peer) mean no record."""
    run = Run()
    hs = run.conv.handshake()
    run.conv.send(tls13[0][:50])  # lost
    rest = run.conv.send(tls13[0][50:])
    run.feed(*hs, rest, run.conv.ack(from_client=False))
    assert run.finish() == []


def test_starttls_hello_after_plaintext_is_found(tls13: tuple[bytes, bytes]) -> None:
    """A hello after a plaintext exchange (STARTTLS) is found and read."""
    run = Run()
    run.conv = TcpConversation(server=("203.0.113.10", 143))
    run.feed(
        *run.conv.handshake(),
        run.conv.reply(b"* OK IMAP ready\r\n"),
        run.conv.send(b"a1 STARTTLS\r\n"),
        run.conv.reply(b"a1 OK Begin TLS negotiation now\r\n"),
        run.conv.send(tls13[0]),
        run.conv.reply(tls13[1]),
    )
    [rec] = run.finish()
    assert rec.server_name == "drone.example" and rec.version == "TLSv1.3"


def test_imap_starttls_capture() -> None:
    """Zeek's tls/imap-starttls.pcap: the TLS after IMAP STARTTLS gives an established record."""
    records = pipeline_records(
        capture(THIRD_PARTY / "zeek" / "tls" / "imap-starttls.pcap"), TlsRecord
    )
    [rec] = records
    assert rec.resp_p == 143 and rec.established
    assert rec.version == "TLSv1.2"


def test_plain_http_is_left_alone() -> None:
    """A flow another protocol was recognised on gets no state; an HTTP flow gets one (a CONNECT
    tunnel may carry TLS; a plain request ends it at once, below) but gives no record."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    pkt = make_packet(b"GET / HTTP/1.1\r\n\r\n", dport=80)
    flow = make_flow(pkt)
    flow.service = "http"
    analyzer.packet(flow, pkt)
    flow.service = "mqtt"
    other = make_flow(pkt, uid="COTHER")
    other.service = "mqtt"
    analyzer.packet(other, pkt)
    assert "COTHER" not in analyzer._state and flow.uid in analyzer._state
    assert ctx.records == []


@pytest.mark.parametrize(
    ("first", "looks_on"),
    [
        (b"GET /tiles/1 HTTP/1.1\r\nHost: a.example\r\n\r\n", False),
        (b"POST /log HTTP/1.0\nContent-Length: 3\n\nabc", False),
        (b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", True),
        (b"GET /ws HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\n\r\n", True),
        (b"GET /tiles/1 HTTP/1.1\r\nHost: a.exa", True),  # the head is not whole yet
        (b"EHLO mail.example\r\n", True),  # STARTTLS may follow
    ],
)
def test_a_plain_http_request_ends_the_search_for_tls(first: bytes, looks_on: bool) -> None:
    """A client whose first bytes are a whole HTTP request head, not a CONNECT and without an
    Upgrade header (a WebSocket may carry TLS), starts no TLS: the analyzer stops looking at the
    flow (declines it, no record). Anything else may still lead to TLS."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    pkt = make_packet(first, dport=80)
    flow = make_flow(pkt)
    flow.inspector_names, flow.inspectors = ("tls",), (analyzer.packet,)
    analyzer.packet(flow, pkt)
    assert ("tls" in flow.inspector_names) is looks_on
    analyzer.flow_end(flow)
    assert ctx.records == []


def test_udp_and_empty_payloads_are_ignored() -> None:
    """UDP datagrams and empty segments make no state."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    udp = make_packet(record(spec_hello()), proto=IP_PROTO_UDP)
    analyzer.packet(make_flow(udp), udp)
    empty = make_packet(b"", tcp_flags=TCP_SYN)
    analyzer.packet(make_flow(empty), empty)
    assert analyzer._state == {} and ctx.records == []


def test_server_alert_is_not_established(tls13: tuple[bytes, bytes]) -> None:
    """A responder answering with an alert: a record, not established."""
    run = Run()
    run.feed(
        *run.conv.handshake(),
        run.conv.send(tls13[0]),
        run.conv.reply(b"\x15\x03\x03\x00\x02\x02\x28"),
    )
    [rec] = run.finish()
    assert not rec.established and rec.server_name == "drone.example"


def test_a_hello_too_big_for_the_buffer_is_dropped() -> None:
    """A hello that never fits the buffer budget is abandoned with bounded memory."""
    run = Run(TlsOptions(max_buffer_bytes=4096))
    header = b"\x16\x03\x01\x3f\xff\x01\x00\x3f\xfb"  # one 16 KiB record, a 16 KiB hello
    data = header + bytes(20_000)
    run.feed(*run.conv.handshake())
    for i in range(0, len(data), 1000):
        run.feed(run.conv.send(data[i : i + 1000]))
        state = run.analyzer._state.get(run.flow.uid)
        assert state is None or len(state.orig.hello) <= 4096
    assert run.finish() == []


def test_state_is_dropped_when_done(certdir: Path) -> None:
    """Once the record is written the flow's buffers go and the analyzer declines the flow."""
    run = Run()
    run.feed(*run.conv.handshake())
    for from_client, data in full_handshake(certdir, ssl.TLSVersion.TLSv1_3):
        run.feed(run.conv.send(data) if from_client else run.conv.reply(data))
    assert run.analyzer._state[run.flow.uid].emitted
    assert "tls" not in run.flow.inspector_names
    run.finish()
    assert run.analyzer._state == {}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.one_of(
                st.binary(min_size=1, max_size=300),
                st.binary(max_size=300).map(lambda b: b"\x16\x03\x01" + b),
                st.binary(max_size=300).map(lambda b: b"\x16\x03\x03\x01\x00\x01" + b),
                st.binary(max_size=40).map(lambda b: b"\x14\x03\x03\x00\x01\x01\x17\x03\x03" + b),
            ),
            st.integers(min_value=0, max_value=3),
        ),
        max_size=12,
    )
)
def test_fuzz_hooks_never_raise(segments: list[tuple[bool, bytes, int]]) -> None:
    """Arbitrary bytes in both directions, with gaps, never make a hook raise."""
    ctx = RecordingContext()
    analyzer = TlsAnalyzer(ctx)
    flow = make_flow(make_packet(b""))
    for from_client, payload, gap in segments:
        kwargs = {} if from_client else {"src": "203.0.113.10", "dst": "192.168.1.3"}
        pkt = make_packet(payload, **kwargs)  # type: ignore[arg-type]
        if not from_client:
            pkt.sport, pkt.dport = 443, 50000
        pkt.gap = gap
        analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    assert analyzer._state == {}
    assert len(ctx.records) <= 1


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(6)), st.lists(st.integers(0, 5), max_size=4))
def test_fuzz_any_delivery_order_reads_the_hello(order: list[int], repeats: list[int]) -> None:
    """Any order of six segments, with some repeated, yields the hello exactly once."""
    run = Run()
    hs = run.conv.handshake()
    data = record(spec_hello())
    step = -(-len(data) // 6)
    pieces = [run.conv.send(data[i : i + step]) for i in range(0, len(data), step)]
    run.feed(*hs, *(pieces[i] for i in [*order, *repeats]))
    [rec] = run.finish()
    assert rec.ja4 == "t13d1516h2_8daaf6152771_e5627efa2ab1"


def adat_lines(from_client: bool, data: bytes, *, done: bool = False) -> bytes:
    """One flight of TLS records as an RFC 2228 ADAT token: a client's `ADAT` command, a
    server's `335 ADAT=` reply (`235` when the exchange is done)."""
    token = base64.b64encode(data)
    if from_client:
        return b"ADAT " + token + b"\r\n"
    return (b"235" if done else b"335") + b" ADAT=" + token + b"\r\n"


def test_tls_in_ftp_adat_tokens_is_read(certdir: Path) -> None:
    """GSI's security exchange (GridFTP): after `AUTH GSSAPI`, the TLS handshake travels
    base64-encoded in ADAT commands and replies, each line cut over segments here; the
    analyzer reads the hellos from the decoded tokens and follows the records to the end."""
    run = Run()
    run.conv = TcpConversation(server=("203.0.113.10", 2811))
    run.feed(
        *run.conv.handshake(),
        run.conv.reply(b"220 GridFTP Server ready.\r\n"),
        run.conv.send(b"AUTH GSSAPI\r\n"),
        run.conv.reply(b"334 Using authentication type; ADAT must follow.\r\n"),
    )
    flights = full_handshake(certdir, ssl.TLSVersion.TLSv1_2)[:4]
    for i, (from_client, data) in enumerate(flights):
        line = adat_lines(from_client, data, done=i == len(flights) - 1)
        for part in (line[:7], line[7:100], line[100:]):  # a line cut anywhere
            run.feed(run.conv.send(part) if from_client else run.conv.reply(part))
    [rec] = run.records()
    assert rec.server_name == "drone.example" and rec.version == "TLSv1.2"
    assert rec.established and rec.cipher is not None
    assert run.flow.service == "tls"


def test_an_ftp_session_without_adat_gives_no_tls(certdir: Path) -> None:
    """A plain FTP session (no ADAT, a reply that names none) is not taken for TLS; a token
    that is not base64, even the direction's first, stops its reading for good (a valid token
    after it is not read)."""
    run = Run()
    run.conv = TcpConversation(server=("203.0.113.10", 21))
    run.feed(
        *run.conv.handshake(),
        run.conv.reply(b"220 ready\r\n"),
        run.conv.send(b"USER anonymous\r\n"),
        run.conv.reply(b"331 ADAT is not a word here\r\n"),
        run.conv.send(b"ADAT !!!not base64!!!\r\n"),
        run.conv.reply(b"335 ADAT=FgMB\r\n"),
    )
    client_hello = full_handshake(certdir, ssl.TLSVersion.TLSv1_2)[0][1]
    run.feed(run.conv.send(adat_lines(True, client_hello)))
    assert run.finish() == []


def test_gridftp_capture() -> None:
    """Zeek's globus-url-copy.pcap (its GridFTP test's ssl.log): the control channel's TLS,
    read from its ADAT tokens, and the data channel's, read directly."""
    records = pipeline_records(capture(THIRD_PARTY / "zeek" / "globus-url-copy.pcap"), TlsRecord)
    by_port = {r.resp_p: r for r in records}
    assert sorted(by_port) == [2811, 55968]
    control = by_port[2811]
    assert (control.version, control.cipher) == ("TLSv1.0", "TLS_RSA_WITH_AES_256_CBC_SHA")
    assert control.established
    assert by_port[55968].cipher == "TLS_RSA_WITH_NULL_SHA"


def ws_frames(from_client: bool, data: bytes) -> bytes:
    """TLS records in one WebSocket binary frame: masked from the client (RFC 6455 5.3)."""
    mask = b"\x5a\x13\xc7\x02" if from_client else b""
    head = bytes([0x82, (0x80 if mask else 0) | 126]) + len(data).to_bytes(2, "big")
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return head + mask + data


def test_tls_in_a_websocket_tunnel_is_read(certdir: Path) -> None:
    """A WebSocket upgrade answered by 101, then a TLS handshake in binary frames (a tunnel,
    as wstunnel makes), frames cut over segments: the inner handshake is read, its server name
    the tunnel's real destination."""
    run = Run()
    run.conv = TcpConversation(server=("203.0.113.10", 8888))
    run.feed(
        *run.conv.handshake(),
        run.conv.send(
            b"GET /v1/events HTTP/1.1\r\nHost: relay.example\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
        run.conv.reply(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        ),
    )
    for from_client, data in full_handshake(certdir, ssl.TLSVersion.TLSv1_3):
        framed = ws_frames(from_client, data)
        for part in (framed[:3], framed[3:50], framed[50:]):
            run.feed(run.conv.send(part) if from_client else run.conv.reply(part))
    [rec] = run.records()
    assert rec.server_name == "drone.example" and rec.version == "TLSv1.3"
    assert rec.established


def test_a_websocket_without_the_101_is_not_read_as_frames(certdir: Path) -> None:
    """A WebSocket request the server refuses (400): no frames follow, nothing is read as TLS."""
    run = Run()
    run.conv = TcpConversation(server=("203.0.113.10", 8888))
    client_hello = full_handshake(certdir, ssl.TLSVersion.TLSv1_3)[0][1]
    run.feed(
        *run.conv.handshake(),
        run.conv.send(b"GET / HTTP/1.1\r\nHost: r\r\nUpgrade: websocket\r\n\r\n"),
        run.conv.reply(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
        run.conv.reply(ws_frames(False, client_hello[:40])),
    )
    assert run.finish() == []


def test_wstunnel_capture() -> None:
    """Zeek's websocket/wstunnel-https.pcap (its wstunnel-https test's ssl.log): the TLS inside
    the tunnel, its server name `zeek.org`."""
    records = pipeline_records(
        capture(THIRD_PARTY / "zeek" / "websocket" / "wstunnel-https.pcap"), TlsRecord
    )
    [rec] = records
    assert rec.server_name == "zeek.org" and rec.resp_p == 8888 and rec.version == "TLSv1.3"


def test_a_session_seen_from_its_middle_is_let_go_at_once() -> None:
    """A connection whose first TLS bytes in view are a record of a session under way
    (application data, no hello before it: the capture began after the handshake) is let go at
    its first segment, not read to the engine's bound; a hello answered by an alert is not such
    a session, and is read (and written) as before."""
    run = Run()
    run.feed(run.conv.send(b"\x17\x03\x03\x01\x00" + bytes(256)))
    assert run.flow.inspector_names == ()
    assert run.finish() == []
    assert under_way(b"\x17\x03\x03\x40\x00") and under_way(b"\x15\x03\x01\x00\x02")
    assert not under_way(b"\x16\x03\x01\x00\x05")  # a handshake: a hello may be in it
    assert not under_way(b"\x17\x03\x00\x00\x05")  # SSL 3's record layer
    assert not under_way(b"\x17\x03\x03\x60\x00")  # longer than a record may be
    assert not under_way(b"\x17\x03\x03")
    answered = Run()
    answered.feed(
        *answered.conv.handshake(),
        answered.conv.send(record(spec_hello())),
        answered.conv.reply(b"\x15\x03\x03\x00\x02\x02\x28"),  # handshake_failure
    )
    [rec] = answered.finish()
    assert rec.server_name == "example.org" and rec.version is None
