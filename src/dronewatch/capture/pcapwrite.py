"""Classic pcap bytes (microsecond timestamps, little-endian), for the ring and for downloads."""

from __future__ import annotations

import struct
from collections.abc import Iterable

PCAP_MAGIC_US = 0xA1B2C3D4
FILE_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")


def file_header(linktype: int, snaplen: int = 262144) -> bytes:
    return FILE_HEADER.pack(PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def record(ts: float, data: bytes, wirelen: int) -> bytes:
    """One packet record: header (time, captured and wire lengths) and the bytes."""
    sec = int(ts)
    usec = min(999_999, round((ts - sec) * 1e6))
    return RECORD_HEADER.pack(sec, usec, len(data), max(wirelen, len(data))) + data


def pcap_bytes(linktype: int, packets: Iterable[tuple[float, bytes, int]]) -> bytes:
    """A whole pcap file of (time, frame, wire length) packets."""
    return file_header(linktype) + b"".join(record(ts, data, n) for ts, data, n in packets)
