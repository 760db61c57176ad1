"""The flow table: assigns packets to bidirectional flows, expires them, and dispatches hooks."""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import logging
import os
import struct
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import compress, islice, repeat
from operator import attrgetter, eq, itemgetter, lt
from zlib import crc32

from dronewatch.analyzers.dns import DNS_PORT, is_dns_response
from dronewatch.core import tcp
from dronewatch.core.community_id import ICMP4_PAIRS, ICMP6_PAIRS
from dronewatch.core.flow import (
    IP_PROTO_ICMP,
    IP_PROTO_ICMP6,
    IP_PROTO_TCP,
    IP_PROTO_UDP,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    Flow,
    Packet,
)
from dronewatch.core.hooks import (
    Analyzer,
    AnalyzerHooks,
    Context,
    FrameInterest,
    find_hooks,
    make_record,
)
from dronewatch.core.stream import StreamOptions, StreamReaders
from dronewatch.fastpath import native
from dronewatch.geoip.local import builtin_local_nets

logger = logging.getLogger(__name__)

FlowKey = tuple[int, bytes, int, bytes, int]

STRICT_ANALYZERS_ENV = "DRONEWATCH_STRICT_ANALYZERS"
"""When set (non-empty), an exception in an analyzer's hook is raised again instead of counted:
the test suite sets it, so an analyzer that raises fails every test that reaches it."""


_Readers = tuple[
    tuple[str, ...],
    tuple[Callable[[Flow, Packet], None], ...],
    tuple[tuple[str, Callable[[Flow], None]], ...],
]
"""The names of the analyzers that want a flow, their packet hooks, and the end hooks it calls
once inspected (`Engine._readers_of`)."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """Flow-table tunables."""

    tcp_idle_s: float = 300.0
    """A TCP flow with no packet for this long ends (Zeek's tcp_inactivity_timeout)."""
    udp_idle_s: float = 60.0
    """A UDP flow with no packet for this long ends."""
    other_idle_s: float = 60.0
    """ICMP and other protocols."""
    active_s: float = 1800.0
    """A flow longer than this is cut into a new flow (NFStream's active timeout)."""
    close_linger_s: float = 5.0
    """A TCP flow closed by FIN/RST ends this long after, to keep its final ACKs (Zeek's
    tcp_close_delay); a SYN nobody answers within it ends the attempt (tcp_attempt_delay)."""
    session_s: float = 6.0
    """A TCP flow closed on one side only is looked at again this often, and ends once quiet for
    `close_linger_s` (Zeek's tcp_session_timer)."""
    inspect_packets: int = 32
    """Payload packets per flow handed to every analyzer; after them only the analyzers that
    follow the flow (`Flow.follow`) see its packets, and the rest only update counters."""
    sweep_every_s: float = 5.0
    """How often (in network time) idle flows are looked for."""
    max_flows: int = 200_000
    """Most flows kept at once: a new flow beyond it first ends about 1% of them, the longest
    idle first (`end_reason` evicted, counted in the capture record's `evicted_flows`). A flow
    holds about 1 KB (1.5 KB of resident memory), so the default keeps `analyze` under 500 MB
    whatever a flood of new flows brings (bench/MEMORY.md)."""
    stream_bytes: int = 256 * 1024
    """Most bytes held per direction of a TCP flow while a hole in its byte stream waits to be
    filled (`dronewatch.core.stream`)."""
    stream_segments: int = 128
    """Most segments held per direction of a TCP flow while a hole waits to be filled."""
    stall_packets: int = 12
    """Payload packets a flow's analyzers are handed in a row while every one of them waits
    (`Flow.wait`: a handshake's answer, the other direction, bytes past a gap); the next one
    stops the flow's inspection: its analyzers see no more of it, the C walk counts the rest,
    and its `flows` record says why (`inspection`). An analyzer still reading (counting frames,
    following a stream in step, sampling a behaviour) never waits, so it is never stopped.
    0: no bound."""
    stall_bytes: int = 256 * 1024
    """Payload bytes after which, handed in a row while every analyzer waits, the next packet
    stops the flow's inspection, as `stall_packets` (0: no bound)."""

    def __post_init__(self) -> None:
        for name in ("stall_packets", "stall_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"EngineOptions.{name}={value!r}: must be a whole number, 0 (no bound) or more"
                )


class Engine:
    """Assembles flows from packets and calls the analyzers' hooks.

    The analyzers are registered as the engine is made: `find_hooks` collects each one's hooks
    through the hook Protocols and refuses (ValueError) an analyzer it cannot trust to be called
    as meant. Every hook is wrapped so that its failures are counted (`failures`)."""

    def __init__(
        self,
        analyzers: Iterable[Analyzer],
        ctx: Context,
        options: EngineOptions | None = None,
        *,
        share: Share | None = None,
    ) -> None:
        """`share`: this engine is one of several processes analysing one capture (`Share`)."""
        self.options = options or EngineOptions()
        self.share = share
        self.not_owned = 0
        """IP packets handled here that belong to another process's flows (`share`), those of
        the foreign flows included."""
        self.foreign: set[str] = ctx.facts_only
        """The uids of the open flows made here for their facts only (`Share.every_port`): the
        context's set, which the analyzers read."""
        self.foreign_flows = 0
        self.current: Flow | None = None
        """The flow of the packet being handled."""
        self.frame = 0
        """Frame number of the packet being handled (or the one whose time made a sweep)."""
        self.phase = _PHASE_PACKET
        """What the engine is doing at `frame`: `_PHASE_TIMERS`, `_PHASE_IDLE` (a sweep) or
        `_PHASE_PACKET`; with `ending` and `frame`, where a record made now falls in the
        capture (`position`)."""
        self.ending: Flow | None = None
        """The flow whose `flow_end` hooks run now."""
        self.first_frame = 0
        """Frame number of the first packet handled (the capture record's `ts` is its time)."""
        self.ctx = ctx
        self.analyzers = list(analyzers)
        self.flows: dict[FlowKey, Flow] = {}
        self._timers: dict[FlowKey, float] = {}
        """TCP flows to look at again at a time (a close, an attempt, a half close), by the time
        the wait counts from (`_due_at`): most often the float object of the packet that set the
        timer, which the flow holds anyway, so a timer costs its table entry only."""
        self._timer_kinds: dict[FlowKey, int] = {}
        """The kind of each timer that is not an attempt's (`_CLOSE`, `_EXPIRE`)."""
        self._next_sweep = 0.0
        self._oldest = [float("inf")] * 3
        """A lower bound of the last packet time of the TCP, UDP and other flows."""
        self._now = 0.0
        self.flows_total = 0
        self.flows_ended = 0
        """Flows ended so far (on a change, the bulk path's C walk drops its flow references)."""
        self.evicted_flows = 0
        """Flows ended early because the table was full (`EngineOptions.max_flows`): their later
        packets, if any, made new flows, so their counters are split and what an analyzer reads
        across the cut may be missed (the capture record's `evicted_flows`)."""
        self.packets = 0
        self.first_ts: float | None = None
        self._shared: dict[bytes, bytes] = {}
        """One object per address or MAC value seen, for the flows to share."""
        self._inspector_sets: dict[tuple[bool, tuple[str, ...]], _Readers] = {}
        """The (names, packet hooks, end hooks) of each set of analyzers that want a flow (and
        whether the flow is made for its facts only), shared by the flows."""
        self.inspection_stopped = 0
        """Flows whose inspection stopped because their analyzers waited too long
        (`EngineOptions.stall_packets`)."""
        self.failures = AnalyzerFailures(strict=bool(os.environ.get(STRICT_ANALYZERS_ENV)))
        """Exceptions raised by the analyzers' hooks, counted (see `AnalyzerFailures`)."""
        registered = _register(self.analyzers)
        guard = self.failures
        self._on_start: list[tuple[str, Callable[[Flow, Packet], None]]] = [
            (h.name, guard.flow_start(h.name, h.flow_start))
            for h in registered
            if h.flow_start is not None
        ]
        self._followers: dict[str, Callable[[Flow, Packet], None]] = {
            h.name: guard.packet(h.name, h.packet) for h in registered if h.packet is not None
        }
        self._on_packet: list[
            tuple[str, Callable[[Flow], bool] | None, Callable[[Flow, Packet], None]]
        ] = [
            (
                h.name,
                guard.wants(h.name, h.wants) if h.wants is not None else None,
                self._followers[h.name],
            )
            for h in registered
            if h.packet is not None
        ]
        readers_of_packets = [h for h in registered if h.packet is not None]
        self._wants_by_port = tuple(
            (1 << i, h.wants)
            for i, h in enumerate(readers_of_packets)
            if h.wants is None or h.wants_ports is not None
        )
        """The analyzers' own `wants` (None: wants every flow), unguarded (`_wanted`), of those
        deciding on the protocol and their declared ports (`WantsHook`): one bit each."""
        self._wants_each = tuple(
            (1 << i, h.wants)
            for i, h in enumerate(readers_of_packets)
            if h.wants is not None and h.wants_ports is None
        )
        """Those of the others, asked for every flow."""
        self._wants_ports: frozenset[int] = frozenset().union(
            *(h.wants_ports for h in readers_of_packets if h.wants_ports is not None)
        )
        self._wants_known: dict[tuple[int, int, int], int] = {}
        """The bits of `_wants_by_port` wanting a flow, by protocol and ports (a port none of
        them declared read as -1)."""
        self._wants_names: dict[int, tuple[str, ...]] = {}
        """The names of the analyzers of each set of bits, in order."""
        self._reader_names = tuple(h.name for h in readers_of_packets)
        self.streams = StreamReaders(
            frozenset(a.name for a in self.analyzers if getattr(a, "tcp_stream", False) is True),
            self._followers,
            self.options.inspect_packets,
            StreamOptions(self.options.stream_bytes, self.options.stream_segments),
        )
        """The TCP stream layer's deliveries to the analyzers that read byte streams."""
        self._on_end: tuple[tuple[str, Callable[[Flow], None]], ...] = tuple(
            (h.name, h.flow_end) for h in registered if h.flow_end is not None
        )
        """The analyzers' own `flow_end` hooks, unguarded: `_end_hooks` calls them all in one
        `try` (a flood of short flows ends a flow per packet, and every analyzer has the hook)."""
        readers = share.readers if share is not None else frozenset()
        self._readers = readers
        """The analyzers that read the flows made for their facts (`Share.readers`)."""
        hooks = [h for h in registered if h.name in readers]
        facts = [
            guard.facts(h.name, h.facts)
            for h in hooks
            if h.facts is not None and not _needs_flows(self.analyzers, h.name)
        ]
        self._facts = tuple(facts) if hooks and len(facts) == len(hooks) else None
        """The readers' `facts` hooks, when every reader run reads another process's UDP
        datagrams and ICMPv6 messages without their flows (`FactsHook`); None: those flows are
        made here for them."""
        self._unread = frozenset(h.name for h in registered if h.packet is None or h.flow_start)
        """The analyzers whose `flow_end` every flow needs, whether or not they were handed its
        packets: those without a `packet` hook, or with a `flow_start` hook."""
        self._on_end_unread = tuple(
            (name, hook) for name, hook in self._on_end if name in self._unread
        )
        self._on_end_foreign_unread = tuple(
            (name, hook) for name, hook in self._on_end_unread if name in readers
        )
        """The `flow_end` hooks a flow no payload packet was inspected of still needs (a scan's
        SYN, a refused connection). A packet hook never handed one of the flow's packets has
        nothing of it to write or drop (`FlowEndHook`), and a flood of such flows ends one per
        packet; a flow that was inspected calls those and the hooks of the analyzers that
        wanted it (`Flow.end_hooks`)."""
        self._on_frame: list[Callable[[Packet], None]] = [
            guard.frame(h.name, h.frame) for h in registered if h.frame is not None
        ]
        interest: FrameInterest | None = FrameInterest()
        for h in registered:
            if h.frame is not None:
                declared = h.frame_interest
                interest = None if interest is None or declared is None else interest | declared
        if share is not None and share.index != 0:
            interest = FrameInterest()  # the frame hooks run in process 0 of a shared capture only
        self.frame_interest = interest
        """The 802.11 management frames the frame hooks read (`FrameInterest`); the C walk counts
        the others itself. None: a hook declared none, so every one goes to them."""
        self._on_done: list[Callable[[], None]] = [
            guard.done(h.name, h.done) for h in registered if h.done is not None
        ]

    @property
    def now(self) -> float:
        """Network time of the latest packet."""
        return self._now

    def _arrive(self, ts: float, frame: int) -> None:
        """Count a packet handled here, at time `ts`, frame `frame`: the first one, the clock."""
        self.packets += 1
        self.frame = frame
        if self.first_ts is None:
            self.first_ts = ts
            self.first_frame = frame
        if ts > self._now:
            self._now = ts

    def process(self, pkt: Packet) -> None:
        """Account one decoded packet."""
        ts = pkt.ts
        self._arrive(ts, pkt.frame)
        if ts >= self._next_sweep:
            self._sweep(ts)
        if pkt.ip_version == 0:
            self.current = None
            if self.share is None or self.share.index == 0:
                for on_frame in self._on_frame:
                    on_frame(pkt)
            return
        proto, src, dst, sport, dport = pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport
        if proto == IP_PROTO_ICMP or proto == IP_PROTO_ICMP6:
            # Zeek's ICMP flows: a request and its reply are one flow, keyed by the type and its
            # counterpart; a message without a counterpart is a flow of its own direction.
            pair = (ICMP4_PAIRS if proto == IP_PROTO_ICMP else ICMP6_PAIRS).get(sport)
            if pair is None:
                key: FlowKey = (proto, src, sport, dst, dport)
            else:
                dport = pair
                key = (proto, src, sport, dst, dport)
                if (src, sport) > (dst, dport):
                    key = (proto, dst, dport, src, sport)
        elif (src, sport) <= (dst, dport):
            key = (proto, src, sport, dst, dport)
        else:
            key = (proto, dst, dport, src, sport)
        flow = self.flows.get(key)
        if flow is not None:
            if ts - flow.first_ts > self.options.active_s:
                self._end(key, flow, "active")
                flow = None
            elif self._timers and key in self._timers and self._due(key, flow, ts):
                flow = None
            elif (
                proto == IP_PROTO_TCP
                and flow.tcp is not None
                and tcp.is_reuse(flow.tcp, pkt.tcp_flags, pkt.tcp_seq)
            ):
                self._end(key, flow, "reuse")
                flow = None
        if flow is None:
            foreign = False
            if self.share is not None:
                making = self.share.making(key)
                if making == _NOT_MINE:
                    self.not_owned += 1
                    return  # another process's flow
                foreign = making == _FOR_FACTS
                if foreign and proto != IP_PROTO_TCP and self._facts is not None:
                    self._read_facts(pkt)
                    return
            key, flow = self._start(key, pkt, sport, dport, foreign)
        self.current = flow
        from_orig = src == flow.orig_h and sport == flow.orig_p
        if pkt.bad_checksum:
            self._bad_checksum(flow, from_orig)
            return
        plen = pkt.payload_len
        if from_orig:
            flow.orig_pkts += 1
            flow.orig_bytes += pkt.ip_len
        else:
            flow.resp_pkts += 1
            flow.resp_bytes += pkt.ip_len
        if proto == IP_PROTO_TCP:
            if from_orig:
                flow.orig_payload_bytes += plen  # replaced by the sequence space at the end
            else:
                flow.resp_payload_bytes += plen
            self._tcp(key, flow, pkt, from_orig)
            from_orig = src == flow.orig_h and sport == flow.orig_p  # the roles may have flipped
            # Only segments every path hands to the engine give up holes (a pure ACK may be
            # counted by the C walk), so the streams read the same whichever path runs.
            if flow.stream is not None and (pkt.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) or plen):
                self.streams.acked(flow, pkt, not from_orig)
        else:
            if ts > flow.last_ts:
                flow.last_ts = ts
            if proto == IP_PROTO_ICMP or proto == IP_PROTO_ICMP6:
                plen = max(0, plen - 4)  # Zeek counts ICMP payload past the 8-byte header
            if from_orig:
                flow.orig_payload_bytes += plen
            else:
                flow.resp_payload_bytes += plen
            if proto == IP_PROTO_UDP:
                letter = "D" if from_orig else "d"
                if letter not in flow.history:
                    flow.history = sys.intern(flow.history + letter)
        if pkt.payload:
            if flow.inspected < self.options.inspect_packets:
                flow.inspected += 1
                if flow.waiting and self._stalled(flow, pkt, flow.inspector_names, from_orig):
                    return
                if proto == IP_PROTO_TCP:
                    self.streams.inspect(flow, pkt, from_orig)
                else:
                    for hook in flow.inspectors:
                        hook(flow, pkt)
            elif flow.followers:
                self.to_followers(flow, pkt)

    @property
    def reads_facts(self) -> bool:
        """Whether another process's UDP datagrams on `Share.every_port` are read without their
        flows (`FactsHook`): then the C walk hands them to `read_facts`."""
        return self._facts is not None

    def read_facts(self, pkt: Packet) -> None:
        """Account a UDP datagram of another process's flow on `Share.every_port` (the C walk's,
        its checksums good), as `process` accounts it: read for its facts without its flow. The
        walk made the sweep its time called for (`sweep_at`) before handing it over, and this
        touches no flow, so the walk's counts need not be written to the flows first."""
        self._arrive(pkt.ts, pkt.frame)
        self._read_facts(pkt)

    def _read_facts(self, pkt: Packet) -> None:
        """The datagram to the readers' `facts` hooks; the flow is its owner's."""
        self.not_owned += 1
        facts = self._facts
        if facts is not None and not pkt.bad_checksum:  # a packet its receiver dropped says nothing
            for read in facts:
                read(pkt)

    @staticmethod
    def _bad_checksum(flow: Flow, from_orig: bool) -> None:
        """A packet of the flow its receiver dropped (`Packet.bad_checksum`): only its letter, as
        Zeek writes it (`C`/`c` at the 1st, 10th, 100th... of a direction)."""
        if from_orig:
            flow.orig_bad_checksums += 1
            if tcp.scaled(flow.orig_bad_checksums):
                flow.history = sys.intern(flow.history + "C")
        else:
            flow.resp_bad_checksums += 1
            if tcp.scaled(flow.resp_bad_checksums):
                flow.history = sys.intern(flow.history + "c")

    def to_followers(self, flow: Flow, pkt: Packet) -> None:
        """Hand a packet past a flow's inspected ones to the analyzers that follow the flow (a
        TCP segment to the stream readers through the stream layer)."""
        if flow.waiting and self._stalled(
            flow, pkt, flow.followers, pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        ):
            return
        self.current = flow
        if flow.proto == IP_PROTO_TCP:
            self.streams.follow(flow, pkt)
            return
        for name in flow.followers:
            self._followers[name](flow, pkt)

    def _stalled(self, flow: Flow, pkt: Packet, readers: tuple[str, ...], from_orig: bool) -> bool:
        """Whether a payload packet for a flow some analyzer waits on (`Flow.wait`) stops its
        inspection instead of going to `readers`, the analyzers reading the flow now.

        Only while every reader waits does the packet count; one still reading starts the count
        again. A packet from the end a reader waits for does not count (it may be the answer,
        held by the stream layer above a hole) and goes to the readers. Once they were handed
        `stall_packets` packets (fewer when every reader's protocol says its answer comes
        sooner, `Flow.wait`'s `within`), or `stall_bytes` bytes, the next packet stops the
        inspection instead (`_stop_inspection`). Both paths hand every payload
        packet of an inspected or followed flow here (a frame counter's datagrams excepted: a
        drone link's follower never waits), so both stop a flow at the same packet."""
        waiting = flow.waiting
        if not readers or any(all(w[0] != name for w in waiting) for name in readers):
            flow.stalled = flow.stalled_bytes = 0
            return False
        sender = "orig" if from_orig else "resp"
        if any(w[2] == sender for w in waiting):
            return False
        opts = self.options
        limit = opts.stall_packets
        if limit:
            for w in waiting:
                if w[3] and w[3] < limit:
                    limit = w[3]
        if (limit and flow.stalled >= limit) or (
            opts.stall_bytes and flow.stalled_bytes >= opts.stall_bytes
        ):
            self._stop_inspection(flow)
            return True
        flow.stalled += 1
        flow.stalled_bytes += pkt.payload_len
        return False

    def _stop_inspection(self, flow: Flow) -> None:
        """Stop every analyzer reading the flow, all of them waiting: they see no more of its
        packets (their `flow_end` still comes, and writes what they read), its byte streams are
        let go, and the flow's `inspection` says who waited for what, over how many packets and
        bytes. With no inspector and no follower left, the C walk counts the rest of the flow."""
        waits = "; ".join(f"{name} waited for {what}" for name, what, _, _ in flow.waiting)
        flow.inspection = f"stopped: {waits} ({flow.stalled} packets, {flow.stalled_bytes} bytes)"
        for name in (*flow.inspector_names, *flow.followers):
            flow.decline(name)
        flow.followers, flow.counters, flow.waiting = (), (), ()
        flow.stream = None  # nobody reads its bytes any more: what it held is dropped
        self.inspection_stopped += 1

    def sweep_at(self, ts: float) -> None:
        """Sweep as a packet at time `ts` would (the bulk path, for a packet it counts itself)."""
        if ts > self._now:
            self._now = ts
        if ts >= self._next_sweep:
            self._sweep(ts)

    def count_bulk(self, packets: int, latest_ts: float) -> None:
        """Account packets whose flows the bulk path has updated itself."""
        self.packets += packets
        if latest_ts > self._now:
            self._now = latest_ts

    @property
    def next_sweep(self) -> float:
        """Capture time at or after which the next packet makes the engine look for idle flows."""
        return self._next_sweep

    def _start(
        self, key: FlowKey, pkt: Packet, sport: int, dport: int, foreign: bool = False
    ) -> tuple[FlowKey, Flow]:
        """A new flow for the packet, in the table: its key as the table holds it (made of shared
        objects: the timers keep this one too, not a second tuple per flow), and the flow.
        `foreign`: another process's flow, made here for its facts (`Share.every_port`)."""
        # Who is the originator: the sender of the first packet, unless it comes from a
        # well-known service port to one that is not (Zeek's likely_server_ports); a TCP flow
        # that starts with a SYN keeps its sender.
        proto = pkt.proto
        swap = False
        if proto == IP_PROTO_TCP:
            flags = pkt.tcp_flags
            if not flags & TCP_SYN or flags & TCP_ACK:
                if sport in LIKELY_SERVER_TCP:
                    swap = (
                        not flags & TCP_SYN and sport < dport
                        if dport in LIKELY_SERVER_TCP
                        else True
                    )
        elif proto == IP_PROTO_UDP:
            swap = sport in LIKELY_SERVER_UDP and dport not in LIKELY_SERVER_UDP
            if (
                not swap
                and DNS_PORT in (sport, dport)
                and not pkt.bad_checksum
                and is_dns_response(pkt.payload)
            ):
                # A flow seen from its first answer (both ends on port 53, say): the server
                # sent it, so the receiver is the originator, as Zeek's DNS analyzer turns the
                # flow (a response to a multicast group is left as it came).
                swap = builtin_local_nets().reason(pkt.dst) != "multicast"
            elif (
                not swap
                and sport == NTP_PORT
                and not pkt.bad_checksum
                and is_ntp_server_reply(pkt.payload)
            ):
                # The same for NTP (both ends on port 123): a server-mode message answers a
                # client's, whose sender is the originator, as Zeek's NTP analyzer turns it.
                swap = True
        if swap and pkt.dst == _BROADCAST:
            swap = False  # Zeek never makes the limited broadcast address the originator
        # A flow keeps the addresses, MACs and ports of its packets: one shared object for each
        # value (a phone's address and MAC are in all of its flows), so a flow costs less memory.
        share = self._shared.setdefault
        if len(self._shared) > min(_MAX_SHARED, 2 * len(self.flows) + 1024):
            # Bounded, and by the flows held (a flood of new addresses shares nothing): values
            # seen again are simply shared anew.
            self._shared.clear()
        src, dst = share(pkt.src, pkt.src), share(pkt.dst, pkt.dst)
        src_mac, dst_mac = share(pkt.src_mac, pkt.src_mac), share(pkt.dst_mac, pkt.dst_mac)
        if 0 <= sport < 65536 and 0 <= dport < 65536:
            sport, dport = _PORTS[sport], _PORTS[dport]
        if swap:
            orig_h, orig_p, resp_h, resp_p = dst, dport, src, sport
            orig_mac, resp_mac = dst_mac, src_mac
        else:
            orig_h, orig_p, resp_h, resp_p = src, sport, dst, dport
            orig_mac, resp_mac = src_mac, dst_mac
        key = (key[0], share(key[1], key[1]), _PORTS[key[2]], share(key[3], key[3]), _PORTS[key[4]])
        ts = pkt.ts
        flow = make_record(  # `_FLOW_GIVEN`, then every other field's default: no __init__
            Flow,
            (
                flow_uid(key, ts),  # uid
                proto,
                orig_h,
                orig_p,
                resp_h,
                resp_p,
                ts,  # first_ts
                ts,  # last_ts
                orig_mac,
                resp_mac,
                pkt.vlan,
                pkt.tunnel,
                pkt.iface,
                pkt.frame,  # first_frame
                *_FLOW_DEFAULTS,
            ),
        )
        if proto == IP_PROTO_TCP:
            flow.tcp = tcp.new_state()
        if swap:
            flow.history = "^"
        names = self._wanted(flow)
        split = self.share
        if split is not None and foreign:
            # Made for its facts only (`Share.every_port`): read by the analyzers that publish
            # them, its records written by its owner.
            names = tuple(name for name in names if name in split.readers)
            self.foreign.add(flow.uid)
            self.foreign_flows += 1
        # Flows wanted by the same analyzers share their tuples: memory per flow counts.
        made_for_facts = split is not None and foreign
        shared = self._inspector_sets.get((made_for_facts, names))
        if shared is None:
            shared = self._inspector_sets[made_for_facts, names] = self._readers_of(
                names, made_for_facts
            )
        flow.inspector_names, flow.inspectors, flow.end_hooks = shared
        name = self.ctx.dns.name_for(resp_h)
        if name:
            flow.add_meta("dns_name", name)
        if len(self.flows) >= self.options.max_flows:
            self._evict()  # before the new flow is in: the table never holds more than the cap
        self.flows[key] = flow
        kind = _KIND.get(flow.proto, 2)
        if flow.last_ts < self._oldest[kind]:
            self._oldest[kind] = flow.last_ts
        self.flows_total += 1
        self.current = flow
        if split is not None and foreign:
            for name, hook in self._on_start:
                if name in split.readers:
                    hook(flow, pkt)
        else:
            for _, hook in self._on_start:
                hook(flow, pkt)
        return key, flow

    def _readers_of(self, names: tuple[str, ...], made_for_facts: bool) -> _Readers:
        """The packet hooks of the analyzers named (the ones that want a flow), and the
        `flow_end` hooks the flow calls once any of its packets was inspected: theirs, and those
        every flow needs (`_unread`; of a flow made for its facts, the readers' only), in the
        order the analyzers were registered."""
        hooks = tuple(hook for name, _, hook in self._on_packet if name in names)
        ends = tuple(
            (name, hook)
            for name, hook in self._on_end
            if name in names
            or (name in self._unread and (not made_for_facts or name in self._readers))
        )
        return names, hooks, ends

    def _wanted(self, flow: Flow) -> tuple[str, ...]:
        """The names of the analyzers that want a new flow, in order. A `wants` that declared the
        ports it reads (`WantsHook`) is asked once per protocol and pair of those ports, the
        others for every flow, all unguarded, in one `try` (a flood of new flows asks them for
        each); when one raises, all are asked again through their guards, which count the
        failure as they always do (a `wants` only reads the flow, so asking twice changes
        nothing)."""
        ports = self._wants_ports
        orig_p, resp_p = flow.orig_p, flow.resp_p
        key = (flow.proto, orig_p if orig_p in ports else -1, resp_p if resp_p in ports else -1)
        try:
            bits = self._wants_known.get(key)
            if bits is None:
                bits = 0
                for bit, wants in self._wants_by_port:
                    if wants is None or wants(flow):
                        bits |= bit
                if len(self._wants_known) < _MAX_WANTS_KNOWN:
                    self._wants_known[key] = bits
            for bit, wants in self._wants_each:
                if wants(flow):
                    bits |= bit
        except Exception:
            return tuple(name for name, wants, _ in self._on_packet if wants is None or wants(flow))
        names = self._wants_names.get(bits)
        if names is None:
            names = self._wants_names[bits] = tuple(
                name for i, name in enumerate(self._reader_names) if bits >> i & 1
            )
        return names

    def _tcp(self, key: FlowKey, flow: Flow, pkt: Packet, from_orig: bool) -> None:
        """The connection state (`dronewatch.core.tcp`), and when to look at the flow again."""
        history = flow.history
        seg = (from_orig, pkt.tcp_flags, pkt.tcp_seq, pkt.tcp_ack, pkt.payload_len, pkt.ts)
        if _tcp_segment_c is not None:
            # The same accounting in C (`_fastpath.tcp_segment`), which turns the state's roles
            # round itself where Python would call `_flip`.
            assert flow.tcp is not None
            events, flow.history, flow.last_ts, flipped = _tcp_segment_c(
                flow.tcp, *seg, flow.last_ts, history
            )
            if flipped:
                self._flip(flow, tcp_state=False)
        else:
            events = tcp.segment(flow, *seg, self._flip)
        if flow.history is not history:
            flow.history = sys.intern(flow.history)  # a few hundred histories, shared by all
        if events:
            self.tcp_timers(key, flow, events, pkt.ts)

    def tcp_timers(self, key: FlowKey, flow: Flow, events: int, ts: float) -> None:
        """Set the flow's timer for what a segment at `ts` did (`tcp.EV_*`): end a closed
        connection `close_linger_s` after its last packet, look at a half-closed one again,
        end an attempt nobody answers. The C walk calls this for the segments it accounts."""
        if events & tcp.EV_CLOSED:
            self._timers[key] = flow.last_ts
            self._timer_kinds[key] = _CLOSE
            self._mirror_due(key, flow)
        elif events & tcp.EV_HALF_CLOSED and key not in self._timer_kinds:  # none, or an attempt
            self._timers[key] = flow.last_ts
            self._timer_kinds[key] = _EXPIRE
            self._mirror_due(key, flow)
        if events & tcp.EV_ATTEMPT and key not in self._timers:
            self._timers[key] = ts

    def _mirror_due(self, key: FlowKey, flow: Flow) -> None:
        """Write when the flow's close or expire timer is due into its TCP state (`tcp.DUE`),
        where the C walk reads it."""
        if flow.tcp is not None:
            tcp.set_due(flow.tcp, self._due_at(key))

    def _flip(self, flow: Flow, *, tcp_state: bool = True) -> None:
        """Swap a flow's roles (Zeek flips a connection it finds began with the responder);
        `tcp_state`: its TCP state's too (False: the C state machine swapped them)."""
        flow.orig_h, flow.resp_h = flow.resp_h, flow.orig_h
        flow.orig_p, flow.resp_p = flow.resp_p, flow.orig_p
        flow.orig_mac, flow.resp_mac = flow.resp_mac, flow.orig_mac
        flow.orig_pkts, flow.resp_pkts = flow.resp_pkts, flow.orig_pkts
        flow.orig_bytes, flow.resp_bytes = flow.resp_bytes, flow.orig_bytes
        flow.orig_payload_bytes, flow.resp_payload_bytes = (
            flow.resp_payload_bytes,
            flow.orig_payload_bytes,
        )
        flow.orig_bad_checksums, flow.resp_bad_checksums = (
            flow.resp_bad_checksums,
            flow.orig_bad_checksums,
        )
        if flow.tcp is not None and tcp_state:
            tcp.swap_roles(flow.tcp)
        if flow.stream is not None:
            flow.stream.flip()

    def _due_at(self, key: FlowKey) -> float:
        """When the flow's timer is due: `close_linger_s` after the close or the attempt,
        `session_s` after the last look at a half-closed flow."""
        opts = self.options
        if self._timer_kinds.get(key) == _EXPIRE:
            return self._timers[key] + opts.session_s
        return self._timers[key] + opts.close_linger_s

    def _due(self, key: FlowKey, flow: Flow, now: float) -> bool:
        """Act on the flow's timer if it is due at `now`; True when the flow ended."""
        due = self._due_at(key)
        if now < due:
            return False
        t = flow.tcp
        kind = self._timer_kinds.pop(key, _ATTEMPT)
        if kind == _CLOSE:
            self._end(key, flow, "tcp_close")
            return True
        del self._timers[key]
        if t is None:
            return False
        if kind == _ATTEMPT:
            if tcp.attempt_open(t):
                self._end(key, flow, "tcp_attempt")
                return True
            return False
        if flow.last_ts + self.options.close_linger_s < now and tcp.expired(t):
            self._end(key, flow, "tcp_close")
            return True
        self._timers[key] = due  # looked at again `session_s` after this look
        self._timer_kinds[key] = _EXPIRE
        self._mirror_due(key, flow)
        return False

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.options.sweep_every_s
        timers = self._timers
        due = []
        for key in list(timers):  # the keys only: no (key, value) tuple per timer
            if now >= self._due_at(key):
                flow = self.flows.get(key)
                if flow is not None:
                    due.append((flow.first_frame, key, flow))
                else:
                    del timers[key]
                    self._timer_kinds.pop(key, None)
        if due:
            # In the order the flows were made (the table's), as the idle flows below: the
            # order `dronewatch.core.split` merges the records of several processes in.
            self.phase = _PHASE_TIMERS
            due.sort(key=_FIRST)
            for _, key, flow in due:
                if key in timers:
                    self._due(key, flow, now)
            self.phase = _PHASE_PACKET
        # No flow has been idle long enough while the oldest last packet of each protocol is
        # recent: skip the scan. The bounds only fall behind the truth (last_ts only grows).
        opts = self.options
        if (
            now - self._oldest[0] <= opts.tcp_idle_s
            and now - self._oldest[1] <= opts.udp_idle_s
            and now - self._oldest[2] <= opts.other_idle_s
        ):
            return
        expired = []
        oldest = [float("inf")] * 3
        for key, flow in self.flows.items():
            kind = _KIND.get(flow.proto, 2)
            last = flow.last_ts
            if now - last > (opts.tcp_idle_s, opts.udp_idle_s, opts.other_idle_s)[kind]:
                expired.append((key, flow))
            elif last < oldest[kind]:
                oldest[kind] = last
        self._oldest = oldest
        self.phase = _PHASE_IDLE
        for key, flow in expired:
            self._end(key, flow, "idle")
        self.phase = _PHASE_PACKET

    def _evict(self) -> None:
        """End about 1% of the table, the longest idle first, to make room (a flood of new
        flows, such as a SYN scan, must not grow memory without limit).

        The flows idle since before a cut-off time go, then as many idle since exactly that time
        as are still needed, in table order. The cut-off is the last-packet time below which 1%
        of a sample of the table lies: every flow of a table up to `_EVICT_SAMPLE` flows (then
        the choice is exactly the longest idle), else every k-th in table order, so a full table
        costs two walks at C speed, never a sort of the table."""
        flows = self.flows
        n = len(flows)
        if not n:
            return
        count = max(1, n // 100)
        step = max(1, n // _EVICT_SAMPLE)
        sampled = -(-n // step)
        sample = map(_LAST_TS, islice(flows.values(), 0, None, step))
        cutoff = heapq.nsmallest(-(-count * sampled // n), sample)[-1]
        older = list(
            islice(
                compress(flows.items(), map(lt, map(_LAST_TS, flows.values()), repeat(cutoff))),
                count,
            )
        )
        if len(older) < count:
            older += islice(
                compress(flows.items(), map(eq, map(_LAST_TS, flows.values()), repeat(cutoff))),
                count - len(older),
            )
        older.sort(key=lambda kv: kv[1].last_ts)  # stable: table order among equals
        if not self.evicted_flows:
            logger.warning(
                "flow table full (%d flows, EngineOptions.max_flows): ending the longest idle "
                "flows, about 1%% at a time (counted in the capture record's evicted_flows)",
                n,
            )
        logger.debug("flow table full (%d flows): ending %d idle flows", n, len(older))
        self.evicted_flows += len(older)
        for key, flow in older:
            self._end(key, flow, "evicted")

    def _end(self, key: FlowKey, flow: Flow, reason: str) -> None:
        self.flows.pop(key, None)
        self._timers.pop(key, None)
        self._timer_kinds.pop(key, None)
        self.flows_ended += 1
        flow.end_reason = reason
        # The flow is ending from here on: records its stream's last bytes make are its own
        # (`record_flow`) and fall where its end does (`position`), as its end hooks' records.
        self.ending = flow
        if flow.stream is not None:
            self.streams.end(flow)
        t = flow.tcp
        if t is not None:
            flow.orig_payload_bytes = tcp.size(t, 0)
            flow.resp_payload_bytes = tcp.size(t, tcp.BLOCK)
        read = flow.inspected > 0
        if self.foreign and flow.uid in self.foreign:
            self._end_hooks(flow, flow.end_hooks if read else self._on_end_foreign_unread)
            self.foreign.discard(flow.uid)
            self.not_owned += (
                flow.orig_pkts + flow.resp_pkts + flow.orig_bad_checksums + flow.resp_bad_checksums
            )
        else:
            self._end_hooks(flow, flow.end_hooks if read else self._on_end_unread)
        self.ending = None

    def _end_hooks(
        self, flow: Flow, on_end: tuple[tuple[str, Callable[[Flow], None]], ...]
    ) -> None:
        """Call every analyzer's `flow_end`, in order, guarded as `AnalyzerFailures` guards every
        hook: one that raises is counted (and in strict mode the exception goes on) and the next
        one is called. One `try` for all, not a wrapper per hook: the iterator goes on past the
        hook that raised."""
        hooks = iter(on_end)
        name = ""
        while True:
            try:
                for name, hook in hooks:  # noqa: B007 - the except reads `name`
                    hook(flow)
                return
            except Exception:
                if self.failures.failed(name, "flow_end", f"on flow {flow.uid}"):
                    raise

    def tick(self, now: float) -> None:
        """Expire idle flows as of time `now`: a live source calls this while no packet comes,
        so flows still end (and are reported) during silence."""
        if now > self._now:
            self._now = now
        if now >= self._next_sweep:
            self._sweep(now)

    def finish(self) -> None:
        """End every open flow (end of capture) and tell the analyzers."""
        self.frame, self.phase = _FRAME_END, _PHASE_TIMERS
        self.current = None
        flows = self.flows
        for key in list(flows):  # the keys only: no (key, flow) tuple per flow
            flow = flows[key]
            kind = self._timer_kinds.get(key)
            closed = kind == _CLOSE or (
                kind == _EXPIRE and flow.tcp is not None and tcp.expired(flow.tcp)
            )
            self._end(key, flow, "tcp_close" if closed else "eof")
        self.phase = _PHASE_IDLE
        for hook in self._on_done:
            hook()
        self.phase = _PHASE_PACKET

    def record_flow(self) -> Flow | None:
        """The flow a record made now is of: the one ending, else the one whose packet is
        handled (None for a frame that is not IP, a sweep's own work, the end of the source)."""
        if self.ending is not None:
            return self.ending
        return self.current if self.phase == _PHASE_PACKET else None

    def position(self) -> tuple[int, int, int]:
        """Where a record made now falls in the capture, as one process analysing all of it
        makes records: by frame; at a frame, a sweep's flows (timers, then idle flows, each in
        the order the flows were made) before the packet's own records. The same for every
        process of a shared capture (`dronewatch.core.split`), which merges by it."""
        ending = self.ending
        phase = self.phase
        if phase == _PHASE_PACKET or ending is None:
            return (self.frame, phase, 0)
        return (self.frame, phase, ending.first_frame)


_PHASE_TIMERS, _PHASE_IDLE, _PHASE_PACKET = 0, 1, 2
"""What the engine does at a frame, in order (`Engine.position`): a sweep's due TCP timers, its
idle flows, then the packet itself. At the end of the capture (frame `_FRAME_END`): every flow,
then the analyzers' `done`."""
_FRAME_END = sys.maxsize
_FIRST = itemgetter(0)


@dataclass(frozen=True, slots=True)
class Share:
    """This engine is process `index` of `processes` analysing one capture
    (`dronewatch.core.split`): it makes only the flows whose key `owner` gives it, and only
    process 0 hands frames that are not IP to the analyzers. The TCP and UDP flows with port
    `every_port` at one end are made by every process, read by the `readers` (their facts name
    other flows: DNS answers), and written by their owner only (`Engine.foreign`)."""

    index: int
    processes: int
    every_port: int | None = None
    readers: frozenset[str] = frozenset()
    """The analyzers that read another process's flows made here for their facts (the DNS
    analyzer, which feeds the name cache; Neighbor Discovery's, which feeds the on-link table):
    the other analyzers never see them."""
    every_icmp6: frozenset[int] = frozenset()
    """ICMPv6 types whose messages every process reads for their facts, as the datagrams on
    `every_port` (Neighbor Discovery's: what is on the link)."""

    def making(self, key: FlowKey) -> int:
        """Whether this process makes the flow of `key`: `_MINE`, `_FOR_FACTS` (another's flow
        on `every_port`, or of an `every_icmp6` type) or `_NOT_MINE`."""
        if owner(key, self.processes) == self.index:
            return _MINE
        port = self.every_port
        if port is not None and key[0] in (IP_PROTO_TCP, IP_PROTO_UDP) and port in (key[2], key[4]):
            return _FOR_FACTS
        types = self.every_icmp6
        if types and key[0] == IP_PROTO_ICMP6 and (key[2] in types or key[4] in types):
            return _FOR_FACTS
        return _NOT_MINE

    @property
    def icmp6_mask(self) -> int:
        """`every_icmp6` as the C walk takes it: bit t - 128 for each type t (128-191)."""
        return sum(1 << (t - 128) for t in self.every_icmp6 if 128 <= t < 192)


_MINE, _FOR_FACTS, _NOT_MINE = 0, 1, 2


def _needs_flows(analyzers: Iterable[Analyzer], name: str) -> bool:
    """Whether the analyzer `name` asks for the flows of its facts to be made (`FactsHook`)."""
    return any(a.name == name and getattr(a, "facts_need_flows", False) is True for a in analyzers)


def owner(key: FlowKey, processes: int) -> int:
    """Which of `processes` analysing one capture makes the flow of `key` (`Engine.share`):
    the CRC-32 of the key as the C walk holds it (version, protocol, lower end, higher end, each
    a 16-byte address and a port), modulo `processes`; the C walk computes the same."""
    proto, a, ap, b, bp = key
    row = _KEY_HEAD[len(a) == 4][proto] + a.ljust(16, b"\0") + _port2(ap) + b.ljust(16, b"\0")
    return crc32(row + _port2(bp)) % processes


_KEY_HEAD = (tuple(bytes((6, p)) for p in range(256)), tuple(bytes((4, p)) for p in range(256)))
_port2 = struct.Struct(">H").pack
"""A port as the key row holds it (two bytes, big-endian)."""

_MAX_WANTS_KNOWN = 4096
"""Protocol and port pairs whose wanting analyzers the engine remembers (`Engine._wanted`): a
few per declared port, so the bound is reached only by odd protocols."""

_FLOW_GIVEN = (
    "uid", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "first_ts", "last_ts", "orig_mac",
    "resp_mac", "vlan", "tunnel", "iface", "first_frame",
)  # fmt: skip
"""The fields of a `Flow` `Engine._start` gives, its first ones, in order."""


def _flow_defaults() -> tuple[object, ...]:
    """The value of every other field of a new `Flow`, in order: its default, shared by every
    flow (no field holds a mutable container of its own from the start: `meta`'s factory gives
    the one shared empty mapping). ImportError when `Flow` no longer starts with `_FLOW_GIVEN`
    or a factory makes a new object per flow."""
    fields = dataclasses.fields(Flow)
    if tuple(f.name for f in fields[: len(_FLOW_GIVEN)]) != _FLOW_GIVEN:
        raise ImportError(f"Flow's first fields are no longer {_FLOW_GIVEN}: change Engine._start")
    values: list[object] = []
    for f in fields[len(_FLOW_GIVEN) :]:
        if f.default is not dataclasses.MISSING:
            values.append(f.default)
        elif f.default_factory is not dataclasses.MISSING and (
            f.default_factory() is f.default_factory()
        ):
            values.append(f.default_factory())
        else:
            raise ImportError(f"Flow.{f.name} has no default every flow may share: see _start")
    return tuple(values)


_FLOW_DEFAULTS = _flow_defaults()

_PORTS = tuple(range(65536))
"""One int object per port number, shared by every flow's key and fields."""
_MAX_SHARED = 200_000
"""Most distinct addresses and MACs kept for sharing before the table starts anew (fewer while
fewer flows are held: two per flow)."""
_EVICT_SAMPLE = 4096
"""Flows whose last packet times choose the cut-off of an eviction (`Engine._evict`)."""
_LAST_TS = attrgetter("last_ts")

_KIND = {IP_PROTO_TCP: 0, 17: 1}
"""Index of a protocol's idle bound: TCP, UDP, then every other protocol."""

_CLOSE, _ATTEMPT, _EXPIRE = 0, 1, 2
"""Kinds of TCP timer: end a closed flow, end an attempt nobody answered, look at a half-closed
flow again."""

_BROADCAST = b"\xff\xff\xff\xff"
LIKELY_SERVER_TCP = frozenset(
    (21, 22, 25, 53, 79, 80, 81, 88, 135, 139, 143, 389, 443, 445, 465, 502, 514, 563, 585)
    + (587, 614, 631, 636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306)
    + (3389, 5222, 5223, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000)
)
"""TCP ports Zeek's analyzers register as servers' (its default `likely_server_ports`): a flow
that starts without a SYN from one of them to a port that is not one is turned round."""
NTP_PORT = 123


def is_ntp_server_reply(payload: bytes) -> bool:
    """Whether a datagram is an NTP server's reply: a whole 48-byte header of version 1 to 4 in
    mode 4, server (RFC 5905 7.3); the engine's originator rule reads it (`Engine._start`)."""
    return len(payload) >= 48 and payload[0] & 0x07 == 4 and 1 <= payload[0] >> 3 & 0x07 <= 4


LIKELY_SERVER_UDP = frozenset(
    (53, 67, 88, 123, 137, 161, 162, 389, 443, 514, 1812, 2123, 2152, 3389, 3544, 4011, 4754)
    + (4789, 5060, 5072, 5353, 5355, 6081, 20000)
)
"""UDP ports of Zeek's `likely_server_ports`: a datagram from one to a port that is not one
makes its receiver the originator (a DHCP server that speaks first stays the responder)."""


def flow_uid(key: FlowKey, first_ts: float) -> str:
    """A Zeek-like flow id, stable for the same capture: derived from the key and first time.

    "C" and the first 17 characters of the base32 text (RFC 4648) of the SHA-1 of the key and
    the time (`flow_uid_py`; where the C extension is used, its `flow_uid` makes the same text:
    a flood of new flows makes a uid per packet)."""
    proto, a, ap, b, bp = key
    return _flow_uid(proto, a, ap, b, bp, first_ts)


def flow_uid_py(proto: int, a: bytes, ap: int, b: bytes, bp: int, first_ts: float) -> str:
    """`flow_uid` in Python: the digest's first 85 bits, 5 to a character, read 10 at a time
    (`base64.b32encode` is written in Python)."""
    digest = _sha1(_PACK_PORTS(proto, ap, bp) + a + b + _PACK_TS(first_ts)).digest()
    n = int.from_bytes(digest[:11], "big") >> 3
    two = _B32_PAIRS
    return "".join(
        (
            "C",
            two[n >> 75],
            two[n >> 65 & 1023],
            two[n >> 55 & 1023],
            two[n >> 45 & 1023],
            two[n >> 35 & 1023],
            two[n >> 25 & 1023],
            two[n >> 15 & 1023],
            two[n >> 5 & 1023],
            _B32[n & 31],
        )
    )


_sha1 = hashlib.sha1
_PACK_PORTS = struct.Struct("!BHH").pack
_PACK_TS = struct.Struct("!d").pack
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
"""The base32 alphabet (RFC 4648), by 5-bit value."""
_B32_PAIRS = tuple(hi + lo for hi in _B32 for lo in _B32)
"""Two base32 characters by their 10-bit value."""
_flow_uid = flow_uid_py if (_c := native()) is None else _c.flow_uid
_tcp_segment_c = None if _c is None else _c.tcp_segment
"""`tcp.segment` in C where the extension is built (`_tcp.c`, held to it by the tests)."""


def conn_state(flow: Flow) -> str:
    """Zeek's connection state: from the endpoints' states for TCP (`tcp.conn_state`); for UDP
    SF (both sent), S0 (the originator only), SHR (the responder only); OTH otherwise."""
    if flow.proto == IP_PROTO_TCP:
        return tcp.conn_state(flow)
    if flow.proto == IP_PROTO_UDP:
        if flow.orig_pkts:
            return "SF" if flow.resp_pkts else "S0"
        return "SHR" if flow.resp_pkts else "OTH"
    return "OTH"


def _register(analyzers: list[Analyzer]) -> list[AnalyzerHooks]:
    """The hooks of every analyzer, in order (`find_hooks` checks each); ValueError for an
    analyzer it refuses or for two analyzers of one name (followers are found by name)."""
    registered: list[AnalyzerHooks] = []
    names: set[str] = set()
    for analyzer in analyzers:
        hooks = find_hooks(analyzer)
        if hooks.name in names:
            raise ValueError(f"two analyzers named {hooks.name!r}")
        names.add(hooks.name)
        registered.append(hooks)
    return registered


class AnalyzerFailures:
    """Counts the exceptions the analyzers' hooks raise, by `analyzer.hook`, so a run can say
    that its inspection was incomplete (the capture record's `analyzer_errors`).

    An analyzer's bug never stops the run: the first failure of each analyzer is logged with its
    traceback and where it happened (the flow uid), later ones are only counted. In strict mode
    (`DRONEWATCH_STRICT_ANALYZERS`, set by the test suite) the exception is counted and raised
    again. The wrappers below are what the engine calls on every packet, so a call that does not
    fail costs one `try`."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self._logged: set[str] = set()

    def as_record(self) -> dict[str, int] | None:
        """The counts by `analyzer.hook`, sorted; None when nothing failed."""
        return dict(sorted(self.counts.items())) or None

    def failed(self, analyzer: str, hook: str, where: str) -> bool:
        """Count a failure (call it while handling the exception); True in strict mode, where
        the caller raises the exception again."""
        self.counts[f"{analyzer}.{hook}"] += 1
        if self.strict:
            return True
        if analyzer not in self._logged:
            self._logged.add(analyzer)
            logger.exception(
                "analyzer %s failed in %s %s; continuing (its later failures are only counted, "
                "in the capture record's analyzer_errors)",
                analyzer,
                hook,
                where,
            )
        return False

    def flow_start(
        self, analyzer: str, fn: Callable[[Flow, Packet], None]
    ) -> Callable[[Flow, Packet], None]:
        """`fn`, with its failures counted."""

        def flow_start(flow: Flow, pkt: Packet) -> None:
            try:
                fn(flow, pkt)
            except Exception:
                if self.failed(analyzer, "flow_start", f"on flow {flow.uid}"):
                    raise

        return flow_start

    def wants(self, analyzer: str, fn: Callable[[Flow], bool]) -> Callable[[Flow], bool]:
        """`fn`, with its failures counted; a failing check wants the flow (it hides nothing)."""

        def wants(flow: Flow) -> bool:
            try:
                return bool(fn(flow))
            except Exception:
                if self.failed(analyzer, "wants", f"on flow {flow.uid} (it sees the flow)"):
                    raise
                return True

        return wants

    def packet(
        self, analyzer: str, fn: Callable[[Flow, Packet], None]
    ) -> Callable[[Flow, Packet], None]:
        """`fn`, with its failures counted."""

        def packet(flow: Flow, pkt: Packet) -> None:
            try:
                fn(flow, pkt)
            except Exception:
                if self.failed(analyzer, "packet", f"on flow {flow.uid}, frame {pkt.frame}"):
                    raise

        return packet

    def facts(self, analyzer: str, fn: Callable[[Packet], None]) -> Callable[[Packet], None]:
        """`fn`, with its failures counted."""
        return self._of_packet(analyzer, "facts", fn)

    def frame(self, analyzer: str, fn: Callable[[Packet], None]) -> Callable[[Packet], None]:
        """`fn`, with its failures counted."""
        return self._of_packet(analyzer, "frame", fn)

    def _of_packet(
        self, analyzer: str, hook: str, fn: Callable[[Packet], None]
    ) -> Callable[[Packet], None]:
        """A hook called with a packet and no flow, with its failures counted under `hook`."""

        def guarded(pkt: Packet) -> None:
            try:
                fn(pkt)
            except Exception:
                if self.failed(analyzer, hook, f"on frame {pkt.frame}"):
                    raise

        return guarded

    def done(self, analyzer: str, fn: Callable[[], None]) -> Callable[[], None]:
        """`fn`, with its failures counted."""

        def done() -> None:
            try:
                fn()
            except Exception:
                if self.failed(analyzer, "done", "at the end of the source"):
                    raise

        return done
