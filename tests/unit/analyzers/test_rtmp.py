"""RTMP analyzer: AMF0 and chunk decoding with byte literals, the recorded streams, fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.rtmp import (
    CLIENT_HANDSHAKE,
    ChunkReader,
    RtmpAnalyzer,
    RtmpRecord,
    decode_amf0,
)
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, capture_records, make_flow, make_packet
from tests.pcaps import PCAPS


def amf_str(text: str) -> bytes:
    raw = text.encode()
    return b"\x02" + struct.pack("!H", len(raw)) + raw


def amf_obj(props: dict[str, str]) -> bytes:
    out = b"\x03"
    for k, v in props.items():
        out += struct.pack("!H", len(k)) + k.encode() + amf_str(v)
    return out + b"\x00\x00\x09"


def amf_num(n: float) -> bytes:
    return b"\x00" + struct.pack("!d", n)


def chunk0(csid: int, type_id: int, body: bytes, chunk_size: int = 128, ts: int = 0) -> bytes:
    """A message as chunks: one format-0 chunk, then format-3 chunks."""
    ext = ts >= 0xFFFFFF
    head = bytes([csid]) + min(ts, 0xFFFFFF).to_bytes(3, "big") + len(body).to_bytes(3, "big")
    head += bytes([type_id]) + b"\x00\x00\x00\x00" + (struct.pack("!I", ts) if ext else b"")
    out = head + body[:chunk_size]
    for i in range(chunk_size, len(body), chunk_size):
        out += bytes([0xC0 | csid]) + (struct.pack("!I", ts) if ext else b"")
        out += body[i : i + chunk_size]
    return out


CONNECT = (
    amf_str("connect")
    + amf_num(1)
    + amf_obj(
        {"app": "live", "tcUrl": "rtmp://live.example-user-stream.net/live", "flashVer": "FMLE/3.0"}
    )
)
PUBLISH = amf_str("publish") + amf_num(5) + b"\x05" + amf_str("abc") + amf_str("live")


def test_amf0_values() -> None:
    """Numbers, booleans, strings, null, objects, ECMA and strict arrays decode."""
    data = amf_num(2.5) + b"\x01\x01" + amf_str("x") + b"\x05" + amf_obj({"k": "v"})
    data += b"\x08\x00\x00\x00\x01" + b"\x00\x01a" + amf_num(1) + b"\x00\x00\x09"
    data += b"\x0a\x00\x00\x00\x02" + amf_num(1) + amf_num(2)
    assert decode_amf0(data) == [2.5, True, "x", None, {"k": "v"}, {"a": 1.0}, [1.0, 2.0]]


@pytest.mark.parametrize("bad", [b"\x02\x00\x05ab", b"\x03\x00\x01k", b"\x0d", b"\x00\x01"])
def test_amf0_errors(bad: bytes) -> None:
    """Truncated values, a missing object end and unknown markers are decode errors."""
    with pytest.raises(DecodeError):
        decode_amf0(bad)


def test_chunks_reassemble_across_chunk_size_change() -> None:
    """A Set Chunk Size message changes how the next message is cut, and both are read."""
    reader = ChunkReader()
    body = CONNECT * 3  # longer than 128 and than 200
    data = chunk0(2, 1, struct.pack("!I", 200)) + chunk0(3, 20, body, chunk_size=200)
    buf = bytearray(data)
    messages = reader.read(buf)
    assert reader.chunk_size == 200 and not buf
    assert messages[-1] == (20, body)


def test_extended_timestamp_chunks() -> None:
    """Chunks whose timestamp needs the 4-byte extension are read, continuations included."""
    body = CONNECT * 2
    buf = bytearray(chunk0(3, 20, body, ts=0x1000000))
    assert ChunkReader().read(buf) == [(20, body)]


def test_incomplete_chunk_waits() -> None:
    """A chunk cut short is left in the buffer until the rest arrives."""
    data = chunk0(3, 20, CONNECT)
    buf = bytearray(data[:20])
    reader = ChunkReader()
    assert reader.read(buf) == [] and len(buf) == 20
    buf += data[20:]
    assert reader.read(buf) == [(20, CONNECT)]


def test_analyzer_reads_connect_and_publish() -> None:
    """Handshake, connect and publish in a few segments give one record with target and stream."""
    ctx = RecordingContext()
    analyzer = RtmpAnalyzer(ctx)
    stream = b"\x03" + bytes(CLIENT_HANDSHAKE - 1) + chunk0(3, 20, CONNECT) + chunk0(4, 20, PUBLISH)
    seq = 1000
    first = make_packet(stream[:1000], dport=1935, tcp_seq=seq)
    flow = make_flow(first)
    for i in range(0, len(stream), 1000):
        analyzer.packet(flow, make_packet(stream[i : i + 1000], dport=1935, tcp_seq=seq + i))
    analyzer.flow_end(flow)
    (rec,) = [r for r in ctx.records if isinstance(r, RtmpRecord)]
    assert (rec.app, rec.tc_url, rec.stream, rec.action) == (
        "live",
        "rtmp://live.example-user-stream.net/live",
        "abc",
        "publish",
    )
    assert flow.service == "rtmp"
    assert flow.meta["rtmp_url"] == "rtmp://live.example-user-stream.net/live/abc"


def test_not_rtmp_is_left_alone() -> None:
    """A flow not opening with the RTMP version byte gets no record."""
    ctx = RecordingContext()
    analyzer = RtmpAnalyzer(ctx)
    pkt = make_packet(b"\x16\x03\x01" + bytes(100), dport=1935)
    flow = make_flow(pkt)
    analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    assert ctx.records == []


@pytest.mark.parametrize(
    ("capture", "tc_url", "stream"),
    [
        (PCAPS / "lab" / "rtmp.pcap", "rtmp://127.0.0.1:1935/live", "dronestream"),
        (
            PCAPS / "scenarios" / "dji_fly_ldm_off.pcap",
            "rtmp://live.example-user-stream.net/live",
            "abc",
        ),
    ],
)
def test_recorded_ffmpeg_publish(capture: object, tc_url: str, stream: str) -> None:
    """ffmpeg's real RTMP publish: connect target, stream name and the command sequence."""
    (rec,) = [
        r
        for r in capture_records(capture, RtmpAnalyzer)  # type: ignore[arg-type]
        if isinstance(r, RtmpRecord)
    ]
    assert (rec.tc_url, rec.stream, rec.action, rec.app) == (tc_url, stream, "publish", "live")
    assert rec.commands[:4] == ("connect", "releaseStream", "FCPublish", "createStream")
    assert rec.flash_ver is not None and rec.flash_ver.startswith("FMLE/3.0")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_decoders_raise_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes into the AMF0 and chunk decoders raise only DecodeError."""
    for fn in (lambda: decode_amf0(data), lambda: ChunkReader().read(bytearray(data))):
        try:
            fn()
        except DecodeError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=600), max_size=6))
def test_fuzz_analyzer_raises_nothing(segments: list[bytes]) -> None:
    """After a real handshake, arbitrary client bytes raise nothing from the analyzer."""
    ctx = RecordingContext()
    analyzer = RtmpAnalyzer(ctx)
    stream = b"\x03" + bytes(CLIENT_HANDSHAKE - 1) + b"".join(segments)
    flow = make_flow(make_packet(stream[:1500], dport=1935))
    for i in range(0, len(stream), 1500):
        analyzer.packet(flow, make_packet(stream[i : i + 1500], dport=1935, tcp_seq=1000 + i))
    analyzer.flow_end(flow)
