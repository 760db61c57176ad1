"""The AF_PACKET ring's blocks read into batch columns: C and its Python twin, on blocks laid out
as the kernel lays them (TPACKET_V3, <linux/if_packet.h>)."""

from __future__ import annotations

import mmap
import struct

import pytest

from dronewatch.capture.pcapbatch import PcapBatch
from dronewatch.capture.tpacket import (
    TP_STATUS_KERNEL,
    TP_STATUS_USER,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
    read_blocks,
    release_blocks,
)
from dronewatch.fastpath import native

BLOCK = 4096
MAC_AT = 86
"""Where the kernel puts an Ethernet frame after the packet header: TPACKET3_HDRLEN (68) plus 16
bytes rounded to 16, plus the 4-byte PACKET_RESERVE, minus the 14-byte MAC header."""
C = native()
needs_c = pytest.mark.skipif(C is None, reason="the C extension is not built")

Packet = tuple[int, int, bytes, int, int, int, int]
"""sec, nsec, frame, wire length, tp_status, vlan tci, vlan tpid."""


def frame(n: int, size: int = 60) -> bytes:
    """An Ethernet frame whose bytes say which one it is."""
    body = bytes([n & 0xFF]) * (size - 14)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + body


def write_block(
    ring: mmap.mmap | bytearray, index: int, packets: list[Packet], status: int
) -> None:
    """Lay one block out as the kernel does: the block descriptor, then each packet's header
    (tpacket3_hdr) and frame, 16-byte aligned, chained by tp_next_offset."""
    base = index * BLOCK
    ring[base : base + BLOCK] = bytes(BLOCK)
    offset = first = 48
    for k, (sec, nsec, data, wire, pstatus, tci, tpid) in enumerate(packets):
        at = base + offset
        size = (MAC_AT + len(data) + 15) & ~15
        nxt = size if k + 1 < len(packets) else 0
        head = (nxt, sec, nsec, len(data), wire, pstatus, MAC_AT, MAC_AT + 14, 0, tci, tpid, 0)
        struct.pack_into("=IIIIIIHHIIHH", ring, at, *head)
        ring[at + MAC_AT : at + MAC_AT + len(data)] = data
        offset += size
    struct.pack_into("=IIIIII", ring, base, 3, 0, status, len(packets), first, offset)


def make_ring(blocks: list[tuple[list[Packet], int]]) -> mmap.mmap:
    """A ring of len(blocks) blocks in anonymous shared memory, as the socket's is mapped."""
    ring = mmap.mmap(-1, BLOCK * len(blocks))
    for index, (packets, status) in enumerate(blocks):
        write_block(ring, index, packets, status)
    return ring


def c_rows(
    ring: mmap.mmap, blocks: int, first: int, most: int, snaplen: int = 262144
) -> tuple[list[tuple[float, bytes, int]], int, PcapBatch]:
    """What the C reader makes of the ring: the rows as the batch hands them on, and the batch."""
    assert C is not None
    at, cap, wire, ts, wire_bytes, truncated, taken = C.ring_fields(
        ring, BLOCK, blocks, first, most, snaplen
    )
    cols = (memoryview(at).cast("q"), memoryview(cap).cast("q"), memoryview(wire).cast("q"))
    batch = PcapBatch(ring, 1, 0, *cols, memoryview(ts).cast("d"), wire_bytes, truncated)
    rows = [(r.ts, r.data, r.wirelen) for r in map(batch.raw, range(len(batch)))]
    return rows, taken, batch


def packets(block: int, count: int) -> list[Packet]:
    return [
        (1_700_000_000 + block, 123_456_789 + k, frame(block * 16 + k, 60 + k), 60 + k, 0, 0, 0)
        for k in range(count)
    ]


@needs_c
def test_c_and_python_read_the_same_rows_in_ring_order() -> None:
    """From block `first` on, both readers give every packet of the handed-over blocks in ring
    order (wrapping round), with the same times, frames and lengths, and count the blocks."""
    layout = [(packets(0, 3), TP_STATUS_USER), (packets(1, 1), TP_STATUS_KERNEL)]
    layout += [(packets(2, 4), TP_STATUS_USER), (packets(3, 2), TP_STATUS_USER)]
    ring = make_ring(layout)
    got, taken, batch = c_rows(ring, 4, 2, 4)
    twin, twin_taken = read_blocks(ring, BLOCK, 4, 2, 4, 262144)
    assert taken == twin_taken == 3  # blocks 2, 3, 0; block 1 is the kernel's
    assert got == twin
    assert [data[14] for _, data, _ in got] == [32, 33, 34, 35, 48, 49, 0, 1, 2]
    assert got[0][0] == 1_700_000_002 + 123_456_789 * 1e-9
    assert batch.wire_bytes == sum(wire for _, _, wire in got) and batch.truncated == 0


@needs_c
def test_a_block_the_kernel_still_owns_is_not_read() -> None:
    """Nothing is taken while the next block is the kernel's, even when later ones are not."""
    ring = make_ring([(packets(0, 2), TP_STATUS_KERNEL), (packets(1, 2), TP_STATUS_USER)])
    got, taken, _ = c_rows(ring, 2, 0, 2)
    assert (got, taken) == ([], 0)
    assert read_blocks(ring, BLOCK, 2, 0, 2, 262144) == ([], 0)


@needs_c
def test_most_bounds_the_blocks_taken() -> None:
    """At most `most` blocks go into one batch, so the kernel keeps the rest to fill."""
    ring = make_ring([(packets(k, 2), TP_STATUS_USER) for k in range(4)])
    got, taken, _ = c_rows(ring, 4, 1, 2)
    assert taken == 2 and len(got) == 4
    assert read_blocks(ring, BLOCK, 4, 1, 2, 262144)[1] == 2


@needs_c
@pytest.mark.parametrize(("tpid", "flags", "written"), [(0, 0, 0x8100), (0x88A8, 1, 0x88A8)])
def test_a_stripped_vlan_tag_is_written_back(tpid: int, flags: int, written: int) -> None:
    """A tag the kernel moved into the header goes back after the MAC addresses (its TPID, else
    802.1Q), and the frame is 4 bytes longer, as libpcap gives it."""
    status = TP_STATUS_VLAN_VALID | (TP_STATUS_VLAN_TPID_VALID if flags else 0)
    data = frame(7)
    tagged = [(5, 0, data, len(data), status, 0x2064, tpid)]
    want = data[:12] + struct.pack("!HH", written, 0x2064) + data[12:]
    ring = make_ring([(tagged, TP_STATUS_USER)])
    twin, _ = read_blocks(ring, BLOCK, 1, 0, 1, 262144)
    got, _, _ = c_rows(ring, 1, 0, 1)
    assert got == twin == [(5.0, want, len(data) + 4)]
    again, _, _ = c_rows(ring, 1, 0, 1)  # read twice (after an error): tagged once
    assert again == got


@needs_c
def test_snaplen_cuts_frames_and_counts_them() -> None:
    """A frame longer than the snap length is cut to it and counted as truncated."""
    ring = make_ring([(packets(0, 3), TP_STATUS_USER)])
    got, _, batch = c_rows(ring, 1, 0, 1, snaplen=61)
    twin, _ = read_blocks(ring, BLOCK, 1, 0, 1, 61)
    assert got == twin
    assert [len(data) for _, data, _ in got] == [60, 61, 61]
    assert [wire for _, _, wire in got] == [60, 61, 62]
    assert batch.truncated == 1


@needs_c
def test_release_hands_blocks_back_to_the_kernel() -> None:
    """Released blocks carry TP_STATUS_KERNEL again, from `first` round the ring; others keep
    theirs. The Python twin does the same."""
    for release in (C.ring_release if C else None, release_blocks):
        assert release is not None
        ring = make_ring([(packets(k, 1), TP_STATUS_USER) for k in range(3)])
        release(ring, BLOCK, 3, 2, 2)
        statuses = [struct.unpack_from("=I", ring, k * BLOCK + 8)[0] for k in range(3)]
        assert statuses == [TP_STATUS_KERNEL, TP_STATUS_USER, TP_STATUS_KERNEL]


@needs_c
def test_a_packet_outside_its_block_is_an_error() -> None:
    """A header whose frame would run past its block is refused, not read beyond it."""
    ring = make_ring([(packets(0, 1), TP_STATUS_USER)])
    struct.pack_into("=I", ring, 48 + 12, BLOCK)  # tp_snaplen
    with pytest.raises(ValueError, match="outside"):
        c_rows(ring, 1, 0, 1)
    with pytest.raises(ValueError, match="outside"):
        read_blocks(ring, BLOCK, 1, 0, 1, 262144)


@needs_c
def test_a_geometry_that_does_not_fit_is_refused() -> None:
    """Blocks beyond the mapped ring are refused with a ValueError."""
    assert C is not None
    ring = make_ring([(packets(0, 1), TP_STATUS_USER)])
    with pytest.raises(ValueError, match="geometry"):
        C.ring_fields(ring, BLOCK, 2, 0, 1, 262144)
    with pytest.raises(ValueError, match="geometry"):
        C.ring_release(ring, BLOCK, 1, 1, 1)


@needs_c
def test_frames_taken_out_of_a_batch_outlive_their_block() -> None:
    """What the batch hands on is a copy: once the block is released and the kernel writes it
    again, the packets already taken keep their bytes."""
    ring = make_ring([(packets(0, 2), TP_STATUS_USER)])
    got, _, batch = c_rows(ring, 1, 0, 1)
    raw = batch.raw(1)
    assert isinstance(raw.data, bytes)
    write_block(ring, 0, packets(9, 2), TP_STATUS_USER)
    assert raw.data == got[1][1] == frame(1, 61)
    assert batch.raw(1).data != raw.data  # the batch itself reads the ring as it is now
