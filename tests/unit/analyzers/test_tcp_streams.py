"""Every TCP analyzer reads its protocol through the one stream layer: swapping segments of a
real capture, or sending one twice, changes none of its records."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from dronewatch.capture.base import RawPacket
from dronewatch.capture.files import FileSource
from dronewatch.core.flow import IP_PROTO_TCP
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, Pipeline
from tests.pcaps import PCAPS, THIRD_PARTY, capture

CASES = [
    pytest.param(PCAPS / "lab" / "http.pcap", "http", id="http"),
    pytest.param(PCAPS / "lab" / "tls_sni.pcap", "tls", id="tls"),
    pytest.param(PCAPS / "lab" / "mqtt_v311.pcap", "mqtt", id="mqtt"),
    pytest.param(PCAPS / "lab" / "rtmp.pcap", "rtmp", id="rtmp"),
    pytest.param(PCAPS / "lab" / "rtsp.pcap", "rtsp", id="rtsp"),
    pytest.param(PCAPS / "lab" / "dns.pcap", "dns", id="dns-over-tcp"),
    pytest.param(
        THIRD_PARTY / "mavlink" / "judep90_mavlink_tcp5760.pcapng", "mavlink", id="mavlink-tcp"
    ),
    pytest.param(PCAPS / "scenarios" / "parrot_freeflight.pcap", "parrot", id="parrot-discovery"),
]


def records(raws: list[RawPacket], log: str) -> list[dict[str, Any]]:
    """The records of `log` for these frames in this order, their times left out (bytes that
    wait for an earlier segment are read when it comes)."""
    got: list[Record] = []
    pipe = Pipeline(got.append, AnalysisConfig())
    for raw in raws:
        pipe.feed(raw)
    pipe.engine.finish()
    out = []
    for rec in got:
        if rec.log == log:
            data = rec.to_dict()
            data.pop("ts", None)
            out.append(data)
    return out


LINK_HEADER = {1: 14, 0: 4, 108: 4, 101: 0, 228: 0, 229: 0}
"""Bytes before the IP header, by link type, in the captures used here."""


def _split(raw: RawPacket) -> tuple[RawPacket, RawPacket] | None:
    """A TCP data frame cut into two frames at the middle of its payload (the IP length and the
    second half's sequence number fixed), or None for any other frame."""
    off = LINK_HEADER.get(raw.linktype)
    data = raw.data
    if off is None or len(data) < off + 40:
        return None
    version = data[off] >> 4
    if version == 4:
        ihl = (data[off] & 0x0F) * 4
        proto, end = data[off + 9], off + struct.unpack_from("!H", data, off + 2)[0]
    elif version == 6:
        ihl, proto = 40, data[off + 6]
        end = off + 40 + struct.unpack_from("!H", data, off + 4)[0]
    else:
        return None
    l4 = off + ihl
    if proto != IP_PROTO_TCP or data[l4 + 13] & 0x07:  # SYN, FIN, RST: kept whole
        return None
    start = l4 + (data[l4 + 12] >> 4) * 4
    payload = data[start:end]
    if len(payload) < 2:
        return None
    half = len(payload) // 2
    seq = struct.unpack_from("!I", data, l4 + 4)[0]
    frames = []
    for part, part_seq in ((payload[:half], seq), (payload[half:], seq + half)):
        frame = bytearray(data[:start]) + part
        if version == 4:
            struct.pack_into("!H", frame, off + 2, start - off + len(part))
        else:
            struct.pack_into("!H", frame, off + 4, start - off - 40 + len(part))
        struct.pack_into("!I", frame, l4 + 4, part_seq & 0xFFFFFFFF)
        frames.append(
            RawPacket(raw.ts, raw.linktype, bytes(frame), len(frame), raw.iface, raw.frame)
        )
    return frames[0], frames[1]


def swapped(raws: list[RawPacket]) -> list[RawPacket]:
    """Every TCP data segment cut in two, its second half sent before its first; except the
    first data of a direction whose SYN the capture lacks (a stream without its start begins at
    the first byte seen, as Zeek's does: nothing before it can be read)."""
    out: list[RawPacket] = []
    started: set[bytes] = set()
    for raw in raws:
        halves = _split(raw)
        direction = _direction(raw)
        if halves and direction in started:
            out.extend((halves[1], halves[0]))
        else:
            out.append(raw)
        if direction is not None:
            started.add(direction)
    return out


def _direction(raw: RawPacket) -> bytes | None:
    """The addresses and ports of a TCP frame, as one key."""
    off = LINK_HEADER.get(raw.linktype)
    if off is None or len(raw.data) < off + 40:
        return None
    data, version = raw.data, raw.data[off] >> 4
    if version == 4:
        l4, addrs = off + (data[off] & 0x0F) * 4, data[off + 12 : off + 20]
    else:
        l4, addrs = off + 40, data[off + 8 : off + 40]
    return addrs + data[l4 : l4 + 4]


def doubled(raws: list[RawPacket]) -> list[RawPacket]:
    """Every TCP data segment sent twice."""
    out: list[RawPacket] = []
    for raw in raws:
        out.append(raw)
        if _split(raw) is not None:
            out.append(raw)
    return out


@pytest.mark.parametrize(("path", "log"), CASES)
def test_swapped_segments_change_no_record(path: Path, log: str) -> None:
    """Every data segment cut in two and sent second half first gives the same records as the
    capture in order."""
    raws = list(FileSource(str(capture(path))).packets())
    want = records(raws, log)
    assert want, f"{path.name} has no {log} record to compare"
    assert swapped(raws) != raws
    assert records(swapped(raws), log) == want


@pytest.mark.parametrize(("path", "log"), CASES)
def test_retransmitted_segments_change_no_record(path: Path, log: str) -> None:
    """Every data segment sent twice gives the same records as once."""
    raws = list(FileSource(str(capture(path))).packets())
    assert records(doubled(raws), log) == records(raws, log)
