"""RTSP analyzer: head parsing with byte literals, the recorded push and play, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.rtsp import RtspAnalyzer, RtspRecord, parse_head
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, capture_records, make_flow, make_packet
from tests.pcaps import PCAPS


def feed(segments: list[tuple[bool, bytes]]) -> list[RtspRecord]:
    ctx = RecordingContext()
    analyzer = RtspAnalyzer(ctx)
    seqs = {True: 1000, False: 9000}
    flow = make_flow(make_packet(segments[0][1], dport=554, tcp_seq=1000))
    for client, data in segments:
        if client:
            pkt = make_packet(data, dport=554, tcp_seq=seqs[True])
        else:
            pkt = make_packet(
                data,
                src="203.0.113.10",
                dst="192.168.1.3",
                sport=554,
                dport=50000,
                tcp_seq=seqs[False],
            )
        seqs[client] += len(data)
        analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    return [r for r in ctx.records if isinstance(r, RtspRecord)]


def test_parse_request_and_response() -> None:
    """Request and status lines with their headers (names lower-cased)."""
    req = parse_head(b"ANNOUNCE rtsp://h/push RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 10")
    assert req.is_request and req.first == ("ANNOUNCE", "rtsp://h/push", "RTSP/1.0")
    assert req.headers["cseq"] == "2"
    resp = parse_head(b"RTSP/1.0 454 Session Not Found\r\nCSeq: 3")
    assert not resp.is_request and resp.first == ("RTSP/1.0", "454", "Session Not Found")


@pytest.mark.parametrize(
    "bad",
    [b"GET / HTTP/1.1", b"FETCH rtsp://h RTSP/1.0", b"PLAY rtsp://h RTSP/1.0\r\nno colon here"],
)
def test_parse_rejects(bad: bytes) -> None:
    """HTTP, unknown methods and broken header lines are decode errors."""
    with pytest.raises(DecodeError):
        parse_head(bad)


def test_bodies_and_interleaved_frames_are_skipped() -> None:
    """An SDP body and interleaved RTP between requests do not break the request sequence."""
    sdp = b"v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\n"
    records = feed(
        [
            (
                True,
                b"ANNOUNCE rtsp://h/push RTSP/1.0\r\nCSeq: 1\r\nContent-Length: "
                + str(len(sdp)).encode()
                + b"\r\n\r\n"
                + sdp,
            ),
            (False, b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n"),
            (
                True,
                b"$\x00\x00\x08" + b"RTPRTPRT" + b"RECORD rtsp://h/push RTSP/1.0\r\nCSeq: 2\r\n",
            ),
            (True, b"\r\n$\x01\x00\x04abcd"),
            (False, b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n"),
        ]
    )
    assert [(r.method, r.status_code, r.push) for r in records] == [
        ("ANNOUNCE", 200, True),
        ("RECORD", 200, True),
    ]
    assert records[0].request_body_len == len(sdp)


def test_interleaved_frame_split_over_segments() -> None:
    """An RTP frame longer than its segment is skipped across the next segments."""
    records = feed(
        [
            (True, b"PLAY rtsp://h/live RTSP/1.0\r\nCSeq: 4\r\n\r\n"),
            (True, b"$\x00\x03\xe8" + bytes(500)),
            (True, bytes(500) + b"TEARDOWN rtsp://h/live RTSP/1.0\r\nCSeq: 5\r\n\r\n"),
        ]
    )
    assert [r.method for r in records] == ["PLAY", "TEARDOWN"]


def test_not_rtsp() -> None:
    """HTTP on port 554 is not taken for RTSP."""
    assert feed([(True, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")]) == []


def test_recorded_push_and_play() -> None:
    """ffmpeg pushing then playing back: each request with its status, push marked."""
    records = [
        r
        for r in capture_records(PCAPS / "lab" / "rtsp.pcap", RtspAnalyzer)
        if isinstance(r, RtspRecord)
    ]
    by_conn: dict[int, list[RtspRecord]] = {}
    for r in records:
        by_conn.setdefault(r.orig_p, []).append(r)
    push, play = sorted(by_conn.values(), key=lambda rs: rs[0].ts)
    assert [r.method for r in push] == ["OPTIONS", "ANNOUNCE", "SETUP", "RECORD", "TEARDOWN"]
    assert [r.method for r in play] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY", "TEARDOWN"]
    assert all(r.status_code == 200 for r in records)
    assert push[1].uri == "rtsp://127.0.0.1:8554/push" and push[1].push
    assert "interleaved=0-1" in (push[2].transport or "")
    assert not any(r.push for r in play)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_parse_raises_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes into the head parser raise only DecodeError."""
    try:
        parse_head(data)
    except DecodeError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=200)), max_size=8))
def test_fuzz_analyzer_raises_nothing(segments: list[tuple[bool, bytes]]) -> None:
    """After a real request, arbitrary segments both ways raise nothing from the analyzer."""
    feed([(True, b"OPTIONS rtsp://h/ RTSP/1.0\r\nCSeq: 1\r\n\r\n"), *segments])
