"""One path for every source: read, decode, assemble flows, analyze, report."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

from dronewatch.analyzers import AnalyzerOptions, default_analyzers
from dronewatch.capture.base import RawPacket, Source, SourceStats
from dronewatch.capture.decode import Decoder, linktype_name
from dronewatch.capture.files import FileSource
from dronewatch.capture.pcapbatch import PcapBatch
from dronewatch.core.collector import fewer_collections
from dronewatch.core.dnscache import DnsNameCache
from dronewatch.core.engine import Engine, EngineOptions, Share
from dronewatch.core.flow import mac_str
from dronewatch.core.hooks import Analyzer, Context, Record
from dronewatch.fastpath import c_enabled
from dronewatch.fastpath.bulk import BulkRunner
from dronewatch.geoip.base import Resolver
from dronewatch.geoip.local import LocalNets
from dronewatch.geoip.null import NullResolver
from dronewatch.geoip.onlink import learn_host
from dronewatch.judge.alert import Alert
from dronewatch.judge.classify import Classifier
from dronewatch.judge.evidence import EvidenceKeeper, EvidenceOptions
from dronewatch.judge.monitor import FlowEnd, Monitor
from dronewatch.judge.policy import Policy

logger = logging.getLogger(__name__)

ProgressFn = Callable[[Source, int], None]


@dataclass(frozen=True, slots=True)
class CaptureRecord(Record):
    """What one source held and how much of it could be read: the coverage of a verdict."""

    log: ClassVar[str] = "capture"
    source: str
    format: str
    packets: int
    bytes: int
    ip_packets: int
    flows: int
    linktypes: dict[str, int]
    non_ip: dict[str, int]
    malformed: int
    fragments: int
    truncated: int
    """Packets cut by the snap length."""
    drops: int | None
    """Packets dropped by the capturing kernel or tool; None when the source does not say."""
    last_ts: float | None
    errors: tuple[str, ...] = ()
    complete: bool = True
    """False when the source ended with damage: the packets after it were not seen."""
    analyzer_errors: dict[str, int] | None = None
    """Exceptions raised by analyzers, by `analyzer.hook` (e.g. `tls.packet`); when present,
    inspection was incomplete: those analyzers' records, and the facts they publish for the
    classifier, may be missing. None (left out) when no analyzer failed."""
    open_flows: int | None = None
    """Flows still open (held in memory, not yet judged) when a live interval's record was cut;
    0 in a live capture's last record, None (left out) for capture files. A service that never
    hears from that agent again knows these flows were never judged."""
    open_since: float | None = None
    """Network time of the first packet of the oldest of the `open_flows`."""
    evicted_flows: int | None = None
    """Flows ended early because the flow table was full (`EngineOptions.max_flows`: a flood of
    new flows, such as a SYN scan): their later packets made new flows, so what an analyzer would
    have read across the cut may be missed, and every verdict of the capture is incomplete. None
    (left out) when none was."""
    gap_flows: int | None = None
    """TCP flows with content gaps: data the peer acknowledged that the capture never showed
    (packets lost on the way to the capture even where it reports no drops;
    `dronewatch.core.tcp`); in a live interval's record, those of the flows that ended in it.
    None (left out) when no flow had one."""
    missed_bytes: int | None = None
    """The bytes of those gaps (each flow's `missed_bytes`)."""
    inspection_stopped: int | None = None
    """Flows whose inspection stopped because every analyzer reading them waited for an answer
    that did not come (`EngineOptions.stall_packets`; each flow's record says why); in a live
    interval's record, those that ended in it. None (left out) when none did."""
    bad_checksums: int | None = None
    """IP packets with a wrong IPv4 header, TCP, UDP or ICMP checksum, dropped as their receiver
    drops them (`dronewatch.capture.checksum`; a TCP or UDP one marks its flow's history with
    `C`/`c`). None (left out) when none was, or when checksums were not checked."""
    encrypted: dict[str, int] | None = None
    """Protected 802.11 data frames (`dot11-protected` in `non_ip`), by the MAC that sent them
    (`DecodeStats.encrypted`; the `MAX_ENCRYPTED_SENDERS` that sent most): a device that sent any
    is never judged clean, since what they carried could not be read. None (left out) when the
    capture has none."""
    on_link: tuple[str, ...] | None = None
    """The prefixes and addresses (CIDR; an address as /32 or /128) the link's protocols showed
    on the capture's link (IPv6 Neighbor Discovery, ARP: `dronewatch.geoip.onlink`): an end of a
    flow at one of them is a host of the site's network, local whatever its scope (a phone's
    global IPv6 address, a site's public IPv4 one). None (left out) when none was shown."""
    on_link_refused: dict[str, int] | None = None
    """Prefixes router advertisements named that were too short to be taken as the link's
    (`dronewatch.geoip.onlink.MIN_PREFIX`: a rogue or mistaken advertisement), with the times
    named. None (left out) when none was."""


MAX_ENCRYPTED_SENDERS = 1000
"""Senders of encrypted 802.11 frames a capture record lists (a busy monitor-mode capture hears
many networks); `analyze`'s verdicts read every sender."""


def encrypted_senders(counts: Mapping[str, int]) -> dict[str, int] | None:
    """A capture record's `encrypted` of counts by sender MAC (text): the senders that sent
    most (`MAX_ENCRYPTED_SENDERS`), the most first; None when there are none."""
    busiest = sorted(
        ((mac, n) for mac, n in counts.items() if n > 0), key=lambda kv: (-kv[1], kv[0])
    )
    return dict(busiest[:MAX_ENCRYPTED_SENDERS]) or None


@dataclass(slots=True)
class AnalysisConfig:
    """Everything a run decides with: policy, rule packs, GeoIP, flow-table and analyzer
    tunables."""

    policy: Policy = field(default_factory=Policy)
    classifier: Classifier | None = None
    resolver: Resolver | None = None
    engine: EngineOptions | None = None
    evidence: EvidenceOptions | None = None
    """Keep the first frames of flows that leave a device (evidence.jsonl); None: off."""
    announce_devices: bool = False
    """Write device records as ground stations are found (live capture), not only at the end."""
    bulk: bool = True
    """Count the packets of settled flows in bulk (pcap files); False: every packet one by one.
    Both give the same records."""
    analyzers: AnalyzerOptions = field(default_factory=AnalyzerOptions)
    """The analyzers' tunables (`--analyzer-option ANALYZER.FIELD=VALUE`)."""
    checksums: str = "ignore"
    """How wrong checksums are taken (`dronewatch.capture.checksum`: ignore, auto, verify)."""


@dataclass(slots=True)
class RunTotals:
    """What a run counted, for its capture record: one process's, or the sum of the processes
    sharing a capture (`merge_totals`)."""

    stats: SourceStats
    first_frame: int
    first_ts: float | None
    """Time of the first packet the engine handled (frame `first_frame`)."""
    last_ts: float | None
    ip_packets: int
    flows: int
    linktypes: dict[int, int]
    non_ip: dict[str, int]
    malformed: int
    fragments: int
    analyzer_errors: dict[str, int]
    evicted_flows: int
    bad_checksums: int = 0
    encrypted: dict[bytes, int] = field(default_factory=dict)
    """Protected 802.11 data frames by sender (`DecodeStats.encrypted`)."""
    on_link: tuple[str, ...] = ()
    """What the link's protocols showed on it (`OnLink.cidrs`)."""
    on_link_refused: dict[str, int] = field(default_factory=dict)


def merge_totals(shares: list[RunTotals]) -> RunTotals:
    """The totals of one capture read by several processes, each making its own flows
    (`dronewatch.core.split`); the first is process 0's. What every process reads alike (the
    source, link types, frames that are not IP, fragments, bad checksums) is taken once; what
    each counted of its own flows is added up."""
    first = shares[0]
    started = [t for t in shares if t.first_ts is not None]
    lead = min(started, key=lambda t: t.first_frame) if started else first
    lasts = [t.last_ts for t in shares if t.last_ts is not None]
    errors: Counter[str] = Counter()
    for t in shares:
        errors.update(t.analyzer_errors)
    return RunTotals(
        stats=first.stats,
        first_frame=lead.first_frame,
        first_ts=lead.first_ts,
        last_ts=max(lasts) if lasts else None,
        ip_packets=sum(t.ip_packets for t in shares),
        flows=sum(t.flows for t in shares),
        linktypes=first.linktypes,
        non_ip=first.non_ip,
        malformed=first.malformed,
        fragments=first.fragments,
        analyzer_errors=dict(errors),
        evicted_flows=sum(t.evicted_flows for t in shares),
        bad_checksums=first.bad_checksums,
        encrypted=first.encrypted,
        on_link=first.on_link,  # every process reads every Neighbor Discovery message
        on_link_refused=first.on_link_refused,
    )


def finish_run(totals: RunTotals, monitor: Monitor, emit: Callable[[Record], None]) -> RunResult:
    """Write the capture record of a run whose flows have all ended, then the monitor's devices,
    alerts and verdicts."""
    stats = totals.stats
    errors = totals.analyzer_errors
    record = CaptureRecord(
        ts=totals.first_ts if totals.first_ts is not None else 0.0,
        source=stats.name,
        format=stats.format,
        packets=stats.packets,
        bytes=stats.bytes,
        ip_packets=totals.ip_packets,
        flows=totals.flows,
        linktypes={linktype_name(lt): n for lt, n in sorted(totals.linktypes.items())},
        non_ip=dict(sorted(totals.non_ip.items())),
        malformed=totals.malformed,
        fragments=totals.fragments,
        truncated=stats.truncated,
        drops=stats.drops,
        last_ts=totals.last_ts,
        errors=tuple(stats.errors),
        complete=not stats.errors,
        analyzer_errors=dict(sorted(errors.items())) or None,
        evicted_flows=totals.evicted_flows or None,
        gap_flows=monitor.gap_flows or None,
        missed_bytes=monitor.missed_bytes or None,
        inspection_stopped=monitor.stopped_flows or None,
        bad_checksums=totals.bad_checksums or None,
        encrypted=encrypted_senders({mac_str(m): n for m, n in totals.encrypted.items()}),
        on_link=totals.on_link or None,
        on_link_refused=dict(totals.on_link_refused) or None,
    )
    emit(record)
    alerts = monitor.finish(
        drops=stats.drops,
        complete=record.complete,
        analyzer_errors=sum(errors.values()),
        linktypes=record.linktypes,
        evicted_flows=totals.evicted_flows,
        bad_checksums=totals.bad_checksums,
        encrypted=totals.encrypted,
    )
    return RunResult(record, alerts)


@dataclass(slots=True)
class RunResult:
    """What one source gave: its coverage and the alerts raised."""

    capture: CaptureRecord
    alerts: list[Alert]
    bulk_packets: int = 0
    """Packets the bulk path counted without the per-packet decoder (a measure, not a record)."""


class Pipeline:
    """Decoder, flow engine, analyzers and policy monitor over one stream of raw packets."""

    def __init__(
        self,
        emit: Callable[[Record], None],
        config: AnalysisConfig | None = None,
        *,
        share: Share | None = None,
        handoff: Callable[[FlowEnd], None] | None = None,
    ):
        """`share` and `handoff`: this pipeline is process k of n sharing one capture
        (`dronewatch.core.split`): it makes only its own flows (`Engine.share`) and hands each
        finished one to `handoff` instead of keeping the books across flows itself."""
        config = config or AnalysisConfig()
        self.emit = emit
        resolver = config.resolver
        if resolver is None:
            # No databases, but the policy's local subnets are local all the same (a device
            # declared by its address joins them: `with_devices`), as with a resolver the
            # command line makes.
            subnets = config.policy.local_subnets
            resolver = NullResolver(LocalNets(subnets) if subnets else None)
        self.ctx = Context(emit=emit, dns=DnsNameCache(), local=resolver.local)
        keeper = EvidenceKeeper(config.evidence) if config.evidence is not None else None
        self.monitor = Monitor(
            self.ctx,
            config.policy,
            config.classifier,
            resolver,
            keeper,
            announce=config.announce_devices,
            handoff=handoff,
        )
        first: list[Analyzer] = [keeper] if keeper is not None else []
        self.engine = Engine(
            [*first, *default_analyzers(self.ctx, config.analyzers), self.monitor],
            self.ctx,
            config.engine,
            share=share,
        )
        self.decoder = Decoder(config.checksums)
        # An ARP request shows its sender on the link (`Decoder._arp`): the same table as the
        # Neighbor Discovery analyzer's.
        self.decoder.on_arp = partial(learn_host, self.ctx.on_link, self.ctx.local)
        self.linktypes: Counter[int] = Counter()
        self._bulk_ok = config.bulk
        self._bulk: BulkRunner | None = None

    def feed(self, raw: RawPacket) -> None:
        """Analyze one raw packet."""
        self.linktypes[raw.linktype] += 1
        decoder = self.decoder
        pkt = decoder.decode(raw)
        if pkt is not None:
            self.engine.process(pkt)
            if decoder.more:  # the frame's other packets (an 802.11 A-MSDU's)
                for pkt in decoder.more:
                    self.engine.process(pkt)

    def feed_batch(self, batch: PcapBatch) -> None:
        """Analyze a batch of packets (the blocks of a live capture ring) through the bulk path,
        as `run_source` does a capture file's; packet by packet when `AnalysisConfig.bulk` is
        off."""
        if not self._bulk_ok:
            for i in range(len(batch)):
                self.feed(batch.raw(i))
            return
        if self._bulk is None:
            self._bulk = BulkRunner(self)
        self._bulk.run(batch)

    def tick(self, now: float) -> None:
        """Let idle flows end as of time `now` (live sources, while no packet comes)."""
        self.engine.tick(now)

    def finish(self, stats: SourceStats) -> RunResult:
        """End every flow, write the capture record, devices, alerts and verdicts."""
        return finish_run(self.end(stats), self.monitor, self.emit)

    def end(self, stats: SourceStats) -> RunTotals:
        """End every flow; what the run counted."""
        engine, decoder = self.engine, self.decoder
        engine.finish()
        return RunTotals(
            stats=stats,
            first_frame=engine.first_frame,
            first_ts=engine.first_ts,
            last_ts=engine.now or None,
            ip_packets=decoder.stats.ip - engine.not_owned,
            flows=engine.flows_total - engine.foreign_flows,
            linktypes=dict(self.linktypes),
            non_ip=dict(decoder.stats.non_ip),
            malformed=decoder.stats.malformed,
            fragments=decoder.stats.fragments,
            analyzer_errors=engine.failures.as_record() or {},
            evicted_flows=engine.evicted_flows,
            bad_checksums=decoder.stats.bad_checksums,
            encrypted=dict(decoder.stats.encrypted),
            on_link=self.ctx.on_link.cidrs(),
            on_link_refused=dict(self.ctx.on_link.refused),
        )


def run_source(
    source: Source,
    emit: Callable[[Record], None],
    config: AnalysisConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    progress_every: int = 65536,
) -> RunResult:
    """Analyze every packet of one source: records go to `emit`; returns coverage and alerts.
    The garbage collector runs rarely meanwhile (`fewer_collections`)."""
    with fewer_collections():
        return _run(source, emit, config, progress, progress_every)


def _run(
    source: Source,
    emit: Callable[[Record], None],
    config: AnalysisConfig | None,
    progress: ProgressFn | None,
    progress_every: int,
) -> RunResult:
    pipe = Pipeline(emit, config)
    bulk = feed_source(pipe, source, config, progress, progress_every)
    result = pipe.finish(source.stats)
    result.bulk_packets = bulk
    return result


def feed_source(
    pipe: Pipeline,
    source: Source,
    config: AnalysisConfig | None,
    progress: ProgressFn | None,
    progress_every: int,
) -> int:
    """Every packet of `source` through `pipe`, in batches through the bulk path where it can
    be taken; returns how many packets were counted in bulk."""
    if (config is None or config.bulk) and c_enabled() and isinstance(source, FileSource):
        return _run_batches(pipe, source, progress, progress_every)
    decoder = pipe.decoder
    decode = decoder.decode
    process = pipe.engine.process
    linktypes = pipe.linktypes
    count = 0
    for raw in source.packets():
        count += 1
        linktypes[raw.linktype] += 1
        pkt = decode(raw)
        if pkt is not None:
            process(pkt)
            if decoder.more:  # the frame's other packets (an 802.11 A-MSDU's)
                for pkt in decoder.more:
                    process(pkt)
        if progress is not None and count % progress_every == 0:
            progress(source, count)
    return 0


def _run_batches(
    pipe: Pipeline, source: FileSource, progress: ProgressFn | None, progress_every: int
) -> int:
    runner = BulkRunner(pipe)
    count = reported = 0
    for item in source.batches():
        if isinstance(item, RawPacket):
            pipe.feed(item)
            count += 1
        else:
            runner.run(item)
            count += len(item)
        if progress is not None and count - reported >= progress_every:
            reported = count - count % progress_every
            progress(source, count)
    logger.debug("%s: %d of %d packets counted in bulk", source.path, runner.bulk_packets, count)
    return runner.bulk_packets
