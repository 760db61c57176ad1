"""The one TCP stream layer: each direction of a TCP flow put back in order, gaps named.

The engine keeps a `TcpStream` for a TCP flow while an analyzer that reads byte streams
(`tcp_stream = True` on its class) inspects or follows it, and hands those analyzers the
direction's bytes in sequence order instead of the segments as captured: a segment that
arrives early waits (within `max_bytes` and `max_segments` per direction) for the ones before
it, a retransmission or overlap gives only its new bytes (the first copy wins), and a hole
that cannot be filled is passed over and reported: the next delivery's `Packet.gap` says how
many bytes are missing before it. A hole is given up when the peer has acknowledged the bytes
after it (they were sent, the capture missed them), when the buffer is full, and when the
flow ends or stops being inspected.

Positions are relative sequence numbers of the direction (`dronewatch.core.tcp.rel_seq`): its
first byte after the SYN (or after the start the connection state chose without one) is 1.
Each delivery is a copy of the segment's `Packet` (the original itself when nothing changed)
with the delivered bytes as payload, so its `ts` and `frame` are those of the segment the
bytes came in.

A reader that needs none of the next bytes of a direction (the body of an HTTP message of known
length, whose end it waits for) says so with `Flow.pass_over`; while it is the flow's only
stream reader, the layer then delivers nothing below that point: it moves on as far as the
connection state has seen the direction's bytes in order (`tcp.SEEN`: captured, or acknowledged
past a hole), and the next delivery's `Packet.skipped` says how many bytes were passed over
(the flow's end delivers an empty payload to say it). The C walk counts such segments of a
followed flow itself (`tcp.SKIP`), and the layer's state comes out the same whichever path ran,
because it moves on by the connection state only.

A follower that keeps its counts in a frame counter (`Flow.follow(name, counter)`: an MQTT
flow's `MqttCounter`), as the flow's one follower, has each segment that starts where the layer
stands, with nothing held or to report, offered to the counter first: what the counter takes
(whole packets its reader would only count) is not delivered, and the layer moves past it; what
it refuses goes to the reader as usual. The C walk offers the same segments of such a flow to
the same counter itself (`tcp.FEED`: where the layer stands, published after each call into the
layer and moved on by the walk), so the counts come out the same whichever path ran.
"""

from __future__ import annotations

import copy as copy_module
from collections.abc import Callable
from dataclasses import dataclass

from dronewatch.core import tcp
from dronewatch.core.flow import TCP_ACK, TCP_SYN, Flow, FrameCounter, Packet


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Bounds of the stream layer, per direction of a flow."""

    max_bytes: int = 256 * 1024
    """Most bytes held while waiting for a hole to fill; beyond, the hole is given up."""
    max_segments: int = 128
    """Most segments held while waiting for a hole to fill."""


class _Held:
    """A segment that arrived before the bytes preceding it."""

    __slots__ = ("start", "data", "pkt")

    def __init__(self, start: int, data: bytes, pkt: Packet) -> None:
        self.start = start
        self.data = data
        self.pkt = pkt


class Direction:
    """One direction's reassembly state."""

    __slots__ = ("next", "held", "held_bytes", "gap", "missed", "skip_to", "skipped")

    def __init__(self) -> None:
        self.next = 1
        """Relative sequence number of the next byte to deliver."""
        self.held: dict[int, _Held] = {}
        self.held_bytes = 0
        self.gap = 0
        """Bytes given up and not reported yet (reported with the next delivery)."""
        self.missed = 0
        """Bytes given up so far."""
        self.skip_to = 0
        """Bytes below this relative sequence number are passed over, not delivered (0: none)."""
        self.skipped = 0
        """Bytes passed over and not reported yet (reported with the next delivery)."""


Delivery = tuple[Packet, bytes, int, int, int]
"""(segment the bytes came in, bytes, relative sequence number of the first byte, gap before,
bytes passed over before)."""


class TcpStream:
    """Both directions of one TCP flow (`orig`, `resp`) put in order."""

    __slots__ = ("orig", "resp", "options")

    def __init__(self, options: StreamOptions) -> None:
        self.orig = Direction()
        self.resp = Direction()
        self.options = options

    def flip(self) -> None:
        """The flow's roles changed."""
        self.orig, self.resp = self.resp, self.orig

    def add(self, from_orig: bool, rel: int, data: bytes, pkt: Packet) -> list[Delivery]:
        """A segment's payload at relative sequence number `rel`: what can be delivered now."""
        d = self.orig if from_orig else self.resp
        end = rel + len(data)
        if end <= d.next or not data:
            return []  # all seen before
        if rel < d.next:
            data = data[d.next - rel :]  # the first copy of overlapping bytes wins
            rel = d.next
        if rel > d.next:
            self._hold(d, rel, data, pkt)
            out: list[Delivery] = []
            opts = self.options
            while d.held and (d.held_bytes > opts.max_bytes or len(d.held) > opts.max_segments):
                self._give_up(d, min(d.held), out)
            return out
        out = [self._take(d, pkt, data, rel)]
        self._drain(d, out)
        return out

    def acked(self, from_orig: bool, upto: int) -> list[Delivery]:
        """The peer has acknowledged the direction's bytes before relative sequence number
        `upto`: holes below it are given up."""
        d = self.orig if from_orig else self.resp
        out: list[Delivery] = []
        while d.next < upto:
            first = min(d.held) if d.held else None
            if first is not None and first < upto:
                self._give_up(d, first, out)
            else:
                d.gap += upto - d.next
                d.missed += upto - d.next
                d.next = upto
        return out

    def pass_over(self, from_orig: bool, seen: int) -> list[Delivery]:
        """Move a direction being passed over on to `seen` (how far the connection state saw its
        bytes in order), at most to the end of the pass: what was held below is dropped, and what
        then follows on is delivered."""
        d = self.orig if from_orig else self.resp
        if not d.skip_to:
            return []
        target = min(seen, d.skip_to)
        out: list[Delivery] = []
        if target > d.next:
            d.skipped += target - d.next
            d.next = target
            self._drain(d, out)
        if d.next >= d.skip_to:
            d.skip_to = 0
        return out

    def skip(self, from_orig: bool, upto: int) -> bool:
        """Pass over the direction's bytes below relative sequence number `upto`; False when it
        is not ahead of what was delivered."""
        d = self.orig if from_orig else self.resp
        if upto <= d.next:
            return False
        d.skip_to = upto
        return True

    def skip_mark(self, from_orig: bool) -> int:
        """Where the direction's pass ends (0: none)."""
        return (self.orig if from_orig else self.resp).skip_to

    def feed_at(self, from_orig: bool) -> int:
        """Where a counter may take the direction's next bytes: where the layer stands, when it
        holds nothing, has no hole or pass to report and passes nothing over (0: not now)."""
        d = self.orig if from_orig else self.resp
        if d.held or d.gap or d.skipped or d.skip_to:
            return 0
        return d.next

    def fed(self, from_orig: bool, upto: int) -> None:
        """A counter took the direction's bytes below relative sequence number `upto`, starting
        where `feed_at` said."""
        d = self.orig if from_orig else self.resp
        if upto > d.next:
            d.next = upto

    def take_skipped(self, from_orig: bool) -> int:
        """Bytes passed over and not reported yet, now reported."""
        d = self.orig if from_orig else self.resp
        n, d.skipped = d.skipped, 0
        return n

    def flush(self, from_orig: bool) -> list[Delivery]:
        """Everything still held in a direction, holes given up (the flow ends or is no longer
        read)."""
        d = self.orig if from_orig else self.resp
        out: list[Delivery] = []
        while d.held:
            self._give_up(d, min(d.held), out)
        return out

    @staticmethod
    def _hold(d: Direction, rel: int, data: bytes, pkt: Packet) -> None:
        old = d.held.get(rel)
        if old is not None:
            if len(old.data) >= len(data):
                return
            d.held_bytes -= len(old.data)
        d.held[rel] = _Held(rel, data, pkt)
        d.held_bytes += len(data)

    def _give_up(self, d: Direction, first: int, out: list[Delivery]) -> None:
        """Pass over the hole before held segment `first` and deliver from there."""
        missing = first - d.next
        if missing > 0:
            d.gap += missing
            d.missed += missing
            d.next = first
        self._drain(d, out)

    def _take(self, d: Direction, pkt: Packet, data: bytes, rel: int) -> Delivery:
        gap, d.gap = d.gap, 0
        skipped, d.skipped = d.skipped, 0
        d.next = rel + len(data)
        return (pkt, data, rel, gap, skipped)

    def _drain(self, d: Direction, out: list[Delivery]) -> None:
        """Deliver the held segments that now follow on."""
        while d.held:
            first = min(d.held)
            if first > d.next:
                return
            held = d.held.pop(first)
            d.held_bytes -= len(held.data)
            end = first + len(held.data)
            if end <= d.next:
                continue
            data = held.data[d.next - first :] if first < d.next else held.data
            out.append(self._take(d, held.pkt, data, max(first, d.next)))


Hook = Callable[[Flow, Packet], None]
Hooks = tuple[Hook, ...]


class StreamReaders:
    """The engine's side of the stream layer: which analyzers read TCP byte streams (those whose
    class sets `tcp_stream = True`), each flow's `TcpStream` while one of them inspects or
    follows it, and the deliveries to them; the other analyzers get the segments as captured."""

    def __init__(
        self,
        names: frozenset[str],
        followers: dict[str, Hook],
        inspect_packets: int,
        options: StreamOptions,
    ) -> None:
        self.names = names
        """The analyzers that read byte streams."""
        self._followers = followers
        """Every analyzer's (guarded) packet hook, by name."""
        self._hook_names = {hook: name for name, hook in followers.items()}
        self._inspect = inspect_packets
        self._options = options
        self._split: dict[Hooks, tuple[Hooks, Hooks]] = {}
        """Each tuple of inspector hooks cut in two: segment readers, stream readers."""

    def inspect(self, flow: Flow, pkt: Packet, from_orig: bool) -> None:
        """An inspected TCP segment: to the segment readers as it is, to the stream readers in
        order; the stream is let go when no stream reader is left, after the last inspected
        segment unless a stream reader follows the flow."""
        raw, streams = self._cut(flow.inspectors)
        for hook in raw:
            hook(flow, pkt)
        if streams:
            self._add(flow, pkt, from_orig)
        if flow.stream is None:
            return
        streams = self._cut(flow.inspectors)[1]
        if not streams:
            flow.stream = None
        elif flow.inspected >= self._inspect and not any(n in self.names for n in flow.followers):
            self._flush(flow, streams)
            flow.stream = None
        if flow.counters:
            self._publish(flow)

    def follow(self, flow: Flow, pkt: Packet) -> None:
        """A TCP segment past the inspected ones, for the analyzers that follow the flow."""
        streams = False
        for name in flow.followers:
            if name in self.names:
                streams = True
            else:
                self._followers[name](flow, pkt)
        if streams:
            from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
            self._add(flow, pkt, from_orig, self._counter(flow))
        if flow.counters:
            self._publish(flow)

    def acked(self, flow: Flow, pkt: Packet, peer_is_orig: bool) -> None:
        """A segment with an ACK: holes in the peer's stream it acknowledges are given up."""
        t, stream = flow.tcp, flow.stream
        if t is None or stream is None or not pkt.tcp_flags & TCP_ACK:
            return
        p = 0 if peer_is_orig else tcp.BLOCK
        if t[p + tcp.FLAGS] & tcp.F_INIT:
            if flow.counters:
                self._sync(flow)
            self._catch_up(flow, peer_is_orig)
            upto = t[p + tcp.AREL]
            self._deliver(flow, peer_is_orig, stream.acked(peer_is_orig, upto))
            k = tcp.ACKED + (0 if peer_is_orig else 1)
            if upto > t[k]:
                t[k] = upto  # the walk counts only segments whose ACK gives up nothing more
            if flow.counters:
                self._publish(flow)

    def end(self, flow: Flow) -> None:
        """The flow ends: what its stream still holds goes to its readers, holes given up."""
        if flow.counters:
            self._sync(flow)
        self._flush(flow)
        flow.stream = None

    def _cut(self, hooks: Hooks) -> tuple[Hooks, Hooks]:
        split = self._split.get(hooks)
        if split is None:
            names = self.names
            split = self._split[hooks] = (
                tuple(h for h in hooks if self._hook_names[h] not in names),
                tuple(h for h in hooks if self._hook_names[h] in names),
            )
        return split

    def _readers(self, flow: Flow) -> Hooks:
        """The packet hooks that read the flow's byte streams now."""
        if flow.inspected < self._inspect or not flow.followers:
            return self._cut(flow.inspectors)[1]
        return tuple(self._followers[n] for n in flow.followers if n in self.names)

    def _add(
        self, flow: Flow, pkt: Packet, from_orig: bool, counter: FrameCounter | None = None
    ) -> None:
        """A segment's bytes into the flow's stream, and what follows on to the readers (offered
        to the flow's one follower's `counter` first, when it starts where the layer stands)."""
        t = flow.tcp
        if t is None:
            return
        stream = flow.stream
        if stream is None:
            stream = flow.stream = TcpStream(self._options)
        e = 0 if from_orig else tcp.BLOCK
        if flow.counters:
            self._sync(flow)
        self._catch_up(flow, from_orig)
        rel = tcp.rel_seq(t, e, pkt.tcp_seq) + (1 if pkt.tcp_flags & TCP_SYN else 0)
        if rel < 0:
            return  # before the start of the stream: Zeek does not deliver it either
        if counter is not None and rel == stream.feed_at(from_orig):
            if counter.feed(pkt.payload, from_orig) >= 0:
                stream.fed(from_orig, rel + len(pkt.payload))
                return
        self._deliver(flow, from_orig, stream.add(from_orig, rel, pkt.payload, pkt))

    def _counter(self, flow: Flow) -> FrameCounter | None:
        """The frame counter of the flow's one follower, when it reads the byte stream."""
        counters = flow.counters
        if len(counters) != 1 or flow.followers[0] not in self.names:
            return None
        return counters[0]

    @staticmethod
    def _sync(flow: Flow) -> None:
        """The layer moves past what the C walk's counter took since it last stood somewhere
        (`tcp.FEED`, moved on by the walk)."""
        t, stream = flow.tcp, flow.stream
        if t is None or stream is None:
            return
        if t[tcp.FEED]:
            stream.fed(True, t[tcp.FEED])
        if t[tcp.FEED + 1]:
            stream.fed(False, t[tcp.FEED + 1])

    def _publish(self, flow: Flow) -> None:
        """Where each direction stands, for the C walk to offer the counter what follows
        (`tcp.FEED`; 0 when no counter may take it)."""
        t, stream = flow.tcp, flow.stream
        if t is None:
            return
        if stream is None or self._counter(flow) is None:
            t[tcp.FEED] = t[tcp.FEED + 1] = 0
            return
        t[tcp.FEED] = stream.feed_at(True)
        t[tcp.FEED + 1] = stream.feed_at(False)

    def _catch_up(self, flow: Flow, from_orig: bool) -> None:
        """A direction being passed over moves on as far as the connection state saw its bytes
        in order (segments the C walk counted, or that came before this one)."""
        stream, t = flow.stream, flow.tcp
        if stream is None or t is None or not stream.skip_mark(from_orig):
            return
        seen = t[(0 if from_orig else tcp.BLOCK) + tcp.SEEN]
        self._deliver(flow, from_orig, stream.pass_over(from_orig, seen))
        t[tcp.SKIP + (0 if from_orig else 1)] = stream.skip_mark(from_orig)

    def _take_request(self, flow: Flow) -> None:
        """An analyzer's `Flow.pass_over`, taken up while it is the flow's only reader of the
        direction (no other stream reader, no follower reading segments)."""
        request, flow.pass_request = flow.pass_request, None
        stream, t = flow.stream, flow.tcp
        if request is None or stream is None or t is None:
            return
        name, from_orig, seq = request
        if any(f != name for f in flow.followers):
            return
        if [self._hook_names[h] for h in self._readers(flow)] != [name]:
            return
        upto = tcp.rel_seq(t, 0 if from_orig else tcp.BLOCK, seq)
        if stream.skip(from_orig, upto):
            t[tcp.SKIP + (0 if from_orig else 1)] = upto

    def _flush(self, flow: Flow, hooks: Hooks | None = None) -> None:
        stream, t = flow.stream, flow.tcp
        if stream is None:
            return
        for from_orig in (True, False):
            self._catch_up(flow, from_orig)
            self._deliver(flow, from_orig, stream.flush(from_orig), hooks)
            skipped = stream.take_skipped(from_orig)
            if skipped and t is not None:
                # Passed over to the end, nothing delivered after: say how much, with no bytes.
                self._report_skipped(flow, from_orig, skipped, hooks)
            if t is not None:
                t[tcp.SKIP + (0 if from_orig else 1)] = 0

    def _deliver(
        self, flow: Flow, from_orig: bool, deliveries: list[Delivery], to: Hooks | None = None
    ) -> None:
        """Bytes to the readers, each as a copy of the segment it came in (the segment itself
        when nothing changed)."""
        t = flow.tcp
        for seg, data, rel, gap, skipped in deliveries:
            hooks = self._readers(flow) if to is None else to
            if not hooks or t is None:
                return
            pkt = seg
            if gap or skipped or len(data) != len(seg.payload):
                e = 0 if from_orig else tcp.BLOCK
                seq = (t[e + tcp.START] + rel) & 0xFFFFFFFF
                pkt = _segment_copy(seg, data, seq, gap, skipped)
            for hook in hooks:
                hook(flow, pkt)
            if flow.pass_request is not None:
                self._take_request(flow)

    def _report_skipped(self, flow: Flow, from_orig: bool, skipped: int, to: Hooks | None) -> None:
        """Tell the readers of a direction passed over to its end how many bytes that was: an
        empty delivery from that end at the flow's last time."""
        hooks = self._readers(flow) if to is None else to
        t = flow.tcp
        if not hooks or t is None:
            return
        e = 0 if from_orig else tcp.BLOCK
        src, sport = (flow.orig_h, flow.orig_p) if from_orig else (flow.resp_h, flow.resp_p)
        dst, dport = (flow.resp_h, flow.resp_p) if from_orig else (flow.orig_h, flow.orig_p)
        pkt = Packet(
            ts=flow.last_ts,
            frame=0,
            wirelen=0,
            caplen=0,
            linktype=0,
            ip_version=4 if len(src) == 4 else 6,
            src=src,
            dst=dst,
            proto=flow.proto,
            sport=sport,
            dport=dport,
            tcp_seq=(t[e + tcp.START] + t[e + tcp.SEEN]) & 0xFFFFFFFF,
            skipped=skipped,
        )
        for hook in hooks:
            hook(flow, pkt)


def _segment_copy(seg: Packet, data: bytes, seq: int, gap: int, skipped: int = 0) -> Packet:
    """`seg` carrying `data` from sequence number `seq`, `gap` bytes missing before it and
    `skipped` passed over before those."""
    copy = copy_module.copy(seg)
    copy.payload, copy.payload_len, copy.tcp_seq, copy.gap = data, len(data), seq, gap
    copy.skipped = skipped
    return copy
