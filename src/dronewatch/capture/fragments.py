"""IP fragment reassembly (IPv4, RFC 791; IPv6, RFC 8200 4.5), bounded, for the decoder.

The decoder hands every fragment here (`FragmentReassembler.add`) and gets back nothing until a
datagram is whole, then the datagram itself (one IP packet, as if it had not been fragmented),
which it decodes as any other packet: a flow sees one packet of the datagram's length, at the
time of the fragment that completed it, as Zeek counts it.

Overlaps keep the bytes that came first (a later fragment only fills holes), so a fragment
that rewrites data already seen changes nothing. Bounds: a datagram may not exceed 65,535 bytes
of payload, at most `max_datagrams` are pending and `max_bytes` held in all, and a datagram
not completed within `timeout_s` of its first fragment is dropped; past a bound the oldest
pending datagram goes first. For IPv6, the reassembled packet keeps the fixed header only (the
extension headers before the Fragment header, hop-by-hop or routing, are not kept).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

_MAX_PAYLOAD = 65535


@dataclass(frozen=True, slots=True)
class FragmentOptions:
    """Bounds of fragment reassembly."""

    max_datagrams: int = 4096
    """Datagrams waiting for fragments at once."""
    max_bytes: int = 8 * 1024 * 1024
    """Fragment bytes held in all."""
    timeout_s: float = 30.0
    """A datagram not whole this long after its first fragment is dropped."""


class _Datagram:
    """The fragments of one datagram received so far."""

    __slots__ = ("first_ts", "pieces", "size", "total", "header", "proto")

    def __init__(self, ts: float) -> None:
        self.first_ts = ts
        self.pieces: list[tuple[int, bytes]] = []
        """(offset, bytes) pieces that do not overlap, in no order."""
        self.size = 0
        self.total = -1
        """Payload length, known once the last fragment (more-fragments clear) came."""
        self.header = b""
        """The IP header to rebuild the datagram with (IPv4: the first fragment's)."""
        self.proto = -1
        """IPv6: the next header after the Fragment header."""

    def add(self, start: int, data: bytes) -> int:
        """Keep the parts of `data` at `start` no piece covers yet; the bytes added."""
        end = start + len(data)
        holes = [(start, end)]
        for p_start, p_data in self.pieces:
            p_end = p_start + len(p_data)
            cut: list[tuple[int, int]] = []
            for h_start, h_end in holes:
                if p_end <= h_start or p_start >= h_end:
                    cut.append((h_start, h_end))
                    continue
                if h_start < p_start:
                    cut.append((h_start, p_start))
                if p_end < h_end:
                    cut.append((p_end, h_end))
            holes = cut
            if not holes:
                return 0
        added = 0
        for h_start, h_end in holes:
            self.pieces.append((h_start, data[h_start - start : h_end - start]))
            added += h_end - h_start
        self.size += added
        return added

    def whole(self) -> bytes | None:
        """The payload when every byte up to the end is here."""
        if self.total < 0 or self.size < self.total:
            return None
        out = bytearray()
        for start, data in sorted(self.pieces):
            if start != len(out):
                return None
            out += data
        return bytes(out[: self.total])


_Key = tuple[int, bytes, bytes, int, int]


class FragmentReassembler:
    """Puts IP fragments back together; `add` returns each datagram once it is whole."""

    def __init__(self, options: FragmentOptions | None = None) -> None:
        self.options = options or FragmentOptions()
        self._pending: OrderedDict[_Key, _Datagram] = OrderedDict()
        self._held = 0
        self.reassembled = 0
        """Datagrams put back together."""
        self.dropped = 0
        """Datagrams given up (timed out, over a bound, or malformed)."""

    def add(self, ts: float, data: bytes, off: int, frag_header: int = -1) -> bytes | None:
        """A fragment: the IP packet at `off` in `data` (IPv4), or the IPv6 packet there whose
        Fragment header is at `frag_header`. Returns the whole datagram as one IP packet (its
        header rebuilt, starting at offset 0) when this fragment completes it, else None."""
        self._expire(ts)
        if frag_header < 0:
            return self._ipv4(ts, data, off)
        return self._ipv6(ts, data, off, frag_header)

    def _ipv4(self, ts: float, data: bytes, off: int) -> bytes | None:
        ihl = (data[off] & 0x0F) * 4
        total, ident, frag = struct.unpack_from("!HHH", data, off + 2)
        proto = data[off + 9]
        src, dst = data[off + 12 : off + 16], data[off + 16 : off + 20]
        start = (frag & 0x1FFF) * 8
        payload = data[off + ihl : off + max(total, ihl)]
        key = (4, src, dst, ident, proto)
        dgram = self._datagram(key, ts)
        if start == 0:
            dgram.header = data[off : off + ihl]
        if not frag & 0x2000:
            dgram.total = start + len(payload)
        if not self._store(key, dgram, start, payload):
            return None
        whole = dgram.whole()
        if whole is None or not dgram.header:
            return None
        self._forget(key, dgram)
        self.reassembled += 1
        header = bytearray(dgram.header)
        struct.pack_into("!HH", header, 2, len(header) + len(whole), 0)
        header[6] = header[6] & 0x40  # keep DF, clear MF and the offset
        return bytes(header) + whole

    def _ipv6(self, ts: float, data: bytes, off: int, at: int) -> bytes | None:
        nxt = data[at]
        offset_flags, ident = struct.unpack_from("!HI", data, at + 2)
        plen = struct.unpack_from("!H", data, off + 4)[0]
        src, dst = data[off + 8 : off + 24], data[off + 24 : off + 40]
        start = offset_flags & 0xFFF8
        payload = data[at + 8 : off + 40 + plen]
        key = (6, src, dst, ident, 0)
        dgram = self._datagram(key, ts)
        if start == 0:
            dgram.header = data[off : off + 40]
            dgram.proto = nxt
        if not offset_flags & 1:
            dgram.total = start + len(payload)
        if not self._store(key, dgram, start, payload):
            return None
        whole = dgram.whole()
        if whole is None or not dgram.header:
            return None
        self._forget(key, dgram)
        self.reassembled += 1
        header = bytearray(dgram.header)
        struct.pack_into("!H", header, 4, len(whole))
        header[6] = dgram.proto
        return bytes(header) + whole

    def _datagram(self, key: _Key, ts: float) -> _Datagram:
        dgram = self._pending.get(key)
        if dgram is None:
            dgram = self._pending[key] = _Datagram(ts)
        return dgram

    def _store(self, key: _Key, dgram: _Datagram, start: int, payload: bytes) -> bool:
        """Add a fragment's bytes within the bounds; False when the datagram was dropped."""
        end = start + len(payload)
        if end > _MAX_PAYLOAD or (dgram.total >= 0 and end > dgram.total):
            self._forget(key, dgram)
            self.dropped += 1
            return False
        self._held += dgram.add(start, payload)
        opts = self.options
        while self._pending and (
            len(self._pending) > opts.max_datagrams or self._held > opts.max_bytes
        ):
            old_key, old = next(iter(self._pending.items()))
            self._forget(old_key, old)
            self.dropped += 1
        return key in self._pending

    def _forget(self, key: _Key, dgram: _Datagram) -> None:
        if self._pending.pop(key, None) is not None:
            self._held -= dgram.size

    def _expire(self, now: float) -> None:
        timeout = self.options.timeout_s
        while self._pending:
            key, dgram = next(iter(self._pending.items()))
            if now - dgram.first_ts <= timeout:
                return
            self._forget(key, dgram)
            self.dropped += 1
