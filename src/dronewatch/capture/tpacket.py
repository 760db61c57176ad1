"""Linux AF_PACKET capture through a TPACKET_V3 receive ring: the kernel hands over blocks.

The ring is memory shared with the kernel, cut into blocks of `BLOCK_BYTES`. The kernel writes
each packet it receives into its current block, behind a header (time, lengths, where the frame
starts), and hands the block over when it is full or `block_timeout_ms` after its first packet,
so a quiet link still delivers within that time. One `poll` wakes the reader for any number of
packets. The C `ring_fields` reads the blocks handed over into the columns of a `PcapBatch` over
the ring, which the walk that reads capture files reads the same way; the blocks go back to the
kernel (`release`) once that batch has been analyzed. Nothing points into a block after that:
slicing the ring's mmap makes bytes (every path that takes a frame out of a batch slices it), and
the walk holds the buffer only while it runs.

While the reader holds every block, the kernel drops what arrives and counts it; its counts
(PACKET_STATISTICS: struct tpacket_stats_v3 with packets, drops and queue freezes) are read at
every coverage report. Without the C extension the blocks are read here, packet by packet
(`read_blocks`): the same packets, slower.
"""

from __future__ import annotations

import mmap
import struct
import threading
from dataclasses import dataclass

from dronewatch.capture.afpacket import (
    SOL_PACKET,
    attach_filter,
    compile_bpf,
    interface_linktype,
    join,
    packet_socket,
)
from dronewatch.capture.base import RawPacket
from dronewatch.capture.pcapbatch import PcapBatch
from dronewatch.exceptions import CaptureError
from dronewatch.fastpath import native

PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_RESERVE = 12
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
VLAN_TAG_LEN = 4
"""Room kept before each frame (PACKET_RESERVE) to write a stripped VLAN tag back, as libpcap."""

BLOCK_BYTES = 1 << 20
"""Size of a ring block; a packet longer than a block would be cut."""
FRAME_BYTES = 2048
"""Nominal frame size the kernel checks the ring's geometry with (TPACKET_V3 packs packets)."""
DEFAULT_BUFFER_BYTES = 64 << 20
"""Ring size per interface: what a burst may fill while the pipeline catches up."""
BLOCK_TIMEOUT_MS = 50
"""A block with packets is handed over at the latest this long after its first packet."""

# struct tpacket_block_desc (<linux/if_packet.h>): version, offset_to_priv, then tpacket_hdr_v1.
_BLOCK = struct.Struct("=IIIIII")  # version, priv, block_status, num_pkts, first_pkt, blk_len
# struct tpacket3_hdr: next_offset, sec, nsec, snaplen, len, status, mac, net, hv1 (rxhash,
# vlan_tci, vlan_tpid).
_PACKET = struct.Struct("=IIIIIIHHIIH")
_HDR_ROOM = 48 + 20
"""TPACKET3_HDRLEN: the packet header (48 bytes, aligned) and the struct sockaddr_ll after it."""
_STATS = struct.Struct("=III")


@dataclass(slots=True)
class RingStats:
    """The kernel's counts for one ring since it opened (PACKET_STATISTICS, summed)."""

    packets: int = 0
    """Packets that passed the filter, delivered or dropped."""
    drops: int = 0
    """Packets dropped because no block was free."""
    freezes: int = 0
    """Times the queue froze (every block with the reader)."""


def read_blocks(
    ring: bytearray | mmap.mmap, block_bytes: int, blocks: int, first: int, most: int, snaplen: int
) -> tuple[list[tuple[float, bytes, int]], int]:
    """The packets (time, frame, wire length) of the blocks handed over from block `first` on
    (at most `most`), and how many blocks that was: the Python twin of the C `ring_fields`."""
    out: list[tuple[float, bytes, int]] = []
    taken = 0
    while taken < most:
        base = (first + taken) % blocks * block_bytes
        _, _, status, count, offset, _ = _BLOCK.unpack_from(ring, base)
        if not status & TP_STATUS_USER:
            break
        taken += 1
        for _ in range(count):
            at = base + offset
            nxt, sec, nsec, cap, wire, pstatus, mac, _, _, tci, tpid = _PACKET.unpack_from(ring, at)
            if mac + cap > block_bytes - (at - base):
                raise ValueError(f"ring block {(first + taken - 1) % blocks}: packet outside it")
            frame = bytes(ring[at + mac : at + mac + cap])
            if pstatus & TP_STATUS_VLAN_VALID and cap >= 12 and mac >= _HDR_ROOM + VLAN_TAG_LEN:
                kind = tpid if pstatus & TP_STATUS_VLAN_TPID_VALID and tpid else 0x8100
                frame = frame[:12] + struct.pack("!HH", kind, tci & 0xFFFF) + frame[12:]
                wire += VLAN_TAG_LEN
            out.append((sec + nsec * 1e-9, frame[:snaplen], wire))
            if nxt == 0:
                break
            offset += nxt
    return out, taken


def release_blocks(
    ring: bytearray | mmap.mmap, block_bytes: int, blocks: int, first: int, count: int
) -> None:
    """Hand blocks back to the kernel: the Python twin of the C `ring_release`."""
    for k in range(count):
        struct.pack_into("=I", ring, (first + k) % blocks * block_bytes + 8, TP_STATUS_KERNEL)


class PacketRing:
    """One AF_PACKET socket on one interface with a TPACKET_V3 receive ring."""

    def __init__(
        self,
        interface: str,
        *,
        snaplen: int,
        bpf: str = "",
        fanout_group: int | None = None,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        block_timeout_ms: int = BLOCK_TIMEOUT_MS,
        iface: int = 0,
    ) -> None:
        """`iface`: the index its packets carry (`RawPacket.iface`, `PcapBatch.iface`)."""
        self.interface = interface
        self.snaplen = snaplen
        self.iface = iface
        self.linktype, dlt = interface_linktype(interface)
        program = compile_bpf(bpf, dlt) if bpf else None
        self.blocks = max(2, buffer_bytes // BLOCK_BYTES)
        self.most = max(1, min(16, self.blocks // 4))
        """Blocks read into one batch: the kernel keeps the rest to fill meanwhile."""
        self._next = 0
        self._taken = 0
        self._stats = RingStats()
        self._lock = threading.Lock()
        self._module = native()
        sock = packet_socket(interface)
        self.sock = sock
        size = BLOCK_BYTES * self.blocks
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            sock.setsockopt(SOL_PACKET, PACKET_RESERVE, VLAN_TAG_LEN)
            frames = BLOCK_BYTES // FRAME_BYTES * self.blocks
            req = struct.pack(
                "=7I", BLOCK_BYTES, self.blocks, FRAME_BYTES, frames, block_timeout_ms, 0, 0
            )
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self.map = mmap.mmap(
                sock.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
            )
        except OSError as exc:
            sock.close()
            raise CaptureError(
                f"cannot set up a {size >> 20} MB AF_PACKET ring on {interface}: "
                f"{exc.strerror or exc}"
            ) from None
        try:
            if program:
                attach_filter(sock, program)
            join(sock, interface, fanout_group)
        except OSError as exc:
            self.close()
            raise CaptureError(
                f"cannot capture on {interface} with AF_PACKET: {exc.strerror or exc}"
            ) from None

    def fileno(self) -> int:
        return self.sock.fileno()

    def take(self, first_frame: int) -> PcapBatch | list[RawPacket] | None:
        """The packets of the blocks the kernel handed over (None: none yet), as a batch over
        the ring (with the C extension) or as packets; `release` gives the blocks back once
        they are analyzed. `first_frame`: frames before them in the source."""
        if self._taken:
            self.release()
        if self._module is None:
            return self._take_python(first_frame)
        try:
            at, cap, wire, ts, wire_bytes, truncated, taken = self._module.ring_fields(
                self.map, BLOCK_BYTES, self.blocks, self._next, self.most, self.snaplen
            )
        except ValueError as exc:
            raise CaptureError(f"capture on {self.interface}: {exc}") from None
        self._taken = taken
        if not taken:
            return None
        return PcapBatch(
            self.map,
            self.linktype,
            first_frame,
            memoryview(at).cast("q"),
            memoryview(cap).cast("q"),
            memoryview(wire).cast("q"),
            memoryview(ts).cast("d"),
            wire_bytes,
            truncated,
            self.iface,
        )

    def _take_python(self, first_frame: int) -> list[RawPacket] | None:
        try:
            got, taken = read_blocks(
                self.map, BLOCK_BYTES, self.blocks, self._next, self.most, self.snaplen
            )
        except ValueError as exc:
            raise CaptureError(f"capture on {self.interface}: {exc}") from None
        self._taken = taken
        if not taken:
            return None
        lt, iface = self.linktype, self.iface
        return [
            RawPacket(ts, lt, data, wire, iface, first_frame + i + 1)
            for i, (ts, data, wire) in enumerate(got)
        ]

    def release(self) -> None:
        """Give the blocks of the last `take` back to the kernel."""
        if not self._taken:
            return
        if self._module is None:
            release_blocks(self.map, BLOCK_BYTES, self.blocks, self._next, self._taken)
        else:
            self._module.ring_release(self.map, BLOCK_BYTES, self.blocks, self._next, self._taken)
        self._next = (self._next + self._taken) % self.blocks
        self._taken = 0

    def statistics(self) -> RingStats:
        """The kernel's counts since the ring opened (each read resets the kernel's own)."""
        with self._lock:
            if self.sock.fileno() >= 0:
                try:
                    raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
                except OSError:
                    raw = b""
                if len(raw) == _STATS.size:
                    packets, drops, freezes = _STATS.unpack(raw)
                    self._stats.packets += packets
                    self._stats.drops += drops
                    self._stats.freezes += freezes
            return RingStats(self._stats.packets, self._stats.drops, self._stats.freezes)

    def close(self) -> None:
        """Read the last counts, unmap the ring and close the socket."""
        if self.sock.fileno() < 0:
            return
        self.statistics()
        if hasattr(self, "map"):
            self.map.close()
        with self._lock:
            self.sock.close()
