"""The flow table: assigns packets to bidirectional flows, expires them, and dispatches hooks."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import struct
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dronewatch.core.flow import (
    IP_PROTO_TCP,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    Flow,
    Packet,
)
from dronewatch.core.hooks import Analyzer, AnalyzerHooks, Context, find_hooks

logger = logging.getLogger(__name__)

FlowKey = tuple[int, bytes, int, bytes, int]

STRICT_ANALYZERS_ENV = "DRONEWATCH_STRICT_ANALYZERS"
"""When set (non-empty), an exception in an analyzer's hook is raised again instead of counted:
the test suite sets it, so an analyzer that raises fails every test that reaches it."""


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
    """A TCP flow closed by FIN/RST ends this long after, to keep its final ACKs."""
    inspect_packets: int = 32
    """Payload packets per flow handed to every analyzer; after them only the analyzers that
    follow the flow (`Flow.follow`) see its packets, and the rest only update counters."""
    sweep_every_s: float = 5.0
    """How often (in network time) idle flows are looked for."""
    max_flows: int = 2_000_000
    """Most flows kept at once; the longest idle are ended first beyond it."""


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
    ) -> None:
        self.options = options or EngineOptions()
        self.ctx = ctx
        self.analyzers = list(analyzers)
        self.flows: dict[FlowKey, Flow] = {}
        self._closing: dict[FlowKey, float] = {}
        self._next_sweep = 0.0
        self._oldest = [float("inf")] * 3
        """A lower bound of the last packet time of the TCP, UDP and other flows."""
        self._now = 0.0
        self.flows_total = 0
        self.flows_ended = 0
        """Flows ended so far (on a change, the bulk path's C walk drops its flow references)."""
        self.packets = 0
        self.first_ts: float | None = None
        self._shared: dict[bytes, bytes] = {}
        """One object per address or MAC value seen, for the flows to share."""
        self._inspector_sets: dict[
            tuple[str, ...], tuple[tuple[str, ...], tuple[Callable[[Flow, Packet], None], ...]]
        ] = {}
        """The (names, hooks) tuples of each set of analyzers that want a flow, shared."""
        self.failures = AnalyzerFailures(strict=bool(os.environ.get(STRICT_ANALYZERS_ENV)))
        """Exceptions raised by the analyzers' hooks, counted (see `AnalyzerFailures`)."""
        registered = _register(self.analyzers)
        guard = self.failures
        self._on_start: list[Callable[[Flow, Packet], None]] = [
            guard.flow_start(h.name, h.flow_start) for h in registered if h.flow_start is not None
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
        self._on_end: list[Callable[[Flow], None]] = [
            guard.flow_end(h.name, h.flow_end) for h in registered if h.flow_end is not None
        ]
        self._on_frame: list[Callable[[Packet], None]] = [
            guard.frame(h.name, h.frame) for h in registered if h.frame is not None
        ]
        self._on_done: list[Callable[[], None]] = [
            guard.done(h.name, h.done) for h in registered if h.done is not None
        ]

    @property
    def now(self) -> float:
        """Network time of the latest packet."""
        return self._now

    def process(self, pkt: Packet) -> None:
        """Account one decoded packet."""
        self.packets += 1
        ts = pkt.ts
        if self.first_ts is None:
            self.first_ts = ts
        if ts > self._now:
            self._now = ts
        if ts >= self._next_sweep:
            self._sweep(ts)
        if pkt.ip_version == 0:
            for on_frame in self._on_frame:
                on_frame(pkt)
            return
        src, dst, sport, dport = pkt.src, pkt.dst, pkt.sport, pkt.dport
        if (src, sport) <= (dst, dport):
            key: FlowKey = (pkt.proto, src, sport, dst, dport)
        else:
            key = (pkt.proto, dst, dport, src, sport)
        flow = self.flows.get(key)
        if flow is not None and ts - flow.first_ts > self.options.active_s:
            self._end(key, flow, "active")
            flow = None
        if flow is None:
            flow = self._start(key, pkt)
        from_orig = src == flow.orig_h and sport == flow.orig_p
        if ts > flow.last_ts:
            flow.last_ts = ts
        if from_orig:
            flow.orig_pkts += 1
            flow.orig_bytes += pkt.ip_len
            flow.orig_payload_bytes += pkt.payload_len
        else:
            flow.resp_pkts += 1
            flow.resp_bytes += pkt.ip_len
            flow.resp_payload_bytes += pkt.payload_len
        if pkt.proto == IP_PROTO_TCP:
            self._tcp(key, flow, pkt, from_orig)
        if pkt.payload:
            if flow.inspected < self.options.inspect_packets:
                flow.inspected += 1
                for hook in flow.inspectors:
                    hook(flow, pkt)
            elif flow.followers:
                self.to_followers(flow, pkt)

    def to_followers(self, flow: Flow, pkt: Packet) -> None:
        """Hand a packet past a flow's inspected ones to the analyzers that follow the flow."""
        for name in flow.followers:
            self._followers[name](flow, pkt)

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

    def _start(self, key: FlowKey, pkt: Packet) -> Flow:
        swap = False
        if pkt.proto == IP_PROTO_TCP:
            flags = pkt.tcp_flags
            if flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK):
                swap = True
            elif not flags & TCP_SYN and pkt.sport < 1024 <= pkt.dport:
                swap = True  # a capture that starts mid-connection: the low port serves
        elif pkt.sport < 1024 <= pkt.dport and pkt.sport not in (67, 68, 123, 137, 138):
            swap = True
        # A flow keeps the addresses, MACs and ports of its packets: one shared object for each
        # value (a phone's address and MAC are in all of its flows), so a flow costs less memory.
        share = self._shared.setdefault
        if len(self._shared) > _MAX_SHARED:
            self._shared.clear()  # bounded; values seen again are simply shared anew
        src, dst = share(pkt.src, pkt.src), share(pkt.dst, pkt.dst)
        src_mac, dst_mac = share(pkt.src_mac, pkt.src_mac), share(pkt.dst_mac, pkt.dst_mac)
        sport, dport = pkt.sport, pkt.dport
        if 0 <= sport < 65536 and 0 <= dport < 65536:
            sport, dport = _PORTS[sport], _PORTS[dport]
        if swap:
            orig_h, orig_p, resp_h, resp_p = dst, dport, src, sport
            orig_mac, resp_mac = dst_mac, src_mac
        else:
            orig_h, orig_p, resp_h, resp_p = src, sport, dst, dport
            orig_mac, resp_mac = src_mac, dst_mac
        if (src, sport) <= (dst, dport):
            key = (key[0], src, sport, dst, dport)
        else:
            key = (key[0], dst, dport, src, sport)
        flow = Flow(
            uid=flow_uid(key, pkt.ts),
            proto=pkt.proto,
            orig_h=orig_h,
            orig_p=orig_p,
            resp_h=resp_h,
            resp_p=resp_p,
            first_ts=pkt.ts,
            last_ts=pkt.ts,
            orig_mac=orig_mac,
            resp_mac=resp_mac,
            vlan=pkt.vlan,
            iface=pkt.iface,
        )
        names = tuple(name for name, wants, _ in self._on_packet if wants is None or wants(flow))
        # Flows wanted by the same analyzers share one pair of tuples: memory per flow counts.
        shared = self._inspector_sets.get(names)
        if shared is None:
            hooks = tuple(hook for name, _, hook in self._on_packet if name in names)
            shared = self._inspector_sets[names] = (names, hooks)
        flow.inspector_names, flow.inspectors = shared
        name = self.ctx.dns.name_for(resp_h)
        if name:
            flow.meta["dns_name"] = name
        self.flows[key] = flow
        kind = _KIND.get(flow.proto, 2)
        if flow.last_ts < self._oldest[kind]:
            self._oldest[kind] = flow.last_ts
        self.flows_total += 1
        if len(self.flows) > self.options.max_flows:
            self._evict()
        for hook in self._on_start:
            hook(flow, pkt)
        return flow

    def _tcp(self, key: FlowKey, flow: Flow, pkt: Packet, from_orig: bool) -> None:
        flags = pkt.tcp_flags
        hist = flow.history
        if flags & TCP_SYN:
            letter = (
                ("S" if from_orig else "s") if not flags & TCP_ACK else ("H" if from_orig else "h")
            )
        elif flags & TCP_RST:
            letter = "R" if from_orig else "r"
        elif flags & TCP_FIN:
            letter = "F" if from_orig else "f"
        elif pkt.payload_len:
            letter = "D" if from_orig else "d"
        elif flags & TCP_ACK:
            letter = "A" if from_orig else "a"
        else:
            letter = ""
        if letter and letter not in hist:
            flow.history = sys.intern(hist + letter)  # a few dozen histories, shared by all
        if flags & TCP_RST or (flags & TCP_FIN and ("F" in flow.history and "f" in flow.history)):
            self._closing.setdefault(key, pkt.ts)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.options.sweep_every_s
        linger = self.options.close_linger_s
        for key, closed_at in list(self._closing.items()):
            if now - closed_at >= linger:
                flow = self.flows.get(key)
                if flow is not None:
                    self._end(key, flow, "tcp_close")
                else:
                    del self._closing[key]
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
        for key, flow in expired:
            self._end(key, flow, "idle")

    def _evict(self) -> None:
        count = max(1, len(self.flows) // 100)
        oldest = sorted(self.flows.items(), key=lambda kv: kv[1].last_ts)[:count]
        logger.warning("flow table full (%d flows): ending %d idle flows", len(self.flows), count)
        for key, flow in oldest:
            self._end(key, flow, "evicted")

    def _end(self, key: FlowKey, flow: Flow, reason: str) -> None:
        self.flows.pop(key, None)
        self._closing.pop(key, None)
        self.flows_ended += 1
        flow.end_reason = reason
        for hook in self._on_end:
            hook(flow)

    def tick(self, now: float) -> None:
        """Expire idle flows as of time `now`: a live source calls this while no packet comes,
        so flows still end (and are reported) during silence."""
        if now > self._now:
            self._now = now
        if now >= self._next_sweep:
            self._sweep(now)

    def finish(self) -> None:
        """End every open flow (end of capture) and tell the analyzers."""
        for key, flow in list(self.flows.items()):
            reason = "tcp_close" if key in self._closing else "eof"
            self._end(key, flow, reason)
        for hook in self._on_done:
            hook()


_PORTS = tuple(range(65536))
"""One int object per port number, shared by every flow's key and fields."""
_MAX_SHARED = 200_000
"""Most distinct addresses and MACs kept for sharing before the table starts anew."""

_KIND = {IP_PROTO_TCP: 0, 17: 1}
"""Index of a protocol's idle bound: TCP, UDP, then every other protocol."""


def flow_uid(key: FlowKey, first_ts: float) -> str:
    """A Zeek-like flow id, stable for the same capture: derived from the key and first time."""
    proto, a, ap, b, bp = key
    digest = hashlib.sha1(
        struct.pack("!BHH", proto, ap, bp) + a + b + struct.pack("!d", first_ts)
    ).digest()
    return "C" + base64.b32encode(digest).decode("ascii")[:17]


def conn_state(flow: Flow) -> str:
    """Zeek-style connection state from the TCP history (OTH for UDP and other protocols)."""
    if flow.proto != IP_PROTO_TCP:
        return "OTH" if flow.resp_pkts else "S0"
    h = flow.history
    if "S" in h and "h" not in h:
        if "r" in h:
            return "REJ"
        if "R" in h:
            return "RSTOS0"
        return "S0"
    if "S" in h and "h" in h:
        if "R" in h:
            return "RSTO"
        if "r" in h:
            return "RSTR"
        if "F" in h and "f" in h:
            return "SF"
        if "F" in h:
            return "S2"
        if "f" in h:
            return "S3"
        return "S1"
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

    def flow_end(self, analyzer: str, fn: Callable[[Flow], None]) -> Callable[[Flow], None]:
        """`fn`, with its failures counted."""

        def flow_end(flow: Flow) -> None:
            try:
                fn(flow)
            except Exception:
                if self.failed(analyzer, "flow_end", f"on flow {flow.uid}"):
                    raise

        return flow_end

    def frame(self, analyzer: str, fn: Callable[[Packet], None]) -> Callable[[Packet], None]:
        """`fn`, with its failures counted."""

        def frame(pkt: Packet) -> None:
            try:
                fn(pkt)
            except Exception:
                if self.failed(analyzer, "frame", f"on frame {pkt.frame}"):
                    raise

        return frame

    def done(self, analyzer: str, fn: Callable[[], None]) -> Callable[[], None]:
        """`fn`, with its failures counted."""

        def done() -> None:
            try:
                fn()
            except Exception:
                if self.failed(analyzer, "done", "at the end of the source"):
                    raise

        return done
