"""The bulk path: pcap records a batch at a time, giving the per-packet path's records.

Most packets of a long flow only add to its counters: after the first `inspect_packets` payload
packets, no analyzer looks at them unless it follows the flow. This path reads the link, IP and
transport headers of a whole batch, finds each packet's flow, and adds the packets of settled
flows to their counters. Every other packet (a flow's first packets, followed flows, TCP
SYN/FIN/RST, fragments, IPv6 extension headers, VLAN tags, non-IP frames, and anything too short)
goes through the per-packet decoder and `Engine.process` in capture order.

Flows are only touched between two sweeps of the flow table (the engine's idle check every
`sweep_every_s` of capture time), so a batch is cut into segments at the packets that trigger a
sweep; within a segment a settled flow can only gain packets and bytes, which commute.

Where the C extension (`dronewatch.fastpath._fastpath`) is built, its `walk` goes over the
rows in C: it keeps the counts of settled flows itself and writes them to the flows before any
Python code runs (a handed-over packet, a follower, a sweep), so Python always sees exact
counters. It also takes the empty TCP segments of a known flow that only add a history letter
(SYN-ACK, the first ACK each way, the first FIN), writing the letter as `Engine._tcp` does; a
reset and the FIN that closes a flow still go to the engine, which notes the close. A drone link
whose followers all keep their state in C frame counters (`Flow.counters`) has its datagrams fed
to them there, without a call into Python. Without the extension (no compiler at install time,
or `DRONEWATCH_NO_C` set) this path is not taken: `dronewatch.core.pipeline` reads every packet
one by one instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dronewatch.capture.decode import LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW
from dronewatch.capture.pcapbatch import PcapBatch
from dronewatch.core.engine import FlowKey
from dronewatch.core.flow import (
    IP_PROTO_UDP,
    Flow,
    Packet,
)
from dronewatch.fastpath import native

if TYPE_CHECKING:
    from dronewatch.core.pipeline import Pipeline


# Where the IP header starts, for the link types read here in bulk.
L3_OFFSET = {LINKTYPE_ETHERNET: 14, LINKTYPE_RAW: 0, LINKTYPE_IPV4: 0, LINKTYPE_IPV6: 0}


def flow_key(raw: bytes) -> FlowKey:
    """The engine's key of a flow from a key row (version, proto, low end, high end)."""
    size = 4 if raw[0] == 4 else 16
    return (
        raw[1],
        raw[2 : 2 + size],
        raw[18] << 8 | raw[19],
        raw[20 : 20 + size],
        raw[36] << 8 | raw[37],
    )


class BulkRunner:
    """Feeds pcap batches to a pipeline's decoder and engine, counting settled flows in bulk."""

    def __init__(self, pipeline: Pipeline) -> None:
        module = native()
        if module is None:
            raise RuntimeError("the bulk path needs the C extension (dronewatch.fastpath.native)")
        self._walk_c = module.walk
        self.pipe = pipeline
        self.bulk_packets = 0
        """Packets counted in bulk (the rest went through the per-packet path)."""

    def run(self, batch: PcapBatch) -> None:
        pipe = self.pipe
        engine = pipe.engine
        pipe.linktypes[batch.linktype] += len(batch)
        l3 = L3_OFFSET.get(batch.linktype)
        room = len(engine.flows) + len(batch) <= engine.options.max_flows
        if l3 is not None and room:
            self._walk(batch, l3)
            return
        # A link type the walk does not read (802.11, Linux SLL...), or a flow table that could
        # reach its cap within the batch (the engine evicts): every packet one by one.
        decode, process, raw = pipe.decoder.decode, engine.process, batch.raw
        for i in range(len(batch)):
            pkt = decode(raw(i))
            if pkt is not None:
                process(pkt)

    def _walk(self, batch: PcapBatch, l3: int) -> None:
        """The batch through the C walk; Python sees only the rows it hands back."""
        pipe = self.pipe
        engine = pipe.engine
        decode, process, to_followers = pipe.decoder.decode, engine.process, engine.to_followers
        get = engine.flows.get
        stats = pipe.decoder.stats
        raw = batch.raw

        def lookup(key: bytes) -> Flow | None:
            return get(flow_key(key))

        def handle(i: int) -> tuple[float, int, bool]:
            pkt = decode(raw(i))
            if pkt is not None:
                process(pkt)
            # Whether a flow may have changed: not for a frame that is not IP.
            return engine.next_sweep, engine.flows_ended, pkt is not None and pkt.ip_version != 0

        def follow(
            i: int, flow: Flow, from_orig: bool, ip_len: int, at: int, stop: int, plen: int
        ) -> tuple[float, int]:
            to_followers(flow, follower_packet(batch, i, flow, from_orig, ip_len, at, stop, plen))
            return engine.next_sweep, engine.flows_ended

        def sweep(ts: float) -> tuple[float, int]:
            engine.sweep_at(ts)
            return engine.next_sweep, engine.flows_ended

        def counted(n: int, latest: float) -> None:
            engine.count_bulk(n, latest)
            stats.ip += n
            self.bulk_packets += n

        opts = engine.options
        self._walk_c(
            batch.buf,
            batch.data_at,
            batch.caplen,
            batch.ts,
            l3,
            engine.next_sweep,
            engine.flows_ended,
            opts.inspect_packets,
            opts.active_s,
            lookup,
            handle,
            follow,
            sweep,
            counted,
        )


def follower_packet(
    batch: PcapBatch,
    i: int,
    flow: Flow,
    from_orig: bool,
    ip_len: int,
    payload_at: int,
    payload_stop: int,
    payload_len: int,
) -> Packet:
    """The `Packet` the per-packet decoder makes of row `i` (a UDP datagram without VLAN tag,
    IP options or extension headers), for a flow's followers."""
    at = int(batch.data_at[i])
    caplen = int(batch.caplen[i])
    frame = batch.buf[at : at + caplen]
    src, dst = (flow.orig_h, flow.resp_h) if from_orig else (flow.resp_h, flow.orig_h)
    sport, dport = (flow.orig_p, flow.resp_p) if from_orig else (flow.resp_p, flow.orig_p)
    mac = batch.linktype == LINKTYPE_ETHERNET
    return Packet(
        ts=float(batch.ts[i]),
        frame=batch.first_frame + i + 1,
        wirelen=int(batch.wirelen[i]),
        caplen=caplen,
        linktype=batch.linktype,
        src_mac=frame[6:12] if mac else b"",
        dst_mac=frame[0:6] if mac else b"",
        ip_version=4 if len(src) == 4 else 6,
        src=src,
        dst=dst,
        proto=IP_PROTO_UDP,
        sport=sport,
        dport=dport,
        ip_len=ip_len,
        payload=frame[payload_at:payload_stop],
        payload_len=payload_len,
        raw=frame,
    )
