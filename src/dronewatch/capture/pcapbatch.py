"""A run of classic pcap records that lie whole in one read buffer, with their headers as columns.

The bulk path (`dronewatch.bulk`) reads the record headers of thousands of packets at once: the C
extension writes them into columns in one pass (`read_batch`); without it, a Python loop finds the
records and numpy gathers their fields. `raw(i)` gives the reference reader's `RawPacket` for the
packets that still need the per-packet path; `arrays()` gives the columns as numpy arrays, for the
numpy walk. numpy is imported only there, so the C path starts without it.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from dronewatch.capture.base import RawPacket

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    IntArray = npt.NDArray[np.int64]
    FloatArray = npt.NDArray[np.float64]

try:
    from dronewatch._fastpath import record_fields as _c_record_fields
except ImportError:  # not built: the Python loop and numpy below
    _c_record_fields = None  # type: ignore[assignment]

Buffer: TypeAlias = "bytes | mmap.mmap"
"""Where a batch's records lie: a read buffer, or a window of a mapped file (slices are bytes)."""


@dataclass(slots=True)
class BatchArrays:
    """The columns of a `PcapBatch` as numpy arrays (views of the same memory)."""

    data_at: IntArray
    caplen: IntArray
    wirelen: IntArray
    ts: FloatArray


@dataclass(slots=True)
class PcapBatch:
    """Records of one pcap file held in `buf`: record `i` has its frame at `data_at[i]`.

    The columns are memoryviews of 64-bit integers (`ts`: of doubles), one item per record."""

    buf: Buffer
    linktype: int
    first_frame: int
    """Frame number (1-based) of record 0, minus one."""
    data_at: memoryview[int]
    """Offset in `buf` of each frame (after its 16-byte record header)."""
    caplen: memoryview[int]
    wirelen: memoryview[int]
    ts: memoryview[float]
    """Capture time of each frame, computed as the per-packet reader does (identical floats)."""
    wire_bytes: int
    """Sum of the wire lengths."""
    truncated: int
    """Records cut by the snap length."""

    def __len__(self) -> int:
        return len(self.data_at)

    def raw(self, i: int) -> RawPacket:
        """Record `i` as the per-packet reader yields it."""
        start = self.data_at[i]
        return RawPacket(
            self.ts[i],
            self.linktype,
            self.buf[start : start + self.caplen[i]],
            self.wirelen[i],
            0,
            self.first_frame + i + 1,
        )

    def arrays(self) -> BatchArrays:
        """The columns as numpy arrays, without a copy."""
        import numpy as np

        return BatchArrays(
            data_at=np.frombuffer(self.data_at, dtype=np.int64),
            caplen=np.frombuffer(self.caplen, dtype=np.int64),
            wirelen=np.frombuffer(self.wirelen, dtype=np.int64),
            ts=np.frombuffer(self.ts.cast("B"), dtype=np.float64),
        )


def read_batch(
    buf: Buffer,
    pos: int,
    limit: int,
    big_endian: bool,
    nano: bool,
    linktype: int,
    first_frame: int,
) -> tuple[PcapBatch, int]:
    """The records that lie whole in `buf` from `pos` on, and where the first one that does not
    (cut by the buffer's end, or longer than `limit`) starts."""
    if _c_record_fields is not None:
        at, cap, wire, ts, wire_bytes, truncated, pos = _c_record_fields(
            buf, pos, limit, big_endian, nano
        )
        columns = (memoryview(at).cast("q"), memoryview(cap).cast("q"), memoryview(wire).cast("q"))
        return PcapBatch(
            buf, linktype, first_frame, *columns, memoryview(ts).cast("d"), wire_bytes, truncated
        ), pos
    offsets, pos = record_offsets(buf, pos, limit, big_endian)
    return _gather(buf, offsets, ">" if big_endian else "<", nano, linktype, first_frame), pos


def record_offsets(buf: Buffer, pos: int, limit: int, big_endian: bool) -> tuple[list[int], int]:
    """Offsets of the pcap records that lie whole in `buf` from `pos` on, and where the first one
    that does not starts (the Python stand-in for the C `record_fields`)."""
    incl_at = struct.Struct(">I" if big_endian else "<I").unpack_from
    end = len(buf)
    offsets: list[int] = []
    add = offsets.append
    while pos + 16 <= end:
        after = pos + 16 + incl_at(buf, pos + 8)[0]
        if after > end or after - pos - 16 > limit:
            break
        add(pos)
        pos = after
    return offsets, pos


def _gather(
    buf: Buffer, offsets: list[int], endian: str, nano: bool, linktype: int, first_frame: int
) -> PcapBatch:
    """The batch of the records at `offsets`, their header fields gathered with numpy."""
    import numpy as np

    at = np.asarray(offsets, dtype=np.int64)
    u8 = np.frombuffer(buf, dtype=np.uint8)
    fields = u8[at[:, None] + np.arange(16)].copy().view(np.dtype(endian + "u4"))
    # `sec + frac * scale` in float64, as the per-packet reader computes it.
    ts = fields[:, 0].astype(np.float64) + fields[:, 1].astype(np.float64) * (
        1e-9 if nano else 1e-6
    )
    caplen = np.ascontiguousarray(fields[:, 2], dtype=np.int64)
    wirelen = np.ascontiguousarray(fields[:, 3], dtype=np.int64)
    return PcapBatch(
        buf=buf,
        linktype=linktype,
        first_frame=first_frame,
        data_at=(at + 16).data.cast("B").cast("q"),
        caplen=caplen.data.cast("B").cast("q"),
        wirelen=wirelen.data.cast("B").cast("q"),
        ts=ts.data.cast("B").cast("d"),
        wire_bytes=int(wirelen.sum()),
        truncated=int(np.count_nonzero(caplen < wirelen)),
    )
