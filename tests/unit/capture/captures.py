"""Write small pcap and pcapng files byte by byte (the formats' own layouts) for reader tests."""

from __future__ import annotations

import struct
from collections.abc import Sequence


def pcap_bytes(
    frames: Sequence[tuple[float, bytes]],
    *,
    linktype: int = 1,
    endian: str = "<",
    nano: bool = False,
    snaplen: int = 65535,
    wirelen: int | None = None,
) -> bytes:
    """A classic pcap file holding `frames` as (time, bytes)."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data in frames:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        orig = wirelen if wirelen is not None else len(data)
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), orig) + data)
    return b"".join(out)


def _block(btype: int, body: bytes, endian: str = "<") -> bytes:
    body = body + b"\x00" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(endian + "II", btype, length) + body + struct.pack(endian + "I", length)


def shb(endian: str = "<") -> bytes:
    """A section header block."""
    return _block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def idb(linktype: int, *, tsresol: int | None = None, endian: str = "<") -> bytes:
    """An interface description block, optionally with if_tsresol."""
    body = struct.pack(endian + "HHI", linktype, 0, 65535)
    if tsresol is not None:
        body += struct.pack(endian + "HHB3x", 9, 1, tsresol) + struct.pack(endian + "HH", 0, 0)
    return _block(1, body, endian)


def epb(
    iface: int, ts_units: int, data: bytes, *, endian: str = "<", orig: int | None = None
) -> bytes:
    """An enhanced packet block; `ts_units` in the interface's resolution."""
    body = struct.pack(
        endian + "IIIII",
        iface,
        ts_units >> 32,
        ts_units & 0xFFFFFFFF,
        len(data),
        orig if orig is not None else len(data),
    )
    return _block(6, body + data, endian)


def spb(data: bytes, endian: str = "<") -> bytes:
    """A simple packet block."""
    return _block(3, struct.pack(endian + "I", len(data)) + data, endian)


def isb(iface: int, drops: int, endian: str = "<") -> bytes:
    """An interface statistics block carrying isb_ifdrop."""
    body = struct.pack(endian + "III", iface, 0, 0)
    body += struct.pack(endian + "HHQ", 5, 8, drops) + struct.pack(endian + "HH", 0, 0)
    return _block(5, body, endian)


def unknown_block() -> bytes:
    """A custom block type readers must skip."""
    return _block(0x00000BAD, b"opaque data")
