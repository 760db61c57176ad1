"""One path for every source: read, decode, assemble flows, analyze, report."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from dronewatch.alert import Alert
from dronewatch.analyzers import default_analyzers
from dronewatch.capture.base import Source
from dronewatch.capture.decode import Decoder, linktype_name
from dronewatch.classify import Classifier
from dronewatch.dnscache import DnsNameCache
from dronewatch.engine import Engine, EngineOptions
from dronewatch.evidence import EvidenceKeeper, EvidenceOptions
from dronewatch.geoip.base import Resolver
from dronewatch.hooks import Analyzer, Context, Record
from dronewatch.monitor import Monitor
from dronewatch.policy import Policy

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


@dataclass(slots=True)
class AnalysisConfig:
    """Everything a run decides with: policy, rule packs, GeoIP, flow-table tunables."""

    policy: Policy = field(default_factory=Policy)
    classifier: Classifier | None = None
    resolver: Resolver | None = None
    engine: EngineOptions | None = None
    evidence: EvidenceOptions | None = None
    """Keep the first frames of flows that leave a device (evidence.jsonl); None: off."""


@dataclass(slots=True)
class RunResult:
    """What one source gave: its coverage and the alerts raised."""

    capture: CaptureRecord
    alerts: list[Alert]


def run_source(
    source: Source,
    emit: Callable[[Record], None],
    config: AnalysisConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    progress_every: int = 65536,
) -> RunResult:
    """Analyze every packet of one source: records go to `emit`; returns coverage and alerts."""
    config = config or AnalysisConfig()
    ctx = Context(emit=emit, dns=DnsNameCache())
    resolver = config.resolver
    if resolver is None:
        from dronewatch.geoip.null import NullResolver

        resolver = NullResolver()
    keeper = EvidenceKeeper(config.evidence) if config.evidence is not None else None
    monitor = Monitor(ctx, config.policy, config.classifier, resolver, keeper)
    first: list[Analyzer] = [keeper] if keeper is not None else []
    engine = Engine([*first, *default_analyzers(ctx), monitor], ctx, config.engine)
    decoder = Decoder()
    decode = decoder.decode
    process = engine.process
    linktypes: Counter[int] = Counter()
    count = 0
    for raw in source.packets():
        count += 1
        linktypes[raw.linktype] += 1
        pkt = decode(raw)
        if pkt is not None:
            process(pkt)
        if progress is not None and count % progress_every == 0:
            progress(source, count)
    engine.finish()
    stats = source.stats
    record = CaptureRecord(
        ts=engine.first_ts if engine.first_ts is not None else 0.0,
        source=stats.name,
        format=stats.format,
        packets=stats.packets,
        bytes=stats.bytes,
        ip_packets=decoder.stats.ip,
        flows=engine.flows_total,
        linktypes={linktype_name(lt): n for lt, n in sorted(linktypes.items())},
        non_ip=dict(sorted(decoder.stats.non_ip.items())),
        malformed=decoder.stats.malformed,
        fragments=decoder.stats.fragments,
        truncated=stats.truncated,
        drops=stats.drops,
        last_ts=engine.now or None,
        errors=tuple(stats.errors),
        complete=not stats.errors,
    )
    emit(record)
    alerts = monitor.finish(drops=stats.drops, complete=record.complete)
    return RunResult(record, alerts)
