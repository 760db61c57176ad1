"""The agent's main loop: capture, analyze, batch into the spool, ship; stop cleanly on a signal."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from dronewatch.agent.shipper import Shipper
from dronewatch.agent.spool import Spool
from dronewatch.analyzers.dns import learn_datagram
from dronewatch.capture.base import CoverageMark, RawPacket
from dronewatch.capture.decode import Decoder
from dronewatch.capture.live import SIDE_CHANNEL, LiveSource
from dronewatch.capture.pcapbatch import PcapBatch
from dronewatch.capture.ring import PcapRing
from dronewatch.core.flow import mac_str
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import (
    AnalysisConfig,
    CaptureRecord,
    Pipeline,
    RunResult,
    encrypted_senders,
)
from dronewatch.exceptions import CaptureError
from dronewatch.transport.replay import Batcher

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class AgentOptions:
    flush_s: float = 2.0
    """Longest a record waits in memory before its batch goes to the spool."""
    batch_size: int = 500
    drain_s: float = 10.0
    """On stop, how long to keep shipping what is spooled before exiting."""
    report_s: float = 10.0
    """How often a coverage record (packets and drops of the interval) is sent: the capture is
    asked for a coverage mark this often, and the record is cut at the mark."""


class Agent:
    """One capture, one pipeline, one spool, one shipper."""

    def __init__(
        self,
        source: LiveSource,
        config: AnalysisConfig,
        spool: Spool,
        shipper: Shipper | None,
        options: AgentOptions | None = None,
        ring: PcapRing | None = None,
    ) -> None:
        """`ring`: also keep every captured packet in this rotating pcap ring."""
        self.source = source
        self.config = config
        self.spool = spool
        self.shipper = shipper
        self.options = options or AgentOptions()
        self.batcher = Batcher(self.spool.put, self.options.batch_size)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.result: RunResult | None = None
        self.ring = ring
        self.pipeline: Pipeline | None = None
        self.coverage = _Coverage(source.stats.name)
        self._names = _NameChannel(config.checksums)

    def _emit(self, record: Record) -> None:
        if isinstance(record, CaptureRecord):
            # The pipeline's record covers the whole run; the service gets the last interval.
            record = self.coverage.interval(self.source, None, final=record)
        with self._lock:
            self.batcher(record)

    def _keep(self, item: RawPacket | PcapBatch) -> None:
        assert self.ring is not None
        try:
            if isinstance(item, PcapBatch):
                self.ring.write_batch(item)
            else:
                self.ring.write(item)
        except CaptureError as exc:
            logger.error("%s; the pcap ring is off, the capture goes on", exc)
            self.ring.close()
            self.ring = None

    def _report(self, pipe: Pipeline, mark: CoverageMark) -> None:
        record = self.coverage.interval(self.source, pipe, mark=mark)
        with self._lock:
            self.batcher(record)

    def _flush(self) -> None:
        with self._lock:
            self.batcher.flush()

    def install_signals(self) -> None:
        """SIGTERM and SIGINT stop the capture; flows are then flushed and the spool drained."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            logger.info("signal %d: stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def stop(self) -> None:
        self._stopping.set()
        self.source.stop()

    def run(
        self,
        on_tick: Callable[[Agent], Any] | None = None,
        on_started: Callable[[], Any] | None = None,
    ) -> RunResult:
        """Capture until stopped; returns the capture's coverage and the local alerts.
        `on_started` is called once the capture is open."""
        if self.shipper is not None:
            self.shipper.start()
        pipe = self.pipeline = Pipeline(self._emit, self.config)
        last_flush = last_report = time.monotonic()
        self.source.start()
        self.coverage.start(time.time())
        if on_started is not None:
            on_started()
        try:
            for item in self.source.batches():
                if item is None:
                    pipe.tick(time.time())
                elif isinstance(item, CoverageMark):
                    self._report(pipe, item)
                elif isinstance(item, PcapBatch):
                    pipe.feed_batch(item)
                    if self.ring is not None:
                        self._keep(item)
                elif item.iface == SIDE_CHANNEL:
                    self._names.feed(pipe, item)
                else:
                    pipe.feed(item)
                    if self.ring is not None:
                        self._keep(item)
                now = time.monotonic()
                if now - last_report >= self.options.report_s:
                    self.source.request_mark()  # the record is cut when the mark comes
                    last_report = now
                if now - last_flush >= self.options.flush_s:
                    self._flush()
                    last_flush = now
                    if on_tick is not None:
                        on_tick(self)
        finally:
            if self.ring is not None:
                self.ring.close()
            self.result = pipe.finish(self.source.stats)
            self._flush()
            if self.shipper is not None:
                if not self.shipper.drain(self.options.drain_s):
                    n, size = self.spool.pending()
                    logger.warning(
                        "%d batches (%d bytes) stay in the spool %s for the next start",
                        n,
                        size,
                        self.spool.directory,
                    )
                self.shipper.stop()
        return self.result


class _Coverage:
    """Cuts the capture's counters into intervals, one coverage (capture) record each, so the
    service sees coverage while the agent runs, and a stopped agent as a gap."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.since = 0.0
        self.packets = 0
        self.bytes = 0
        self.truncated = 0
        self.drops = 0
        """Drops the source had reported at the end of the last interval whose drops it knew."""
        self.ip = 0
        self.flows = 0
        self.evicted = 0
        """Flows the flow table had evicted at the end of the last interval."""
        self.unseen = (0, 0, 0)
        """Flows with content gaps, their missed bytes and flows whose inspection stopped, as
        counted at the end of the last interval (`_unseen`)."""
        self.failures: Counter[str] = Counter()
        """Analyzer failures reported so far (by `analyzer.hook`)."""
        self.bad_checksums = 0
        """Packets dropped for a wrong checksum by the end of the last interval."""
        self.encrypted: Counter[str] = Counter()
        """Encrypted 802.11 data frames by sender MAC by the end of the last interval."""

    def start(self, now: float) -> None:
        self.since = now

    def interval(
        self,
        source: LiveSource,
        pipe: Pipeline | None,
        final: CaptureRecord | None = None,
        mark: CoverageMark | None = None,
    ) -> CaptureRecord:
        """The coverage record of the interval since the last one, up to `mark` (else now).
        Its drops are those the source reported since the last interval whose drops it knew;
        None while it cannot tell (that interval is then never called covered)."""
        if mark is not None:
            now, drops = mark.at, mark.drops
            packets, size, truncated = mark.packets, mark.bytes, mark.truncated
        else:
            stats = source.stats
            now, drops = time.time(), source.drops_so_far()
            packets, size, truncated = stats.packets, stats.bytes, stats.truncated
        ip = pipe.decoder.stats.ip if pipe is not None else (final.ip_packets if final else 0)
        flows = pipe.engine.flows_total if pipe is not None else (final.flows if final else 0)
        evicted = (
            pipe.engine.evicted_flows
            if pipe is not None
            else (final.evicted_flows or 0 if final else self.evicted)
        )
        bad = (
            pipe.decoder.stats.bad_checksums
            if pipe is not None
            else (final.bad_checksums or 0 if final else self.bad_checksums)
        )
        encrypted = (
            Counter({mac_str(mac): n for mac, n in pipe.decoder.stats.encrypted.items()})
            if pipe is not None
            else Counter(final.encrypted or {} if final else self.encrypted)
        )
        unseen = _unseen(pipe, final) if pipe is not None or final else self.unseen
        gap_flows, missed, stopped = (a - b for a, b in zip(unseen, self.unseen, strict=True))
        open_flows, open_since = _open(pipe)
        failures = Counter(
            pipe.engine.failures.counts
            if pipe is not None
            else (final.analyzer_errors or {} if final else {})
        )
        record = CaptureRecord(
            ts=self.since,
            source=self.name,
            format="live",
            packets=packets - self.packets,
            bytes=size - self.bytes,
            ip_packets=ip - self.ip,
            flows=flows - self.flows,
            linktypes=final.linktypes if final else {},
            non_ip=final.non_ip if final else {},
            malformed=final.malformed if final else 0,
            fragments=final.fragments if final else 0,
            truncated=truncated - self.truncated,
            drops=None if drops is None else drops - self.drops,
            last_ts=now,
            errors=final.errors if final else (),
            complete=final.complete if final else True,
            analyzer_errors=dict(sorted((failures - self.failures).items())) or None,
            open_flows=open_flows,
            open_since=open_since,
            evicted_flows=evicted - self.evicted or None,
            gap_flows=gap_flows or None,
            missed_bytes=missed or None,
            inspection_stopped=stopped or None,
            bad_checksums=bad - self.bad_checksums or None,
            encrypted=encrypted_senders(encrypted - self.encrypted),
            on_link=(pipe.ctx.on_link.cidrs() or None)
            if pipe is not None
            else (final.on_link if final else None),
        )
        self.since = now
        self.bad_checksums = bad
        self.encrypted = encrypted
        self.evicted = evicted
        self.unseen = unseen
        self.failures = failures
        self.packets, self.bytes, self.truncated = packets, size, truncated
        self.ip, self.flows = ip, flows
        if drops is not None:
            self.drops = drops
        return record


def _unseen(pipe: Pipeline | None, final: CaptureRecord | None) -> tuple[int, int, int]:
    """Flows with content gaps, their missed bytes and flows whose inspection stopped, ended so
    far (the judge counts them as flows end: `Monitor`), from the pipeline or its last record."""
    if pipe is not None:
        m = pipe.monitor
        return m.gap_flows, m.missed_bytes, m.stopped_flows
    assert final is not None
    return final.gap_flows or 0, final.missed_bytes or 0, final.inspection_stopped or 0


def _open(pipe: Pipeline | None) -> tuple[int, float | None]:
    """How many flows the pipeline holds open, and the first packet time of the oldest: what
    is lost, never judged, if the agent dies before they end (none once it has finished)."""
    if pipe is None:
        return 0, None
    flows = pipe.engine.flows
    if not flows:
        return 0, None
    return len(flows), min(flow.first_ts for flow in flows.values())


class _NameChannel:
    """DNS responses seen on the side channel: a worker that shares its interface learns every
    name, including those resolved in flows another worker owns."""

    def __init__(self, checksums: str) -> None:
        # Its own decoder: these packets are not counted in the coverage.
        self.decoder = Decoder(checksums)

    def feed(self, pipe: Pipeline, raw: RawPacket) -> None:
        pkt = self.decoder.decode(raw)
        if pkt is None:
            return
        for one in (pkt, *self.decoder.more) if self.decoder.more else (pkt,):
            if not one.bad_checksum and one.payload and one.sport == 53:
                learn_datagram(pipe.ctx.dns, one.payload, one.ts)
