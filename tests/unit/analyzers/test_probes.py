"""UDP analyzers give up a flow that shows no sign of their protocol, on the evidence the
protocol's format gives (QUIC, DTLS) or after `probe_packets` datagrams (MAVLink, Tello, Parrot;
QUIC after `max_initial_packets` of a version it cannot read), instead of reading every datagram
up to the engine's inspection bound."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dronewatch.analyzers.dtls import DtlsAnalyzer
from dronewatch.analyzers.mavlink import MavlinkAnalyzer
from dronewatch.analyzers.parrot import ParrotAnalyzer
from dronewatch.analyzers.quic import QuicAnalyzer
from dronewatch.analyzers.tello import TelloAnalyzer
from dronewatch.core.flow import IP_PROTO_UDP
from dronewatch.core.hooks import Context
from tests.factories import RecordingContext, make_flow, make_packet

RTP = bytes.fromhex("80600001") + bytes(8) + b"\x00" * 160
"""An RTP packet (version 2, payload type 96): no QUIC, DTLS or drone link."""
STUN = bytes.fromhex("000100002112a442") + bytes(12)
"""A STUN Binding request, as ICE sends before a WebRTC DTLS handshake."""

Analyzer = Callable[[Context], object]


def datagrams_until_declined(make: Analyzer, payload: bytes, port: int, most: int = 40) -> int:
    """How many datagrams of one client flow the analyzer reads before it declines (`most` + 1:
    never)."""
    analyzer = make(RecordingContext())
    name = analyzer.name  # type: ignore[attr-defined]
    first = make_packet(payload, dport=port, proto=IP_PROTO_UDP)
    flow = make_flow(first)
    flow.inspector_names = (name,)
    for n in range(1, most + 1):
        pkt = make_packet(payload, dport=port, proto=IP_PROTO_UDP, ts=first.ts + n, frame=n)
        analyzer.packet(flow, pkt)  # type: ignore[attr-defined]
        if name not in flow.inspector_names:
            return n
    return most + 1


@pytest.mark.parametrize(
    ("make", "payload", "port", "declined_at"),
    [
        (QuicAnalyzer, RTP[:1].replace(b"\x80", b"\x40") + RTP[1:], 443, 1),  # short header
        (QuicAnalyzer, b"\x68\x01\x0d" + bytes(20), 8080, 1),  # no QUIC at all
        (QuicAnalyzer, RTP, 5004, 1),  # the high bit, but no fixed bit
        # A version to negotiate: a client Initial of a version with keys may follow, within
        # `max_initial_packets` datagrams.
        (QuicAnalyzer, b"\xc0\x1a\x2a\x3a\x4a" + bytes(20), 9999, 8),
        (DtlsAnalyzer, RTP, 5004, 1),  # RTP is keyed by a handshake already done
        (DtlsAnalyzer, b"\x5a\xc3\x00\x00" + bytes(10), 19798, 1),  # no RFC 7983 range
        (DtlsAnalyzer, STUN, 3478, 41),  # ICE checks come before the handshake
        (MavlinkAnalyzer, RTP, 14550, 8),
        (TelloAnalyzer, RTP, 5004, 8),
        (ParrotAnalyzer, RTP, 5004, 8),
    ],
    ids=[
        "quic-short-header",
        "quic-other",
        "quic-no-fixed-bit",
        "quic-unknown-version",
        "dtls-rtp",
        "dtls-other",
        "dtls-stun",
        "mavlink",
        "tello",
        "parrot",
    ],
)
def test_udp_analyzers_give_up_flows_without_their_protocol(
    make: Analyzer, payload: bytes, port: int, declined_at: int
) -> None:
    assert datagrams_until_declined(make, payload, port) == declined_at
