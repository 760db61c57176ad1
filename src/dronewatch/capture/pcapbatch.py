"""A run of packet records that lie whole in one buffer, with their headers as columns.

The bulk path (`dronewatch.fastpath.bulk`) reads the record headers of thousands of packets at
once: the C extension writes them into columns in one pass, from a classic pcap file's records
(`read_batch`) or from the blocks of a live AF_PACKET ring (`dronewatch.capture.tpacket`). `raw(i)`
gives the reference reader's `RawPacket` for the packets that still need the per-packet path.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import TypeAlias

from dronewatch.capture.base import RawPacket
from dronewatch.fastpath import native

Buffer: TypeAlias = "bytes | mmap.mmap"
"""Where a batch's records lie: a read buffer, or a window of a mapped file (slices are bytes)."""


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
    iface: int = 0
    """Index of the interface the records came from (live capture)."""
    ifaces: memoryview[int] | None = None
    """The interface of each record, a column (a pcapng run of several), where `iface` is not
    one for the whole batch."""

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
            self.ifaces[i] if self.ifaces is not None else self.iface,
            self.first_frame + i + 1,
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
    module = native()
    if module is None:
        raise RuntimeError("pcap batches need the C extension (dronewatch.fastpath.native)")
    at, cap, wire, ts, wire_bytes, truncated, pos = module.record_fields(
        buf, pos, limit, big_endian, nano
    )
    columns = (memoryview(at).cast("q"), memoryview(cap).cast("q"), memoryview(wire).cast("q"))
    return PcapBatch(
        buf, linktype, first_frame, *columns, memoryview(ts).cast("d"), wire_bytes, truncated
    ), pos
