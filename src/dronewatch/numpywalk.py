"""The numpy walk of the bulk path: what the C walk (`_fastpath.walk`) does, in array operations.

It runs where the C extension is not built (no compiler at install time), or when
`DRONEWATCH_NUMPY_WALK` asks for it; `dronewatch.bulk` explains the decisions both make. The
packets' header fields are read for a whole batch at once, the rows are grouped by flow, groups
whose flow is settled for a whole segment between two sweeps are counted with array operations,
and the other rows are walked in capture order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from dronewatch.bulk import L3_OFFSET, flow_key, follower_packet
from dronewatch.capture.pcapbatch import BatchArrays, PcapBatch
from dronewatch.engine import FlowKey
from dronewatch.flow import (
    IP_PROTO_TCP,
    IP_PROTO_UDP,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    Flow,
    Packet,
)

if TYPE_CHECKING:
    from dronewatch.bulk import BulkRunner

HEAD = 112
"""Bytes of each frame read in bulk: Ethernet, IPv4 with options or IPv6, and a TCP header."""

Mask = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]


class Headers:
    """The fields of one batch that the flow table needs, for the packets read in bulk (`ok`)."""

    def __init__(self, batch: PcapBatch, columns: BatchArrays) -> None:
        n = len(batch)
        l3 = L3_OFFSET.get(batch.linktype)
        no = np.zeros(n, dtype=np.bool_)
        zero = np.zeros(n, dtype=np.int64)
        self.ok: Mask = no
        """Rows read here; the others need the per-packet decoder."""
        self.control: Mask = no
        """TCP SYN, FIN or RST set."""
        self.same_ends: Mask = no
        self.src_low: Mask = no
        """The sender is the flow key's lower (address, port) end."""
        self.has_payload: Mask = no
        self.flags, self.ip_len, self.payload_len, self.letter = zero, zero, zero, zero
        self.key = np.zeros((n, 38), dtype=np.uint8)
        """Version, protocol, lower end (16-byte address, port), higher end, per row."""
        self.udp: Mask = no
        self.payload_at, self.payload_stop = zero, zero
        """Where the transport payload starts and ends in each frame (as captured)."""
        self.l3 = l3 if l3 is not None else -1
        if l3 is not None and n and len(batch.buf) >= HEAD:
            self._read(batch, columns, l3)

    def _read(self, batch: PcapBatch, columns: BatchArrays, l3: int) -> None:
        n = len(batch)
        u8 = np.frombuffer(batch.buf, dtype=np.uint8)
        # The first HEAD bytes of every frame, one row each (a frame that ends the buffer sooner
        # is left to the per-packet path).
        inside = columns.data_at + HEAD <= len(u8)
        windows = np.lib.stride_tricks.sliding_window_view(u8, HEAD)
        raw = windows[np.where(inside, columns.data_at, 0)]
        h = _Columns(raw)
        caplen = columns.caplen
        version = h[:, l3] >> 4
        v4 = version == 4
        v6 = version == 6
        if l3:
            etype = (h[:, 12] << 8) | h[:, 13]
            v4 &= etype == 0x0800
            v6 &= etype == 0x86DD
        ihl = np.where(v4, (h[:, l3] & 0x0F) * 4, 40)
        proto = np.where(v4, h[:, l3 + 9], h[:, l3 + 6])
        frag = ((h[:, l3 + 6] & 0x1F) << 8 | h[:, l3 + 7]) != 0
        tcp = proto == IP_PROTO_TCP
        self.udp = proto == IP_PROTO_UDP
        l4 = l3 + ihl
        ok = (v4 & (ihl >= 20) & ~frag) | v6
        ok &= tcp | (proto == IP_PROTO_UDP)
        ok &= caplen >= l4 + np.where(tcp, 14, 6)
        ok &= (l4 + 14 <= HEAD) & inside
        self.ok = ok
        rows = np.arange(n)
        l4c = np.where(ok, l4, 0)

        def at(off: Ints) -> Ints:
            return raw[rows, off].astype(np.int64)

        sport = at(l4c) << 8 | at(l4c + 1)
        dport = at(l4c + 2) << 8 | at(l4c + 3)
        self.flags = np.where(tcp, at(l4c + 13), 0)
        total = h[:, l3 + 2] << 8 | h[:, l3 + 3]
        v4_len = np.where(total >= ihl, total, caplen - l3)
        v6_len = (h[:, l3 + 4] << 8 | h[:, l3 + 5]) + 40
        self.ip_len = np.where(v4, v4_len, v6_len)
        start = l4 + np.where(tcp, (at(l4c + 12) >> 4) * 4, 8)
        end = np.maximum(l3 + self.ip_len, start)
        self.payload_len = end - start
        self.payload_at = start  # within the frame
        self.payload_stop = np.maximum(np.minimum(end, caplen), start)
        self.has_payload = np.minimum(end, caplen) > start
        # Addresses, 16 bytes each (IPv4 in the first 4, the rest zero), then the port.
        src_at = np.where(v4, l3 + 12, l3 + 8)
        dst_at = np.where(v4, l3 + 16, l3 + 24)
        cols = np.arange(16)
        wide = np.where(v4[:, None], cols < 4, True)
        src = np.empty((n, 18), dtype=np.uint8)
        dst = np.empty((n, 18), dtype=np.uint8)
        src[:, :16] = np.where(wide, raw[rows[:, None], src_at[:, None] + cols], 0)
        dst[:, :16] = np.where(wide, raw[rows[:, None], dst_at[:, None] + cols], 0)
        src[:, 16], src[:, 17] = sport >> 8, sport & 0xFF
        dst[:, 16], dst[:, 17] = dport >> 8, dport & 0xFF
        # The engine keys a flow by its lower (address, port) end first: compare bytewise.
        differ = src != dst
        first = differ.argmax(axis=1)
        same = ~differ.any(axis=1)
        self.src_low = same | (src[rows, first] < dst[rows, first])
        self.same_ends = same
        key = np.empty((n, 38), dtype=np.uint8)
        key[:, 0], key[:, 1] = version, proto
        key[:, 2:20] = np.where(self.src_low[:, None], src, dst)
        key[:, 20:] = np.where(self.src_low[:, None], dst, src)
        self.key = key
        self.control = tcp & ((self.flags & (TCP_SYN | TCP_FIN | TCP_RST)) != 0)
        # The Zeek history letter a packet adds, from the sender's side: 1 D (data), 2 A (ACK).
        acked = np.where((self.flags & TCP_ACK) != 0, 2, 0)
        self.letter = np.where(tcp, np.where(self.payload_len > 0, 1, acked), 0)


class _Columns:
    """Byte columns of a (rows, HEAD) uint8 array as int64, read once each."""

    def __init__(self, raw: npt.NDArray[np.uint8]) -> None:
        self.raw = raw
        self.cache: dict[int, Ints] = {}

    def __getitem__(self, index: tuple[slice, int]) -> Ints:
        col = index[1]
        got = self.cache.get(col)
        if got is None:
            got = self.cache[col] = self.raw[:, col].astype(np.int64)
        return got


def segments(
    ts: npt.NDArray[np.float64], reaches: Mask, next_sweep: float, every: float
) -> Iterator[tuple[int, int, float | None]]:
    """Cut a batch where the engine would sweep: (start, stop, sweep time or None) per segment.

    The engine sweeps when a packet that reaches it has a time at or past the next sweep time,
    which then moves to that packet's time plus `every`."""
    where = np.flatnonzero(reaches)
    times = ts[where]
    ceiling = np.maximum.accumulate(times) if len(times) else times
    start, sweep_at, j = 0, None, 0
    while True:
        k = int(np.searchsorted(ceiling[j:], next_sweep, side="left")) + j
        if k >= len(where):
            yield start, len(ts), sweep_at
            return
        stop = int(where[k])
        if stop > start:
            yield start, stop, sweep_at
        start, sweep_at = stop, float(times[k])
        next_sweep = sweep_at + every
        j = k + 1


def group_rows(key: npt.NDArray[np.uint8]) -> tuple[Ints, Ints]:
    """Group equal key rows: (index of each group's first row, group of each row)."""
    padded = np.zeros((len(key), 40), dtype=np.uint8)
    padded[:, : key.shape[1]] = key
    words = padded.view(np.uint64)
    mix = np.uint64(0x9E3779B97F4A7C15)
    hashed = np.zeros(len(key), dtype=np.uint64)
    for col in range(words.shape[1]):
        hashed = (hashed ^ words[:, col]) * mix
        hashed ^= hashed >> np.uint64(29)
    _, first, inverse = np.unique(hashed, return_index=True, return_inverse=True)
    if not (key == key[first[inverse]]).all():  # a hash collision: group exactly instead
        seen: dict[bytes, int] = {}
        rows = [seen.setdefault(bytes(row), i) for i, row in enumerate(key)]
        _, first, inverse = np.unique(np.asarray(rows), return_index=True, return_inverse=True)
    return first.astype(np.int64), inverse.reshape(-1).astype(np.int64)


def walk_batch(runner: BulkRunner, batch: PcapBatch) -> None:
    """One batch through the numpy walk."""
    pipe = runner.pipe
    engine = pipe.engine
    cols = batch.arrays()
    heads = Headers(batch, cols)
    # Packets not read in bulk are decoded now (decoding keeps no state but counts).
    decoded: dict[int, Packet | None] = {}
    decode = pipe.decoder.decode
    for i in np.flatnonzero(~heads.ok).tolist():
        decoded[i] = decode(batch.raw(i))
    reaches = heads.ok.copy()
    for i, pkt in decoded.items():
        reaches[i] = pkt is not None
    every = engine.options.sweep_every_s
    for start, stop, sweep_at in segments(cols.ts, reaches, engine.next_sweep, every):
        if sweep_at is not None:
            engine.sweep_at(sweep_at)
        _Segment(runner, batch, cols, heads, decoded, start, stop).run()


class _Segment:
    """The packets of a batch between two sweeps of the flow table.

    A row is counted in bulk when its flow exists and nothing but counters would change: no
    SYN/FIN/RST, a TCP history letter the flow already has, within the active timeout, and no
    analyzer to see it (no payload, or a flow past its inspected packets that nobody follows).
    Groups whose flow is settled for the whole segment are decided with array operations; the
    other rows are walked in capture order, processed one by one until their flow settles.
    """

    def __init__(
        self,
        runner: BulkRunner,
        batch: PcapBatch,
        cols: BatchArrays,
        heads: Headers,
        decoded: dict[int, Packet | None],
        start: int,
        stop: int,
    ) -> None:
        self.runner = runner
        self.engine = runner.pipe.engine
        self.batch = batch
        self.cols = cols
        self.heads = heads
        self.decoded = decoded
        self.start = start
        self.stop = stop
        self.rows = np.flatnonzero(heads.ok[start:stop]) + start
        """Rows read in bulk, and their flow groups."""
        first, self.group = group_rows(heads.key[self.rows])
        self.keys = [flow_key(row.tobytes()) for row in heads.key[self.rows[first]]]
        # The flows given packets in bulk, by slot, and whether each one's originator is the
        # lower end of its key; the rows counted, with their slot.
        self.flows: list[Flow] = []
        self.orig_low: list[bool] = []
        self.counted: list[int] = []
        self.counted_slot: list[int] = []

    def run(self) -> None:
        room = len(self.engine.flows) + (self.stop - self.start) <= self.engine.options.max_flows
        whole = self._settled_rows() if room and len(self.rows) else None
        self._in_order(whole, room)
        self._apply()

    def _add_slot(self, flow: Flow, key: FlowKey) -> int:
        self.flows.append(flow)
        self.orig_low.append(flow.orig_h == key[1] and flow.orig_p == key[2])
        return len(self.flows) - 1

    def _settled_rows(self) -> npt.NDArray[np.bool_]:
        """Count the rows of groups whose flow is settled for the whole segment; True for each
        row so counted."""
        heads, rows, group = self.heads, self.rows, self.group
        count = len(self.keys)

        def per_group(weights: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
            return np.bincount(group, weights=weights, minlength=count).astype(np.float64)

        payload = per_group(heads.has_payload[rows])
        blocked = per_group(heads.control[rows] | heads.same_ends[rows])
        letter, low = heads.letter[rows], heads.src_low[rows]
        # Rows adding D (code 1) or A (code 2), from the key's lower end and from the higher.
        letters = [per_group((letter == code) & (low == lo)) for code in (1, 2) for lo in (1, 0)]
        last = np.full(count, -np.inf)
        np.maximum.at(last, group, self.cols.ts[rows])
        slot_of = np.full(count, -1, dtype=np.int64)
        flows = self.engine.flows
        limit = self.engine.options.inspect_packets
        active = self.engine.options.active_s
        for g in np.flatnonzero(blocked == 0).tolist():
            key = self.keys[g]
            flow = flows.get(key)
            if flow is None or last[g] - flow.first_ts > active:
                continue
            if payload[g] and ((flow.inspected < limit and flow.inspectors) or flow.followers):
                continue
            if flow.proto == IP_PROTO_TCP:
                lo = flow.orig_h == key[1] and flow.orig_p == key[2]
                wanted = "DdAa" if lo else "dDaA"
                if any(n[g] and wanted[k] not in flow.history for k, n in enumerate(letters)):
                    continue
            slot_of[g] = self._add_slot(flow, key)
        slots = slot_of[group]
        whole = slots >= 0
        self.counted.extend(rows[whole].tolist())
        self.counted_slot.extend(slots[whole].tolist())
        return whole

    def _in_order(self, whole: npt.NDArray[np.bool_] | None, room: bool) -> None:
        """The rows not yet counted, in capture order: counted when their flow has settled by
        then, else decoded and processed."""
        heads, batch, start, stop = self.heads, self.batch, self.start, self.stop
        engine = self.engine
        # Per row: its group, -1 to process it, -2 when already counted.
        group_of = np.full(stop - start, -1, dtype=np.int64)
        if room:
            simple = ~(heads.control[self.rows] | heads.same_ends[self.rows])
            group_of[self.rows[simple] - start] = self.group[simple]
        if whole is not None:
            group_of[self.rows[whole] - start] = -2
        payload = heads.has_payload[start:stop].tolist()
        ts = self.cols.ts[start:stop].tolist()
        low = heads.src_low[start:stop].tolist()
        letter = heads.letter[start:stop].tolist()
        udp = heads.udp[start:stop].tolist()
        keys = self.keys
        seen: list[Flow | None] = [None] * len(keys)
        seen_slot = [0] * len(keys)
        orig_low = self.orig_low
        counted, counted_slot = self.counted.append, self.counted_slot.append
        process = engine.process
        follow = engine.to_followers
        decode = self.runner.pipe.decoder.decode
        decoded = self.decoded
        get = engine.flows.get
        limit = engine.options.inspect_packets
        active = engine.options.active_s
        for j, g in enumerate(group_of.tolist()):
            if g >= 0:
                flow = get(keys[g])
                if flow is not None and ts[j] - flow.first_ts <= active:
                    followed = False
                    if payload[j] and (
                        (flow.inspected < limit and flow.inspectors) or flow.followers
                    ):
                        # Only the followers of a UDP flow past its inspection are served here.
                        if not (udp[j] and flow.inspected >= limit and flow.followers):
                            flow = None
                        followed = True
                    if flow is not None:
                        if flow is not seen[g]:
                            seen[g] = flow
                            seen_slot[g] = self._add_slot(flow, keys[g])
                        slot = seen_slot[g]
                        code = letter[j]
                        if not code or ("DA" if low[j] == orig_low[slot] else "da")[code - 1] in (
                            flow.history
                        ):
                            if followed:
                                follow(
                                    flow, self._packet(start + j, flow, low[j] == orig_low[slot])
                                )
                            counted(start + j)
                            counted_slot(slot)
                            continue
                elif flow is not None and self.counted:
                    # This packet ends its flow (active timeout): counts first, as they came first.
                    self._apply()
                    seen[:] = [None] * len(keys)
            elif g == -2:
                continue
            i = start + j
            pkt = decoded[i] if i in decoded else decode(batch.raw(i))
            if pkt is not None:
                process(pkt)

    def _packet(self, i: int, flow: Flow, from_orig: bool) -> Packet:
        heads = self.heads
        return follower_packet(
            self.batch,
            i,
            flow,
            from_orig,
            int(heads.ip_len[i]),
            int(heads.payload_at[i]),
            int(heads.payload_stop[i]),
            int(heads.payload_len[i]),
        )

    def _apply(self) -> None:
        """Add the counted rows to their flows."""
        if not self.counted:
            return
        heads = self.heads
        rows = np.asarray(self.counted, dtype=np.int64)
        slot = np.asarray(self.counted_slot, dtype=np.int64)
        orig = heads.src_low[rows] == np.asarray(self.orig_low, dtype=np.bool_)[slot]
        count = len(self.flows)
        ts = self.cols.ts[rows]

        def total(values: Ints, where: Mask) -> list[int]:
            sums = np.bincount(slot, weights=np.where(where, values, 0), minlength=count)
            return sums.astype(np.int64).tolist()  # type: ignore[no-any-return]

        ones = np.ones(len(rows), dtype=np.int64)
        ip_len, plen = heads.ip_len[rows], heads.payload_len[rows]
        o_pkts, r_pkts = total(ones, orig), total(ones, ~orig)
        o_bytes, r_bytes = total(ip_len, orig), total(ip_len, ~orig)
        o_plen, r_plen = total(plen, orig), total(plen, ~orig)
        last = np.full(count, -np.inf)
        np.maximum.at(last, slot, ts)
        # Payload packets of a flow nobody inspects still use up its inspected budget.
        payloads = total(ones, heads.has_payload[rows])
        limit = self.engine.options.inspect_packets
        for k, flow in enumerate(self.flows):
            if payloads[k] and flow.inspected < limit:
                flow.inspected = min(limit, flow.inspected + payloads[k])
            flow.orig_pkts += o_pkts[k]
            flow.resp_pkts += r_pkts[k]
            flow.orig_bytes += o_bytes[k]
            flow.resp_bytes += r_bytes[k]
            flow.orig_payload_bytes += o_plen[k]
            flow.resp_payload_bytes += r_plen[k]
            latest = float(last[k])
            if latest > flow.last_ts:
                flow.last_ts = latest
        self.counted.clear()
        self.counted_slot.clear()
        self.flows.clear()
        self.orig_low.clear()
        n = len(rows)
        self.engine.count_bulk(n, float(ts.max()))
        self.runner.pipe.decoder.stats.ip += n
        self.runner.bulk_packets += n
