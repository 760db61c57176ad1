"""The bulk path: pcap records a batch at a time, giving the per-packet path's records.

Most packets of a long flow only add to its counters: after the first `inspect_packets` payload
packets, no analyzer looks at them unless it follows the flow. This path reads the link, IP and
transport headers of a whole batch, finds each packet's flow, and adds the packets of settled flows
to their counters: TCP, UDP, ICMP and ICMPv6 (keyed as the engine keys them, a request with its
reply, their payload counted past the 8-byte header; with `--checksums` other than `ignore` an ICMP
message goes to the decoder, which checks its checksum), and the IP protocols without ports (ESP,
VRRP, IGMP...: the two addresses, no payload, as the decoder keys them). It reads every link type
the decoder reads but BSD loopback's non-IP families (Ethernet with VLAN tags, Linux SLL and SLL2,
raw IP, 802.11 with or without radiotap), and takes the inner packet out of the encapsulations the
decoder takes apart (ERSPAN, GRE, VXLAN, Geneve, MPLS, PPPoE, 802.11 in GRE from an Aruba access
point). Frames that are not IP and that the
decoder would only count (802.11 control frames, encrypted or null data, other EtherTypes) are
counted there too, and so are the 802.11 management frames no frame hook reads (`FrameInterest`:
beacons without a drone vendor's element), once the engine has had a packet. Every other packet (a
flow's first packets, followed flows, TCP SYN/FIN/RST, fragments, IPv6 extension headers, SCTP, the
management frames a frame hook reads, an 802.11 A-MSDU with a subframe the walk does not read, an
ARP request for an address not in the built-in local ranges, which the decoder reads for what it
shows on the link, and anything too short) goes through the per-packet
decoder and `Engine.process` in capture order; the packets of an A-MSDU the walk reads whole are
rows of their own.
A flow whose analyzers all waited too long (`EngineOptions.stall_packets`) has no inspector
left once the engine stops it, so from then on its packets are counted here like a settled flow's.

Flows are only touched between two sweeps of the flow table (the engine's idle check every
`sweep_every_s` of capture time), so a batch is cut into segments at the packets that trigger a
sweep; within a segment a settled flow can only gain packets and bytes, which commute.

Where the C extension (`dronewatch.fastpath._fastpath`) is built, its `walk` goes over the rows in
C: it keeps the counts of settled flows itself and writes them to the flows before any Python code
runs (a handed-over packet, a follower, a sweep), so Python always sees exact counters. A row it
read whole (a TCP, UDP, ICMP or portless packet, seen directly or out of the encapsulations above,
with its `Tunnel`) comes with the `Packet` the per-packet decoder would make of it, made in C, so
the decoder runs only on the frames the walk does not read (fragments, IPv6 extension headers, SCTP,
packets a checksum mode drops, frames that are not IP).
A TCP data segment is counted in C when it changes nothing but the sequence numbers
of a settled connection (`dronewatch.core.tcp`, content gaps included); a segment without
payload that changes the connection's state (SYN, FIN, RST, a new history letter, an ACK after
the close) is accounted in C by the TCP state machine (`_tcp.c`), which the engine also runs;
the engine sets the timers a close calls for (`Engine.tcp_timers`). Segments of a flow whose
timer is due (an unanswered attempt `close_linger_s` after its SYN, a closed connection at its
close timer), a SYN that reuses the 5-tuple, a segment that flips the flow or gives up a hole
of a reassembled stream, new data letters, retransmissions and data held above a hole go to the
engine. A drone link
whose followers all keep their state in C frame counters (`Flow.counters`) has its datagrams fed
to them there, without a call into Python. Without the extension (no compiler at install time,
or `DRONEWATCH_NO_C` set) this path is not taken: `dronewatch.core.pipeline` reads every packet
one by one instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dronewatch.capture.decode import IP6_READ_PAST
from dronewatch.capture.pcapbatch import PcapBatch
from dronewatch.core.community_id import ICMP4_PAIRS, ICMP6_PAIRS
from dronewatch.core.engine import FlowKey
from dronewatch.core.flow import Flow, Packet
from dronewatch.fastpath import native
from dronewatch.geoip.local import builtin_local_v4

if TYPE_CHECKING:
    from dronewatch.core.pipeline import Pipeline


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
        # The engine's ICMP pairs, the decoder's IPv6 headers and the built-in local ranges
        # (ARP requests for their addresses show nothing new on the link): the walk's too.
        module.protocols_setup(ICMP4_PAIRS, ICMP6_PAIRS, IP6_READ_PAST, builtin_local_v4())
        self._walked = frozenset(module.linktypes())
        """The link types the C walk reads."""
        self.pipe = pipeline
        self.bulk_packets = 0
        """Packets counted in bulk (the rest went through the per-packet path)."""
        interest = pipeline.engine.frame_interest
        self._frame_ouis = None if interest is None else b"".join(sorted(interest.vendor_ouis))
        """The OUIs of the vendor elements of the 802.11 management frames the engine's frame
        hooks read (`FrameInterest`); None: every management frame goes to them."""
        self._frame_action = interest is None or interest.action

    def run(self, batch: PcapBatch) -> None:
        pipe = self.pipe
        engine = pipe.engine
        pipe.linktypes[batch.linktype] += len(batch)
        if batch.linktype in self._walked:
            self._walk(batch)
            return
        # A link type the walk does not read: every packet one by one.
        decoder = pipe.decoder
        decode, process, raw = decoder.decode, engine.process, batch.raw
        for i in range(len(batch)):
            pkt = decode(raw(i))
            if pkt is not None:
                process(pkt)
                if decoder.more:  # the frame's other packets (an 802.11 A-MSDU's)
                    for pkt in decoder.more:
                        process(pkt)

    def _walk(self, batch: PcapBatch) -> None:
        """The batch through the C walk; Python sees only the rows it hands back."""
        pipe = self.pipe
        engine = pipe.engine
        decoder = pipe.decoder
        decode, process, to_followers = decoder.decode, engine.process, engine.to_followers
        get = engine.flows.get
        stats = decoder.stats
        raw = batch.raw
        first = batch.first_frame + 1  # row i is frame first + i

        def lookup(key: bytes) -> Flow | None:
            return get(flow_key(key))

        def handle(i: int, pkt: Packet | None) -> tuple[float, int, bool]:
            if pkt is None:  # a row the walk did not read whole: the decoder's
                pkt = decode(raw(i))
                if pkt is not None and decoder.more:  # an 802.11 A-MSDU's packets
                    process(pkt)
                    for pkt in decoder.more:
                        process(pkt)
                    return engine.next_sweep, engine.flows_ended, True
            else:  # the decoder's packet, made by the walk
                stats.ip += 1
            if pkt is not None:
                process(pkt)
            # Whether a flow may have changed: not for a frame that is not IP.
            return engine.next_sweep, engine.flows_ended, pkt is not None and pkt.ip_version != 0

        def follow(i: int, flow: Flow, pkt: Packet) -> tuple[float, int]:
            engine.frame = first + i
            to_followers(flow, pkt)
            return engine.next_sweep, engine.flows_ended

        def facts(i: int, pkt: Packet) -> None:
            stats.ip += 1
            engine.read_facts(pkt)

        def sweep(ts: float, i: int) -> tuple[float, int]:
            engine.frame = first + i
            engine.sweep_at(ts)
            return engine.next_sweep, engine.flows_ended

        def counted(n: int, latest: float, frames: int) -> None:
            engine.count_bulk(n, latest)
            stats.ip += n - frames  # the management frames are in `skipped`'s counts
            self.bulk_packets += n

        def skipped(counts: dict[str, int], encrypted: dict[bytes, int]) -> None:
            stats.non_ip.update(counts)
            stats.encrypted.update(encrypted)

        def timers(key: bytes, events: int, ts: float) -> None:
            k = flow_key(key)
            engine.tcp_timers(k, engine.flows[k], events, ts)

        opts = engine.options
        share = engine.share
        shared = (
            (0, 1, -1) if share is None else (share.index, share.processes, share.every_port or -1)
        )
        icmp6 = 0 if share is None else share.icmp6_mask
        self._walk_c(
            batch.buf,
            batch.data_at,
            batch.caplen,
            batch.wirelen,
            batch.ts,
            batch.linktype,
            batch.first_frame,
            batch.iface if batch.ifaces is None else batch.ifaces,
            engine.next_sweep,
            engine.flows_ended,
            opts.inspect_packets,
            opts.active_s,
            opts.close_linger_s,
            lookup,
            handle,
            follow,
            sweep,
            counted,
            skipped,
            timers,
            *shared,
            pipe.decoder.checksums,
            facts if share is not None and engine.reads_facts else None,
            self._frame_ouis,
            self._frame_action,
            engine.first_ts is not None,
            icmp6,
        )
