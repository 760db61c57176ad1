"""Tests for the server's side of the QUIC analyzer: its Initial packets decrypted, its
ServerHello read into the quic record (TLS version, cipher suite, server connection ID)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import encode_quic_retry
from aioquic.tls import CipherSuite

from dronewatch.analyzers._tls_hello import TLS_HRR_RANDOM
from dronewatch.analyzers.quic import (
    QUIC_VERSION_1,
    QUIC_VERSION_2,
    QuicAnalyzer,
    QuicOptions,
    QuicRecord,
    _CryptoStream,
    client_initial_keys,
    decrypt_initial,
    parse_long_header,
    server_initial_keys,
)
from dronewatch.core.flow import Flow, Packet
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, make_flow, make_udp
from tests.unit.analyzers.test_quic import RFC_CLIENT_HELLO, RFC_DCID, SCID, crypto, initial
from tests.unit.analyzers.test_tls_hello import make_certificate

CLIENT, SERVER = "192.168.1.3", "203.0.113.10"
CLIENT_ADDR, SERVER_ADDR = (CLIENT, 50000), (SERVER, 443)


@pytest.fixture(scope="module")
def certdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a throw-away server certificate."""
    directory = tmp_path_factory.mktemp("quic")
    make_certificate(directory)
    return directory


class Exchange:
    """The first flights of a real aioquic client and server (an independent implementation),
    run in memory: the client's datagrams, the server's answer, and the server's own CID."""

    def __init__(
        self,
        certdir: Path,
        version: int,
        *,
        cipher: CipherSuite = CipherSuite.CHACHA20_POLY1305_SHA256,
        retry: bool = False,
    ) -> None:
        client_conf = QuicConfiguration(
            is_client=True,
            alpn_protocols=["h3"],
            server_name="drone.example",
            supported_versions=[version],
        )
        client_conf.verify_mode = ssl.CERT_NONE
        server_conf = QuicConfiguration(
            is_client=False, alpn_protocols=["h3"], supported_versions=[version]
        )
        server_conf.cipher_suites = [cipher]
        server_conf.load_cert_chain(certdir / "cert.pem", certdir / "key.pem")
        client = QuicConnection(configuration=client_conf)
        client.connect(SERVER_ADDR, now=1.0)
        self.client = [d for d, _ in client.datagrams_to_send(now=1.0)]
        original = parse_long_header(self.client[0]).dcid
        self.retry: bytes | None = None
        retry_cid: bytes | None = None
        if retry:
            # What a server sends to have the client prove its address (RFC 9000 8.1.2): the
            # client starts again with the Retry's source CID as destination.
            retry_cid = bytes.fromhex("a1a2a3a4a5a6a7a8")
            scid = parse_long_header(self.client[0]).scid
            self.retry = encode_quic_retry(version, retry_cid, scid, original, b"token")
            client.receive_datagram(self.retry, SERVER_ADDR, now=1.1)
            self.client += [d for d, _ in client.datagrams_to_send(now=1.1)]
        server = QuicConnection(
            configuration=server_conf,
            original_destination_connection_id=original,
            retry_source_connection_id=retry_cid,
        )
        for datagram in self.client[-1:] if retry else self.client:
            server.receive_datagram(datagram, CLIENT_ADDR, now=1.2)
        self.server = [d for d, _ in server.datagrams_to_send(now=1.2)]
        self.server_cid = server.host_cid


def from_client(payload: bytes, ts: float = 20.0) -> Packet:
    return make_udp(payload, src=CLIENT, dst=SERVER, sport=50000, dport=443, ts=ts)


def from_server(payload: bytes, ts: float = 20.1) -> Packet:
    return make_udp(payload, src=SERVER, dst=CLIENT, sport=443, dport=50000, ts=ts)


def run(
    client: list[bytes], server: list[bytes], options: QuicOptions | None = None
) -> tuple[Flow, list[QuicRecord], QuicAnalyzer, RecordingContext]:
    """The client's datagrams, then the server's, through a fresh analyzer (not ending the
    flow)."""
    ctx = RecordingContext()
    analyzer = QuicAnalyzer(ctx, options)
    flow = make_flow(from_client(client[0]))
    flow.inspector_names = ("quic",)
    for i, datagram in enumerate(client):
        analyzer.packet(flow, from_client(datagram, ts=20.0 + i))
    for datagram in server:
        analyzer.packet(flow, from_server(datagram))
    return flow, [r for r in ctx.of("quic") if isinstance(r, QuicRecord)], analyzer, ctx


@pytest.mark.parametrize(("version", "name"), [(QUIC_VERSION_1, "1"), (QUIC_VERSION_2, "2")])
@pytest.mark.parametrize(
    ("cipher", "cipher_name"),
    [
        (CipherSuite.CHACHA20_POLY1305_SHA256, "TLS_CHACHA20_POLY1305_SHA256"),
        (CipherSuite.AES_256_GCM_SHA384, "TLS_AES_256_GCM_SHA384"),
    ],
)
def test_the_servers_hello_is_read_from_its_initial(
    certdir: Path, version: int, name: str, cipher: CipherSuite, cipher_name: str
) -> None:
    """The server's first datagram (Initial with the ServerHello, coalesced with Handshake
    packets) gives the TLS version and cipher it chose and its connection ID; the record is
    written then, and the analyzer lets the flow go."""
    ex = Exchange(certdir, version, cipher=cipher)
    flow, records, analyzer, ctx = run(ex.client, [])
    assert records == []  # the ClientHello alone: waiting for the server
    assert flow.waiting == (("quic", "the server's Initial", "resp", 0),)
    assert flow.meta["quic_sni"] == "drone.example"
    for datagram in ex.server:
        analyzer.packet(flow, from_server(datagram))
    [rec] = ctx.of("quic")
    assert isinstance(rec, QuicRecord)
    assert rec.version == name and rec.server_name == "drone.example" and rec.alpn == ("h3",)
    assert rec.tls_version == "TLSv1.3" and rec.cipher == cipher_name
    assert rec.server_scid == ex.server_cid.hex()
    assert rec.ts == 20.0  # the client's first Initial
    assert flow.inspector_names == () and flow.waiting == ()
    analyzer.flow_end(flow)
    assert len(ctx.of("quic")) == 1
    assert analyzer._state == {}


def test_a_retry_starts_a_new_attempt_whose_keys_come_from_the_new_dcid(certdir: Path) -> None:
    """A Retry ends the attempt (its record is written, without a server side); the client's
    next Initial, toward the Retry's source CID, is a new attempt, and the server's Initials
    after it are protected with keys from that CID (RFC 9001 5.2): they decrypt. Two records,
    as Zeek's quic.log has for such a connection."""
    ex = Exchange(certdir, QUIC_VERSION_1, retry=True)
    assert ex.retry is not None
    first = parse_long_header(ex.client[0]).dcid
    again = parse_long_header(ex.client[-1]).dcid
    assert again != first
    ctx = RecordingContext()
    analyzer = QuicAnalyzer(ctx)
    flow = make_flow(from_client(ex.client[0]))
    flow.inspector_names = ("quic",)
    analyzer.packet(flow, from_client(ex.client[0]))
    analyzer.packet(flow, from_server(ex.retry))
    [attempt] = ctx.of("quic")
    assert isinstance(attempt, QuicRecord)
    assert attempt.dcid == first.hex() and attempt.server_name == "drone.example"
    assert (attempt.tls_version, attempt.cipher, attempt.server_scid) == (None, None, "")
    analyzer.packet(flow, from_server(ex.retry))  # a second Retry is dropped, as a client does
    assert len(ctx.of("quic")) == 1
    for datagram in ex.client[1:]:
        analyzer.packet(flow, from_client(datagram, ts=21.0))
    for datagram in ex.server:
        analyzer.packet(flow, from_server(datagram))
    [_, rec] = ctx.of("quic")
    assert isinstance(rec, QuicRecord)
    assert rec.dcid == again.hex() and rec.ts == 21.0 and rec.server_name == "drone.example"
    assert rec.tls_version == "TLSv1.3" and rec.cipher == "TLS_CHACHA20_POLY1305_SHA256"
    assert rec.server_scid == ex.server_cid.hex()
    assert flow.inspector_names == ()


def test_the_server_initial_does_not_decrypt_with_the_clients_keys(certdir: Path) -> None:
    """Each end has its own keys: the server's Initial opens only with `server in` ones."""
    ex = Exchange(certdir, QUIC_VERSION_1)
    dcid = parse_long_header(ex.client[0]).dcid
    header = parse_long_header(ex.server[0])
    assert header.is_initial
    _, frames = decrypt_initial(ex.server[0], header, server_initial_keys(dcid, QUIC_VERSION_1))
    assert frames
    with pytest.raises(DecodeError, match="does not authenticate"):
        decrypt_initial(ex.server[0], header, client_initial_keys(dcid, QUIC_VERSION_1))


def test_a_client_seen_one_way_is_logged_when_the_flow_ends(certdir: Path) -> None:
    """Without the server's side the analyzer waits for it (the engine stops a flow whose
    readers all wait, `stall_packets`); the record is written at the flow's end, without the
    server's fields."""
    ex = Exchange(certdir, QUIC_VERSION_1)
    short = bytes([0x40]) + bytes(60)  # the client's later 1-RTT packets
    flow, records, analyzer, ctx = run([*ex.client, short, short], [])
    assert records == [] and flow.waiting
    analyzer.flow_end(flow)
    [rec] = ctx.of("quic")
    assert isinstance(rec, QuicRecord)
    assert rec.server_name == "drone.example"
    assert (rec.tls_version, rec.cipher, rec.server_scid) == (None, None, "")


def test_server_datagrams_without_a_hello_are_bounded(certdir: Path) -> None:
    """Server datagrams that carry no Initial that decrypts (1-RTT, a corrupted Initial) are
    read up to `max_initial_packets`; then the record is written without the server's side."""
    ex = Exchange(certdir, QUIC_VERSION_1)
    broken = bytearray(ex.server[0])
    broken[60] ^= 0xFF  # inside the protected payload: the tag fails
    flow, records, _, _ = run(ex.client, [bytes(broken)] * 2, QuicOptions(max_initial_packets=3))
    assert records == [] and flow.inspector_names == ("quic",)
    flow, [rec], _, _ = run(ex.client, [bytes(broken)] * 3, QuicOptions(max_initial_packets=3))
    assert rec.server_name == "drone.example" and rec.cipher is None
    assert flow.inspector_names == ()


def _server_hello(random: bytes, suite: int) -> bytes:
    """A TLS 1.3 ServerHello (or HelloRetryRequest, by its random) with supported_versions."""
    body = b"\x03\x03" + random + b"\x00" + suite.to_bytes(2, "big") + b"\x00"
    body += b"\x00\x06" + b"\x00\x2b\x00\x02\x03\x04"
    return b"\x02" + len(body).to_bytes(3, "big") + body


def test_a_hello_retry_request_is_passed_over() -> None:
    """A HelloRetryRequest (RFC 8446 4.1.4) in the server's Initial stream is followed, at the
    next offset, by the ServerHello that counts; a stream of another message is refused."""
    stream = _CryptoStream(1 << 16)
    hrr = _server_hello(TLS_HRR_RANDOM, 0x1301)
    real = _server_hello(bytes(range(32)), 0x1302)
    stream.add(0, hrr)
    assert stream.server_hello() is None
    stream.add(len(hrr), real[:20])
    assert stream.server_hello() is None
    stream.add(len(hrr) + 20, real[20:])
    hello = stream.server_hello()
    assert hello is not None and hello.cipher_suite == 0x1302 and hello.version == 0x0304
    other = _CryptoStream(1 << 16)
    other.add(0, b"\x08\x00\x00\x02\x00\x00")  # EncryptedExtensions: not an Initial message
    with pytest.raises(DecodeError, match="handshake type 8"):
        other.server_hello()


def server_initial(frames: bytes, dcid: bytes, scid: bytes, version: int = QUIC_VERSION_1) -> bytes:
    """A server Initial packet protected by aioquic with the `server in` keys of `dcid`."""
    pn_len = 2
    type_bits = 0b00 if version == QUIC_VERSION_1 else 0b01
    length = pn_len + len(frames) + 16
    header = bytes([0xC0 | type_bits << 4 | (pn_len - 1)]) + version.to_bytes(4, "big")
    header += bytes([len(SCID)]) + SCID + bytes([len(scid)]) + scid
    header += b"\x00" + (0x4000 | length).to_bytes(2, "big") + (0).to_bytes(pn_len, "big")
    pair = CryptoPair()
    pair.setup_initial(cid=dcid, is_client=False, version=version)
    return pair.encrypt_packet(header, frames, 0)


def test_a_server_that_answers_before_the_hello_is_complete() -> None:
    """The server's ServerHello read before the client's last Initial (a ClientHello over two
    datagrams, the capture's order across the directions): the record is written once the
    client's side is read too."""
    hello = _server_hello(bytes(range(32)), 0x1303)
    first = initial(crypto(0, RFC_CLIENT_HELLO[:100]) + bytes(900), pn=0)
    second = initial(crypto(100, RFC_CLIENT_HELLO[100:]) + bytes(900), pn=1)
    server_cid = bytes.fromhex("f067a5502a4262b5")
    answer = server_initial(crypto(0, hello) + bytes(20), RFC_DCID, server_cid)
    flow, records, analyzer, ctx = run([first], [answer])
    assert records == [] and flow.inspector_names == ("quic",)
    analyzer.packet(flow, from_client(second, ts=21.0))
    [rec] = ctx.of("quic")
    assert isinstance(rec, QuicRecord) and rec.server_name == "example.com"
    assert rec.cipher == "TLS_CHACHA20_POLY1305_SHA256" and rec.tls_version == "TLSv1.3"
    assert rec.server_scid == server_cid.hex()
    assert flow.inspector_names == ()
