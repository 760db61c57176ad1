"""The local-link reader: the first payload, video signatures and a steady control stream between
two local hosts, and nothing for flows it must leave alone."""

from __future__ import annotations

import os

from dronewatch.analyzers.local_link import LocalLinkAnalyzer, LocalLinkOptions
from dronewatch.core.flow import IP_PROTO_TCP, IP_PROTO_UDP, Flow
from tests.factories import RecordingContext, make_flow, make_packet

PHONE, DRONE = "192.168.0.20", "192.168.0.1"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(600)
SPS = b"\x00\x00\x00\x01\x67\x42\xc0\x1e\xd9\x00\xa0\x47\xfe\xc8"
IDR = b"\x00\x00\x00\x01\x65\x88\x84" + os.urandom(900)


def feed(
    payloads: list[tuple[bool, bytes]],
    *,
    gap: float = 0.04,
    proto: int = IP_PROTO_UDP,
    src: str = PHONE,
    dst: str = DRONE,
    options: LocalLinkOptions | None = None,
) -> Flow:
    """Run (from_orig, payload) datagrams `gap` seconds apart through the analyzer; the flow."""
    analyzer = LocalLinkAnalyzer(RecordingContext(), options)
    first = make_packet(payloads[0][1], src=src, dst=dst, sport=5000, dport=7070, proto=proto)
    flow = make_flow(first)
    assert analyzer.wants(flow)
    for i, (from_orig, data) in enumerate(payloads):
        a, b = (src, dst) if from_orig else (dst, src)
        pa, pb = (5000, 7070) if from_orig else (7070, 5000)
        pkt = make_packet(data, src=a, dst=b, sport=pa, dport=pb, proto=proto, ts=i * gap)
        analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    return flow


def test_first_payload_is_kept_for_the_rule_packs() -> None:
    flow = feed([(True, bytes.fromhex("66148080800299") + bytes(20))])
    assert flow.meta["first_payload"] == "66148080800299" + "00" * 9


def test_jpeg_after_a_vendor_header_is_video_from_its_sender() -> None:
    flow = feed([(True, b"\x01\x02"), (False, b"\x40\x40\x00\x01\x00\x00\x00\x00" + JPEG)])
    assert (flow.meta["video"], flow.meta["video_from"]) == ("jpeg", "resp")


def test_h264_sps_and_idr_are_video() -> None:
    assert feed([(False, SPS)]).meta["video"] == "h264"
    assert feed([(False, IDR)]).meta["video"] == "h264"
    # A start code before a slice that is neither SPS nor IDR, or an IDR in a short payload, is
    # not enough on its own.
    assert "video" not in feed([(False, b"\x00\x00\x01\x41" + bytes(900))]).meta
    assert "video" not in feed([(False, IDR[:40])]).meta


def test_rtp_needs_a_run_of_one_stream() -> None:
    def rtp(seq: int, ssrc: int = 0x1234) -> bytes:
        return bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(4) + ssrc.to_bytes(4, "big")

    run = [(False, rtp(s) + bytes(300)) for s in (10, 11, 12)]
    assert feed(run).meta["video"] == "rtp"
    mixed = [(False, rtp(s, ssrc) + bytes(300)) for s, ssrc in ((10, 1), (11, 2), (12, 3))]
    assert "video" not in feed(mixed).meta


def test_large_payloads_fast_are_bulk_video() -> None:
    """Video with no signature (JPEG scan data without its header) is told by size and rate."""
    flow = feed([(False, os.urandom(1080)) for _ in range(20)], gap=0.01)
    assert (flow.meta["video"], flow.meta["video_from"]) == ("bulk", "resp")
    slow = feed([(False, os.urandom(1080)) for _ in range(20)], gap=0.5)
    assert "video" not in slow.meta


def test_steady_small_datagrams_are_a_control_stream() -> None:
    flow = feed([(True, b"\x66" + bytes(18) + b"\x99") for _ in range(20)], gap=0.04)
    assert (flow.meta["control_hz"], flow.meta["control_from"]) == ("25.0", "orig")


def test_bursts_and_slow_streams_are_not_control() -> None:
    burst = [(True, bytes(20))] * 20
    times = LocalLinkOptions(control_regularity=0.75)
    # Irregular: gaps alternate between 1 ms and 200 ms.
    analyzer = LocalLinkAnalyzer(RecordingContext(), times)
    flow = make_flow(make_packet(b"x", src=PHONE, dst=DRONE, proto=IP_PROTO_UDP))
    for i, (_, data) in enumerate(burst):
        ts = (i // 2) * 0.2 + (i % 2) * 0.001
        pkt = make_packet(data, src=PHONE, dst=DRONE, sport=50000, dport=443, ts=ts)
        pkt.proto = IP_PROTO_UDP
        analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    assert "control_hz" not in flow.meta
    assert "control_hz" not in feed([(True, bytes(20))] * 20, gap=1.0).meta  # 1 Hz
    assert "control_hz" not in feed([(True, bytes(20))] * 5).meta  # too few


def test_only_flows_between_two_local_hosts() -> None:
    analyzer = LocalLinkAnalyzer(RecordingContext())
    public = make_flow(make_packet(b"x", src=PHONE, dst="203.0.113.9", proto=IP_PROTO_UDP))
    loop = make_flow(make_packet(b"x", src="127.0.0.1", dst="127.0.0.1", proto=IP_PROTO_UDP))
    tcp = make_flow(make_packet(b"x", src=PHONE, dst=DRONE, proto=IP_PROTO_TCP))
    assert not analyzer.wants(public) and not analyzer.wants(loop) and analyzer.wants(tcp)


def test_a_flow_another_analyzer_named_is_left_alone() -> None:
    """A recognised protocol (here RTSP) or drone link is declined: it is not an unknown link."""
    analyzer = LocalLinkAnalyzer(RecordingContext())
    flow = make_flow(make_packet(JPEG, src=PHONE, dst=DRONE, proto=IP_PROTO_UDP))
    flow.service = "rtsp"
    analyzer.packet(flow, make_packet(JPEG, src=DRONE, dst=PHONE, proto=IP_PROTO_UDP))
    assert "video" not in flow.meta and "first_payload" not in flow.meta
