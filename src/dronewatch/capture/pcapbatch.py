"""A run of classic pcap records that lie whole in one read buffer, with their headers as arrays.

The bulk path (`dronewatch.bulk`) reads the header fields of thousands of packets at once with
numpy instead of one `struct` call per packet; `raw(i)` gives the reference reader's `RawPacket`
for the packets that still need the per-packet path.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from dronewatch.capture.base import RawPacket

try:
    from dronewatch._fastpath import record_offsets as _c_record_offsets
except ImportError:  # not built: the Python loop below
    _c_record_offsets = None  # type: ignore[assignment]

Buffer: TypeAlias = "bytes | mmap.mmap"
"""Where a batch's records lie: a read buffer, or a window of a mapped file (slices are bytes)."""
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def record_offsets(buf: Buffer, pos: int, limit: int, big_endian: bool) -> tuple[IntArray, int]:
    """Offsets of the pcap records that lie whole in `buf` from `pos` on, and where the first one
    that does not (cut by the buffer's end, or longer than `limit`) starts."""
    if _c_record_offsets is not None:
        raw, pos = _c_record_offsets(buf, pos, limit, big_endian)
        return np.frombuffer(raw, dtype=np.int64), pos
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
    return np.asarray(offsets, dtype=np.int64), pos


@dataclass(slots=True)
class PcapBatch:
    """Records of one pcap file held in `buf`: record `i` has its frame at `data_at[i]`."""

    buf: Buffer
    linktype: int
    first_frame: int
    """Frame number (1-based) of record 0, minus one."""
    data_at: IntArray
    """Offset in `buf` of each frame (after its 16-byte record header)."""
    caplen: IntArray
    wirelen: IntArray
    ts: FloatArray
    """Capture time of each frame, computed as the per-packet reader does (identical floats)."""

    @classmethod
    def build(
        cls,
        buf: Buffer,
        offsets: IntArray | list[int],
        endian: str,
        nano: bool,
        linktype: int,
        first_frame: int,
    ) -> PcapBatch:
        at = np.asarray(offsets, dtype=np.int64)
        u8 = np.frombuffer(buf, dtype=np.uint8)
        fields = u8[at[:, None] + np.arange(16)].copy().view(np.dtype(endian + "u4"))
        sec = fields[:, 0].astype(np.float64)
        frac = fields[:, 1].astype(np.float64)
        # `sec + frac * scale` in float64, as the per-packet reader computes it.
        ts = sec + frac * (1e-9 if nano else 1e-6)
        return cls(
            buf=buf,
            linktype=linktype,
            first_frame=first_frame,
            data_at=at + 16,
            caplen=fields[:, 2].astype(np.int64),
            wirelen=fields[:, 3].astype(np.int64),
            ts=ts,
        )

    def __len__(self) -> int:
        return len(self.data_at)

    @property
    def wire_bytes(self) -> int:
        return int(self.wirelen.sum())

    @property
    def truncated(self) -> int:
        """Records cut by the snap length."""
        return int(np.count_nonzero(self.caplen < self.wirelen))

    def raw(self, i: int) -> RawPacket:
        """Record `i` as the per-packet reader yields it."""
        start = int(self.data_at[i])
        data = self.buf[start : start + int(self.caplen[i])]
        return RawPacket(
            float(self.ts[i]),
            self.linktype,
            data,
            int(self.wirelen[i]),
            0,
            self.first_frame + i + 1,
        )
