"""Capture files: pcap (both byte orders, micro/nanosecond), pcapng, gzip-compressed, and stdin.

Damage never raises out of `packets()`: the reader stops at the first unreadable byte, records a
message naming the file and the byte offset in `stats.errors`, and keeps every packet before it.
Offsets are counted in the uncompressed stream.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dronewatch.capture.base import RawPacket, SourceStats
from dronewatch.capture.pcapbatch import Buffer, PcapBatch, read_batch
from dronewatch.capture.streams import ByteStream, MappedStream, ReadStream, map_file
from dronewatch.exceptions import CaptureError
from dronewatch.fastpath import native

logger = logging.getLogger(__name__)

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
PCAPNG_IDB = 0x00000001
PCAPNG_PB = 0x00000002
PCAPNG_SPB = 0x00000003
PCAPNG_ISB = 0x00000005
PCAPNG_EPB = 0x00000006
GZIP_MAGIC = b"\x1f\x8b"

CHUNK = 1 << 24
MAX_RECORD = 1 << 24
"""Largest packet record accepted; anything larger is treated as corruption."""


class FileSource:
    """Packets from a pcap or pcapng file (gzip-compressed or not), or `-` for stdin."""

    def __init__(self, path: str, stream: BinaryIO | None = None) -> None:
        """`stream`: read this already open binary stream (a pipe) instead of opening `path`,
        which then only names the source in messages."""
        self.path = path
        self.stats = SourceStats(name=path)
        self._size: int | None = None
        self._stream: ByteStream | None = None
        self._fh: BinaryIO | None = None
        self._given = stream

    def progress(self) -> tuple[int, int | None]:
        if self._stream is None:
            return 0, self._size
        return self._stream.consumed(), self._size

    def _open(self) -> ByteStream:
        if self._given is not None:
            fh: BinaryIO = self._given
        elif self.path == "-":
            fh = sys.stdin.buffer
        else:
            try:
                fh = open(self.path, "rb")  # noqa: SIM115 - closed in packets()
                self._size = os.fstat(fh.fileno()).st_size
            except OSError as exc:
                raise CaptureError(exc.strerror or str(exc), path=self.path) from None
        self._fh = fh
        peek = _peek(fh, 2)
        raw: BinaryIO = fh
        if peek == GZIP_MAGIC:
            raw = gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[assignment]
            self.stats.format = "-gzip"
        elif self._size is not None:
            mapped = map_file(fh, CHUNK)  # a file we opened: read it mapped, without copies
            if mapped is not None:
                return mapped
        return ReadStream(raw, fh, CHUNK)

    def packets(self) -> Iterator[RawPacket]:
        """Every packet up to the end of the file or the first damage."""
        for item in self._guarded(batch=False):
            assert isinstance(item, RawPacket)
            yield item

    def batches(self) -> Iterator[PcapBatch | RawPacket]:
        """The same packets, with the records of a classic pcap file, and the runs of enhanced
        packet blocks of a pcapng file (interfaces of one link type), grouped into `PcapBatch`es
        (every record whole in the read buffer) for the bulk path; other pcapng blocks (simple
        and obsolete packet blocks, damage) come packet by packet. Stats and damage messages are
        those of `packets()`."""
        return self._guarded(batch=True)

    def _guarded(self, batch: bool) -> Iterator[PcapBatch | RawPacket]:
        stream = self._open()
        self._stream = stream
        try:
            yield from self._read(stream, batch)
        except CaptureError as exc:
            self.stats.errors.append(str(exc))
            logger.debug("%s", exc)
        except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            err = CaptureError(f"read failed: {exc}", path=self.path, offset=stream.offset)
            self.stats.errors.append(str(err))
            logger.debug("%s", err)
        finally:
            if self._fh is not None and self._fh is not sys.stdin.buffer:
                self._fh.close()

    def _read(self, s: ByteStream, batch: bool = False) -> Iterator[PcapBatch | RawPacket]:
        if not s.need(4):
            if s.remaining() == 0:
                raise CaptureError("empty file: no capture header", path=self.path, offset=0)
            raise CaptureError("file too short for a capture header", path=self.path, offset=0)
        magic_le = struct.unpack_from("<I", s.buf, s.pos)[0]
        magic_be = struct.unpack_from(">I", s.buf, s.pos)[0]
        read_pcap = self._read_pcap_batches if batch else self._read_pcap
        if magic_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            yield from read_pcap(s, "<", magic_le == PCAP_MAGIC_NS)
        elif magic_be in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            yield from read_pcap(s, ">", magic_be == PCAP_MAGIC_NS)
        elif magic_le == PCAPNG_SHB:
            yield from self._read_pcapng(s, batch)
        else:
            raise CaptureError(
                f"not a pcap or pcapng file (magic 0x{bytes(s.buf[s.pos : s.pos + 4]).hex()})",
                path=self.path,
                offset=0,
            )

    def _damage(self, s: ByteStream, msg: str, offset: int | None = None) -> CaptureError:
        return CaptureError(msg, path=self.path, offset=s.offset if offset is None else offset)

    def _pcap_header(self, s: ByteStream, endian: str) -> tuple[int, int]:
        """Read the pcap file header: (link type, largest acceptable record)."""
        self.stats.format = "pcap" + self.stats.format
        if not s.need(24):
            raise self._damage(s, "truncated pcap file header")
        _, _, _, _, _, snaplen, linktype = struct.unpack_from(endian + "IHHiIII", s.buf, s.pos)
        s.pos += 24
        # The top bits of the link-type field may carry FCS information (pcap spec, LinkType).
        limit = max(snaplen, 262144, MAX_RECORD) if snaplen else MAX_RECORD
        return linktype & 0x0FFFFFFF, limit

    def _next_record(self, s: ByteStream, rec: struct.Struct, limit: int, frame: int) -> bool:
        """Make the next whole record available at `s.pos`; False at a clean end of file."""
        if not s.need(16):
            if s.remaining():
                raise self._damage(s, "truncated packet record header at end of file")
            return False
        incl = rec.unpack_from(s.buf, s.pos)[2]
        if incl > limit:
            raise self._damage(s, f"corrupt packet record: captured length {incl} bytes")
        if not s.need(16 + incl):
            raise self._damage(
                s, f"truncated packet {frame + 1}: {incl} bytes announced, file ends first"
            )
        return True

    def _read_pcap(self, s: ByteStream, endian: str, nano: bool) -> Iterator[RawPacket]:
        linktype, limit = self._pcap_header(s, endian)
        rec = struct.Struct(endian + "IIII")
        scale = 1e-9 if nano else 1e-6
        stats = self.stats
        frame = 0
        while self._next_record(s, rec, limit, frame):
            sec, frac, incl, orig = rec.unpack_from(s.buf, s.pos)
            start = s.pos + 16
            data = s.buf[start : start + incl]
            s.pos = start + incl
            frame += 1
            ts = sec + frac * scale
            stats.packets += 1
            stats.bytes += orig
            if incl < orig:
                stats.truncated += 1
            yield RawPacket(ts, linktype, data, orig, 0, frame)

    def _read_pcap_batches(self, s: ByteStream, endian: str, nano: bool) -> Iterator[PcapBatch]:
        linktype, limit = self._pcap_header(s, endian)
        rec = struct.Struct(endian + "IIII")
        frame = 0
        while self._next_record(s, rec, limit, frame):
            if self._size is not None:
                s.fill(CHUNK)
            # Every record that lies whole in the buffer; the check above has made one available.
            batch, s.pos = read_batch(s.buf, s.pos, limit, endian == ">", nano, linktype, frame)
            frame += len(batch)
            self.stats.packets += len(batch)
            self.stats.bytes += batch.wire_bytes
            self.stats.truncated += batch.truncated
            yield batch

    def _read_pcapng(self, s: ByteStream, batch: bool = False) -> Iterator[PcapngBatch | RawPacket]:
        self.stats.format = "pcapng" + self.stats.format
        endian = "<"
        ifaces: list[tuple[int, float, float, int]] = []  # linktype, scale, offset, snaplen
        drops: dict[int, int] = {}
        frame = 0
        last_ts = 0.0
        stats = self.stats
        while True:
            block_offset = s.offset
            if not s.need(12):
                if s.remaining():
                    raise self._damage(s, "truncated block header at end of file")
                break
            btype_raw = bytes(s.buf[s.pos : s.pos + 4])
            if struct.unpack("<I", btype_raw)[0] == PCAPNG_SHB:
                bom = bytes(s.buf[s.pos + 8 : s.pos + 12])
                if struct.unpack("<I", bom)[0] == PCAPNG_BOM:
                    endian = "<"
                elif struct.unpack(">I", bom)[0] == PCAPNG_BOM:
                    endian = ">"
                else:
                    raise self._damage(s, "section header with an unknown byte-order magic")
                ifaces = []
            btype, blen = struct.unpack_from(endian + "II", s.buf, s.pos)
            if batch and btype == PCAPNG_EPB:
                if isinstance(s, MappedStream):
                    # A new window when this one is nearly read. A stream (gzip, a pipe) is not
                    # filled: its batch is what the last read left in the buffer, as growing the
                    # buffer a read at a time copies it over and over.
                    s.fill(CHUNK)
                # The enhanced packet blocks whole in the buffer, of interfaces of one link type.
                run = read_pcapng_batch(s.buf, s.pos, endian == ">", ifaces, frame)
                if run is not None:
                    s.pos = run.next_pos
                    frame += len(run)
                    stats.packets += len(run)
                    stats.bytes += run.wire_bytes
                    stats.truncated += run.truncated
                    last_ts = run.last_ts
                    yield run
                    continue
            if blen < 12 or blen % 4 or blen > MAX_RECORD:
                raise self._damage(s, f"corrupt block: length {blen}", block_offset)
            if not s.need(blen):
                raise self._damage(
                    s, f"truncated block (type 0x{btype:x}, {blen} bytes announced)", block_offset
                )
            body = s.buf[s.pos + 8 : s.pos + blen - 4]
            s.pos += blen
            if btype == PCAPNG_EPB:
                if len(body) < 20:
                    raise self._damage(s, "enhanced packet block too short", block_offset)
                iface, hi, lo, incl, orig = struct.unpack_from(endian + "IIIII", body, 0)
                if iface >= len(ifaces):
                    raise self._damage(s, f"packet names unknown interface {iface}", block_offset)
                if incl > len(body) - 20:
                    raise self._damage(s, "captured length exceeds its block", block_offset)
                lt, scale, tsoff, _ = ifaces[iface]
                frame += 1
                stats.packets += 1
                stats.bytes += orig
                if incl < orig:
                    stats.truncated += 1
                last_ts = ((hi << 32) | lo) * scale + tsoff
                yield RawPacket(last_ts, lt, body[20 : 20 + incl], orig, iface, frame)
            elif btype == PCAPNG_SPB:
                if not ifaces or len(body) < 4:
                    raise self._damage(s, "simple packet block without an interface", block_offset)
                orig = struct.unpack_from(endian + "I", body, 0)[0]
                lt, _, _, snaplen = ifaces[0]
                incl = min(orig, len(body) - 4, snaplen or orig)
                frame += 1
                stats.packets += 1
                stats.bytes += orig
                if incl < orig:
                    stats.truncated += 1
                # Simple packet blocks carry no timestamp (pcapng spec 4.4): keep the last one.
                yield RawPacket(last_ts, lt, body[4 : 4 + incl], orig, 0, frame)
            elif btype == PCAPNG_PB:
                if len(body) < 20:
                    raise self._damage(s, "packet block too short", block_offset)
                iface, _drops, hi, lo, incl, orig = struct.unpack_from(endian + "HHIIII", body, 0)
                if iface >= len(ifaces):
                    raise self._damage(s, f"packet names unknown interface {iface}", block_offset)
                lt, scale, tsoff, _ = ifaces[iface]
                incl = min(incl, len(body) - 20)
                frame += 1
                stats.packets += 1
                stats.bytes += orig
                last_ts = ((hi << 32) | lo) * scale + tsoff
                yield RawPacket(last_ts, lt, body[20 : 20 + incl], orig, iface, frame)
            elif btype == PCAPNG_IDB:
                if len(body) < 8:
                    raise self._damage(s, "interface description block too short", block_offset)
                lt, _, snaplen = struct.unpack_from(endian + "HHI", body, 0)
                scale, tsoff = _idb_options(bytes(body[8:]), endian)
                ifaces.append((lt, scale, tsoff, snaplen))
            elif btype == PCAPNG_ISB:
                if len(body) >= 12:
                    iface = struct.unpack_from(endian + "I", body, 0)[0]
                    dropped = _isb_drops(bytes(body[12:]), endian)
                    if dropped is not None:
                        drops[iface] = dropped
            # Other blocks (name resolution, custom, decryption secrets...) carry no packets.
        if drops:
            stats.drops = sum(drops.values())


@dataclass(slots=True)
class PcapngBatch(PcapBatch):
    """A run of pcapng enhanced packet blocks, whose interfaces all have the batch's link type
    (each packet's interface in `ifaces`)."""

    last_ts: float = 0.0
    """The time of the last packet (a simple packet block after it takes that time)."""
    next_pos: int = 0
    """Where the block after the run starts in `buf`."""


def read_pcapng_batch(
    buf: Buffer,
    pos: int,
    big_endian: bool,
    ifaces: list[tuple[int, float, float, int]],
    first_frame: int,
) -> PcapngBatch | None:
    """The enhanced packet blocks that lie whole in `buf` from `pos` on, of interfaces of the
    link type of the first one's, or None when the block at `pos` is not one the C reader takes
    (damage, an unknown interface: the per-block reader reads it)."""
    module = native()
    if module is None:
        raise RuntimeError("pcapng batches need the C extension (dronewatch.fastpath.native)")
    if len(buf) < pos + 12:
        return None
    iface = struct.unpack_from(">I" if big_endian else "<I", buf, pos + 8)[0]
    if iface >= len(ifaces):
        return None
    linktype = ifaces[iface][0]
    shown = tuple((lt, scale, offset) for lt, scale, offset, _ in ifaces)
    at, cap, wire, ts, ifc, wire_bytes, truncated, end, last_ts = module.block_fields(
        buf, pos, MAX_RECORD, big_endian, shown, linktype
    )
    if not at:
        return None
    return PcapngBatch(
        buf,
        linktype,
        first_frame,
        memoryview(at).cast("q"),
        memoryview(cap).cast("q"),
        memoryview(wire).cast("q"),
        memoryview(ts).cast("d"),
        wire_bytes,
        truncated,
        ifaces=memoryview(ifc).cast("q"),
        last_ts=last_ts,
        next_pos=end,
    )


def _options(data: bytes, endian: str) -> Iterator[tuple[int, bytes]]:
    """Walk pcapng options (code, length, value padded to 32 bits)."""
    pos = 0
    while pos + 4 <= len(data):
        code, length = struct.unpack_from(endian + "HH", data, pos)
        if code == 0:
            return
        yield code, data[pos + 4 : pos + 4 + length]
        pos += 4 + ((length + 3) & ~3)


def _idb_options(data: bytes, endian: str) -> tuple[float, float]:
    """Timestamp scale (if_tsresol) and offset (if_tsoffset) of an interface."""
    scale = 1e-6
    offset = 0.0
    for code, value in _options(data, endian):
        if code == 9 and value:
            v = value[0]
            scale = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
        elif code == 14 and len(value) == 8:
            offset = float(struct.unpack(endian + "q", value)[0])
    return scale, offset


def _isb_drops(data: bytes, endian: str) -> int | None:
    """The isb_ifdrop count of an interface statistics block, when present."""
    for code, value in _options(data, endian):
        if code == 5 and len(value) == 8:
            return int(struct.unpack(endian + "Q", value)[0])
    return None


def _peek(fh: BinaryIO, n: int) -> bytes:
    """The first `n` bytes of a stream without consuming them (stdin included)."""
    if isinstance(fh, io.BufferedReader):
        return fh.peek(n)[:n]
    pos = fh.tell()
    head = fh.read(n)
    fh.seek(pos)
    return head


def open_source(path: str) -> FileSource:
    """A source for a capture file path, or `-` for a pcap stream on stdin."""
    return FileSource(path)
