"""Tests for the DTLS analyzer: hellos over UDP (fragments, retries, either end the client), the
handshake's end, and tls.jsonl records as Zeek's ssl.log gives them for its DTLS traces."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers._tls_hello import ClientHello, ja4, parse_client_hello
from dronewatch.analyzers.dtls import (
    MAX_FRAGMENTS,
    DtlsAnalyzer,
    DtlsOptions,
    dtls_records,
    starts_handshake,
)
from dronewatch.analyzers.tls import TlsRecord
from dronewatch.core.flow import Flow, Packet
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, capture_records, make_flow, make_udp
from tests.pcaps import THIRD_PARTY, capture

PEER_A = "192.168.6.82"
PEER_B = "74.201.205.9"


def zeek_trace(name: str) -> list[TlsRecord]:
    """The tls records the DTLS analyzer writes for Zeek's tls/<name> trace."""
    path = capture(THIRD_PARTY / "zeek" / "tls" / name)
    records = capture_records(path, DtlsAnalyzer)
    assert all(isinstance(r, TlsRecord) for r in records)
    return [r for r in records if isinstance(r, TlsRecord)]


# --- Zeek's DTLS traces, against ssl.log ----------------------------------------------------------


def test_webrtc_stun_the_responder_is_the_client() -> None:
    """tls/webrtc-stun.pcap: STUN checks first, then the flow's responder sends the ClientHello
    (ICE roles); the record is the flow's, DTLS 1.0 with Zeek's cipher, established."""
    [rec] = zeek_trace("webrtc-stun.pcap")
    assert (rec.orig_h, rec.orig_p, rec.resp_h, rec.resp_p) == (PEER_A, 51462, PEER_B, 43044)
    assert rec.version == "DTLSv1.0" and rec.client_versions == ("DTLSv1.0",)
    assert rec.cipher == "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
    assert rec.established and rec.server_name is None
    assert rec.ja4 is not None and rec.ja4.startswith("dd1i")
    assert rec.retry_ja4 is None and not rec.hello_retry


def test_dtls12_fragmented_hello_after_a_hello_verify_request() -> None:
    """tls/dtls1_2.pcap: the ClientHello comes in two fragments, is sent again with the
    HelloVerifyRequest's cookie (not a retry), and the handshake ends after both Finished."""
    [rec] = zeek_trace("dtls1_2.pcap")
    assert rec.version == "DTLSv1.2"
    assert rec.cipher == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    assert rec.established and rec.retry_ja4 is None and not rec.hello_retry
    assert rec.ja4 is not None and rec.ja4.startswith("dd2i")


def test_dtls10_trace() -> None:
    """tls/dtls1_0.pcap: DTLS 1.0 with Zeek's cipher, established."""
    [rec] = zeek_trace("dtls1_0.pcap")
    assert (rec.version, rec.cipher, rec.established) == (
        "DTLSv1.0",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        True,
    )


def test_dtls13_hello_retry_and_unified_headers() -> None:
    """tls/dtls13-wolfssl.pcap: a HelloRetryRequest, the second ClientHello (`retry_ja4`), the
    ServerHello's DTLS 1.3 (supported_versions), then unified-header records both ways."""
    [rec] = zeek_trace("dtls13-wolfssl.pcap")
    assert rec.version == "DTLSv1.3" and rec.cipher == "TLS_AES_128_GCM_SHA256"
    assert rec.hello_retry and rec.established
    assert rec.ja4 is not None and rec.ja4.startswith("dd3i")
    assert rec.retry_ja4 is not None and rec.retry_ja4 != rec.ja4


def test_dtls13_connection_ids_and_unanswered_hellos() -> None:
    """tls/dtls13-cid.pcap: two connections established with connection IDs in their unified
    headers; three whose ClientHellos got no answer are records without version or cipher."""
    records = zeek_trace("dtls13-cid.pcap")
    assert sorted(r.orig_p for r in records if r.established) == [47904, 57488]
    by_port = {r.orig_p: r for r in records}
    assert len(by_port) == len(records) == 5
    for port in (57488, 47904):
        assert by_port[port].version == "DTLSv1.3" and by_port[port].hello_retry
    for port in (52232, 56544, 58771):
        rec = by_port[port]
        assert (rec.version, rec.cipher, rec.established) == (None, None, False)
        assert rec.client_versions == ("DTLSv1.3",)


# --- crafted datagrams ---------------------------------------------------------------------------


def client_hello_body(*, cookie: bytes = b"", versions: tuple[int, ...] = ()) -> bytes:
    """A DTLS ClientHello body: version 0xfefd, random, empty session id, the cookie, two
    suites, null compression, and supported_versions when given."""
    ext = b""
    if versions:
        listed = b"".join(struct.pack(">H", v) for v in versions)
        ext = struct.pack(">HHB", 0x002B, 1 + len(listed), len(listed)) + listed
    return (
        b"\xfe\xfd"
        + bytes(32)
        + b"\x00"
        + bytes([len(cookie)])
        + cookie
        + b"\x00\x04\xc0\x2b\x13\x01"
        + b"\x01\x00"
        + struct.pack(">H", len(ext))
        + ext
    )


def server_hello_body(suite: int = 0xC02B) -> bytes:
    """A DTLS 1.2 ServerHello body choosing `suite`."""
    return b"\xfe\xfd" + bytes(32) + b"\x00" + struct.pack(">HB", suite, 0) + b"\x00\x00"


def handshake(
    msg_type: int, body: bytes, *, seq: int = 0, offset: int = 0, total: int = -1
) -> bytes:
    """A DTLS handshake message (or a fragment of one, from `offset`, of a `total`-byte body)."""
    length = len(body) if total < 0 else total
    head = bytes([msg_type]) + length.to_bytes(3, "big") + struct.pack(">H", seq)
    return head + offset.to_bytes(3, "big") + len(body).to_bytes(3, "big") + body


def record(content_type: int, payload: bytes, *, epoch: int = 0, seq: int = 0) -> bytes:
    """A DTLS record with the 13-byte header (RFC 6347 4.1)."""
    return (
        bytes([content_type])
        + b"\xfe\xfd"
        + struct.pack(">H", epoch)
        + seq.to_bytes(6, "big")
        + struct.pack(">H", len(payload))
        + payload
    )


def datagram(src: str, dst: str, payload: bytes, ts: float) -> Packet:
    """A UDP datagram between the two peers (ports 40000 and 50000)."""
    sport, dport = (40000, 50000) if src == PEER_A else (50000, 40000)
    return make_udp(payload, src=src, dst=dst, sport=sport, dport=dport, ts=ts)


def run(
    datagrams: list[tuple[str, bytes]], options: DtlsOptions | None = None
) -> tuple[Flow, list[TlsRecord], DtlsAnalyzer]:
    """Hand the datagrams (sender, payload) to a fresh analyzer, PEER_A's first flow."""
    ctx = RecordingContext()
    analyzer = DtlsAnalyzer(ctx, options)
    flow = make_flow(datagram(PEER_A, PEER_B, b"", 0.0))
    for i, (src, payload) in enumerate(datagrams):
        dst = PEER_B if src == PEER_A else PEER_A
        analyzer.packet(flow, datagram(src, dst, payload, 1.0 + i))
    analyzer.flow_end(flow)
    return flow, [r for r in ctx.records if isinstance(r, TlsRecord)], analyzer


FULL_HANDSHAKE = [
    (PEER_A, record(22, handshake(1, client_hello_body()))),
    (PEER_B, record(22, handshake(2, server_hello_body()))),
    (PEER_A, record(20, b"\x01") + record(22, bytes(40), epoch=1)),
    (PEER_B, record(20, b"\x01") + record(22, bytes(40), epoch=1)),
]


def test_a_full_crafted_handshake() -> None:
    """ClientHello, ServerHello, then each side's ChangeCipherSpec and Finished: established
    at the server's Finished; the flow is dtls with the JA4 published."""
    flow, [rec], analyzer = run(FULL_HANDSHAKE)
    assert rec.version == "DTLSv1.2" and rec.cipher == "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
    assert rec.established and rec.ts == 1.0
    assert flow.service == "dtls" and flow.meta["ja4"] == rec.ja4
    assert "dtls" not in flow.inspector_names and analyzer._state == {}


def test_fragments_out_of_order_are_put_together() -> None:
    """A ClientHello in three fragments, the last first, is read once whole."""
    body = client_hello_body(versions=(0xFEFC, 0xFEFD))
    cuts = [(0, body[:20]), (20, body[20:50]), (50, body[50:])]
    first = [(PEER_A, record(22, handshake(1, b, offset=o, total=len(body)))) for o, b in cuts]
    _, [rec], _ = run([first[0], first[2], first[1]])
    assert rec.client_versions == ("DTLSv1.3", "DTLSv1.2")
    assert rec.ja4 is not None and rec.ja4.startswith("dd3i")  # the newest version offered
    assert not rec.established


def test_a_hello_cut_too_fine_is_not_read() -> None:
    """A message in more fragments than MAX_FRAGMENTS is given up (bounded work); the flow
    still writes its ServerHello's record."""
    body = client_hello_body(cookie=bytes(100))
    assert len(body) > MAX_FRAGMENTS + 1
    frags = [
        record(22, handshake(1, body[i : i + 1], offset=i, total=len(body)))
        for i in range(len(body))
    ]
    start = [(PEER_A, b"".join(frags[:1]))]
    rest = [(PEER_A, b"".join(frags[1:]))]
    _, [rec], _ = run(start + rest + [FULL_HANDSHAKE[1]])
    assert rec.ja4 is None and rec.version == "DTLSv1.2"


def test_only_the_first_fragment_starts_reading() -> None:
    """A flow whose first handshake datagram is a later fragment, or STUN, is not started on."""
    body = client_hello_body()
    later = record(22, handshake(1, body[10:], offset=10, total=len(body)))
    stun = bytes.fromhex("000100002112a442") + bytes(12)
    assert not starts_handshake(later) and not starts_handshake(stun)
    _, records, analyzer = run([(PEER_A, stun), (PEER_A, later)])
    assert records == [] and analyzer._state == {}


def test_a_flow_of_another_protocol_is_declined() -> None:
    """A flow another analyzer recognised is left alone."""
    ctx = RecordingContext()
    analyzer = DtlsAnalyzer(ctx)
    pkt = datagram(PEER_A, PEER_B, FULL_HANDSHAKE[0][1], 1.0)
    flow = make_flow(pkt)
    flow.service = "dns"
    flow.inspector_names = ("dtls",)
    analyzer.packet(flow, pkt)
    assert analyzer._state == {} and flow.inspector_names == ()


def test_the_handshake_wait_is_bounded() -> None:
    """Past max_records records after the hellos, the record is written unestablished."""
    hellos = FULL_HANDSHAKE[:2]
    alerts = [(PEER_A, record(21, b"\x01\x00"))] * 5
    _, [rec], analyzer = run(
        hellos + alerts + [(PEER_A, record(20, b"\x01"))] * 3, DtlsOptions(max_records=2)
    )
    assert not rec.established and analyzer._state == {}


def test_dtls_records_framing() -> None:
    """Records are framed by their 13-byte headers; a unified header ends the reading; a cut
    or foreign record is a DecodeError."""
    two = record(22, b"ab") + record(23, b"cde", epoch=1)
    found, protected = dtls_records(two + bytes([0x2E, 0x11, 0x22]))
    assert [(r.content_type, r.epoch, r.fragment) for r in found] == [
        (22, 0, b"ab"),
        (23, 1, b"cde"),
    ]
    assert protected == 1
    with pytest.raises(DecodeError):
        dtls_records(two[:-1])
    with pytest.raises(DecodeError):
        dtls_records(b"\x16\x03\x03" + bytes(10))


def test_dtls_client_hello_reads_past_the_cookie() -> None:
    """A DTLS ClientHello's cookie sits between the session id and the suites (RFC 6347
    4.2.1); read as TLS, the same bytes do not give the suites."""
    body = client_hello_body(cookie=b"\x99" * 20)
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    hello = parse_client_hello(message, dtls=True)
    assert hello.cipher_suites == (0xC02B, 0x1301)
    with pytest.raises(DecodeError):
        parse_client_hello(message)


def test_ja4_version_of_dtls_is_the_newest() -> None:
    """JA4's version of a DTLS hello is the newest offered (DTLS versions count down)."""
    hello = ClientHello(
        0xFEFD, bytes(32), b"", (0x1301,), b"\x00", (0x002B,), None, (), (0xFEFD, 0xFEFC)
    )
    assert ja4(hello, "d").startswith("dd3i")
    old = ClientHello(0xFEFF, bytes(32), b"", (0x1301,), b"\x00", ())
    assert ja4(old, "d").startswith("dd1i")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200),
            st.binary(max_size=200).map(lambda b: FULL_HANDSHAKE[0][1][:25] + b),
            st.tuples(st.integers(0, 120), st.binary(min_size=1, max_size=3)).map(
                lambda c: FULL_HANDSHAKE[0][1][: c[0]] + c[1] + FULL_HANDSHAKE[0][1][c[0] + 1 :]
            ),
        ),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_fuzz_hooks_never_raise(payloads: list[bytes], from_a: list[bool]) -> None:
    """Arbitrary and damaged datagrams, from either end, never make a hook raise."""
    _, records, analyzer = run(
        [(PEER_A if a else PEER_B, p) for p, a in zip(payloads, from_a, strict=False)]
    )
    assert len(records) <= 1 and analyzer._state == {}
