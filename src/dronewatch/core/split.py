"""One capture file analysed by several processes (`analyze --workers N FILE`), with the records
one process would write, in its order.

Each of N forked processes reads the whole file but makes only the flows whose key hashes to it
(`dronewatch.core.engine.owner`; the C walk skips the other rows once the sweeps their times call
for are made, so every process ends flows at the same packets as one process would). What
crosses flows is seen by every process or kept by the parent:

- DNS answers name the flows that follow them (`DnsNameCache`): every process reads every DNS
  answer (`Share.every_port`), its owner on the flow it makes and writes, the others without
  the flow (the DNS analyzer's `facts`, `FactsHook`: the cache learns from a response alone,
  `learn_answers`, so all learn the same names in the same order); DNS over TCP, whose stream
  must be read in order, is made by every process for its answers and written by its owner
  only (`Engine.foreign`);
- the books across flows (hosts, ground stations, what left each device, DHCP names, the
  verdicts) are kept by the parent: each process settles its own flows (classified,
  geolocated, their records made: `Monitor.settle`), keeps the counts that do not depend on
  the order flows come in (`Monitor.tally`: flows, packets and what was kept from view, per
  host), and hands the parent a `FlowEnd` for each flow the books need in order (a DHCP name,
  a local or drone-link flow, an egress observation); the parent adds the processes' counts at
  the end (`Monitor.add_tally`);
- frames that are not IP (802.11 beacons, Remote ID) go to the analyzers of process 0 only.

Every record and `FlowEnd` is tagged with where it falls in the capture (`Engine.position`:
frame, then a sweep's flows in the order they were made); the parent merges the processes'
streams by it, writes the records, keeps the books with the `FlowEnd`s in that order, then
writes the capture record (`merge_totals`), devices, alerts and verdicts.

Three things differ from one process, each only past a bound: the DNS name cache's least
recently used entry goes first, and each process touches it for its own flows, so past
`DNSCACHE_MAX_ENTRIES` addresses a name may be kept by one and not the other; each process's
flow table holds up to `max_flows` of its own flows (memory per process stays bounded as for
one), so a flood that fills a table ends other flows early than one process's table would (the
capture record's `evicted_flows` counts them); and a UDP flow on port 53 whose first
`DnsOptions.max_failures` messages are not DNS is given up by its owner's DNS analyzer, while
the other processes, reading its datagrams without the flow, still learn from a valid answer
that comes later on it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import traceback
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from operator import itemgetter
from typing import Any, NamedTuple, cast

try:
    import fcntl
except ImportError:  # not on this platform: pipes keep their size
    fcntl = None  # type: ignore[assignment]

from dronewatch.analyzers.dns import DNS_PORT, DnsAnalyzer
from dronewatch.analyzers.ndp import ND_TYPES, NdpAnalyzer
from dronewatch.capture.base import Source
from dronewatch.capture.files import open_source
from dronewatch.core.collector import fewer_collections
from dronewatch.core.dnscache import DnsNameCache
from dronewatch.core.engine import Share
from dronewatch.core.hooks import Context, Record
from dronewatch.core.pipeline import (
    AnalysisConfig,
    Pipeline,
    ProgressFn,
    RunResult,
    RunTotals,
    feed_source,
    finish_run,
    merge_totals,
)
from dronewatch.exceptions import CaptureError
from dronewatch.geoip.null import NullResolver
from dronewatch.judge.flowlog import FlowRecord
from dronewatch.judge.monitor import FlowEnd, Monitor, Tally
from dronewatch.output.jsonl import record_line
from dronewatch.output.summary import FlowRow, SummaryCollector

logger = logging.getLogger(__name__)

BATCH = 1024
"""Items a process sends the parent at once."""

PIPE_BYTES = 4 << 20
"""What each process's pipe to the parent is asked to hold (a few batches of record lines)."""

Item = tuple[tuple[int, int, int], str | None, bytes | None, Any]
"""(position, log, JSONL line (`record_line`) or None, the record or None) for a record;
(position, None, None, FlowEnd) for a finished flow."""

_CONFIG: AnalysisConfig | None = None
"""The configuration a forked process inherits (rule packs and GeoIP loaded once)."""


def run_split(
    path: str,
    processes: int,
    emit: Callable[[Record], None],
    config: AnalysisConfig | None = None,
    *,
    lines: Callable[[str, bytes, int], None] | None = None,
    records: Callable[[Record], None] | None = None,
    summary: SummaryCollector | None = None,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Analyze the capture file `path` in `processes` processes.

    The records the processes make reach `lines(log, data, count)` as JSONL lines (when given)
    and `records` as records (when given: sending them costs about as much as making them); when
    `records` adds them to the terminal summary `summary`, it gets of each flow record what the
    summary reads (`FlowRow`), and the records of the logs it only counts
    (`SummaryCollector.reads`) are counted by the processes instead and the counts added to it
    at the end; the records the parent makes (egress, capture, devices, alerts, verdicts)
    reach `emit`. Raises
    CaptureError when the file cannot be read."""
    global _CONFIG
    if processes < 2:
        raise ValueError("run_split needs at least 2 processes")
    config = config or AnalysisConfig()
    source = open_source(path)  # a file that cannot be opened fails here, in the parent
    _CONFIG = config
    wants = _Wants(lines is not None, records is not None, summary is not None)
    ctx = multiprocessing.get_context("fork")
    inbox = _Inbox()
    procs = []
    try:
        for k in range(processes):
            here, there = ctx.Pipe(duplex=False)
            _widen(here)
            proc = ctx.Process(
                target=_work,
                args=(path, k, processes, there, wants),
                name=f"dronewatch-share-{k}",
                daemon=True,
            )
            proc.start()
            there.close()
            procs.append(proc)
            inbox.add(k, here)
        with fewer_collections():  # the parent's books grow as one process's would
            return _merge(processes, inbox, emit, config, lines, records, summary, progress, source)
    finally:
        _CONFIG = None
        inbox.close()
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()


def _widen(conn: Connection) -> None:
    """Make the pipe hold `PIPE_BYTES` (Linux, `F_SETPIPE_SZ`; as much as the system allows):
    a process then writes a batch without waiting for the parent, which reads its pipes
    between the chunks it merges (`_Inbox`). Elsewhere, or when refused, the pipe keeps its
    size."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if setsize is None:
        return
    for size in (PIPE_BYTES, _pipe_max()):
        try:
            fcntl.fcntl(conn.fileno(), setsize, size)
            return
        except OSError:
            continue


def _pipe_max() -> int:
    """The largest pipe an unprivileged process may ask for (`/proc/sys/fs/pipe-max-size`)."""
    try:
        with open("/proc/sys/fs/pipe-max-size", encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 65536


class _Inbox:
    """The processes' messages, read from their pipes as they come: (k, message), and (k, None)
    once process k's pipe is closed. The parent reads between the chunks it merges; the pipes
    are wide enough (`_widen`) that a process seldom waits for it, and no reader thread
    contends with the merge for the interpreter lock."""

    def __init__(self) -> None:
        self._open: dict[Connection, int] = {}
        self._ready: deque[tuple[int, bytes | None]] = deque()

    def add(self, k: int, conn: Connection) -> None:
        self._open[conn] = k

    def get(self) -> tuple[int, bytes | None]:
        """The next message, waiting for one when none is at hand."""
        while not self._ready:
            if not self._open:
                raise RuntimeError("every process's pipe is closed")
            for conn in wait(list(self._open)):
                assert isinstance(conn, Connection)
                try:
                    self._ready.append((self._open[conn], conn.recv_bytes()))
                except (EOFError, OSError):
                    self._ready.append((self._open.pop(conn), None))
                    conn.close()
        return self._ready.popleft()

    def close(self) -> None:
        for conn in self._open:
            conn.close()
        self._open.clear()


class _Streams:
    """The processes' item streams, read from the inbox in the order messages come, and handed
    on in capture order a chunk at a time (`chunks`)."""

    def __init__(self, processes: int, inbox: _Inbox) -> None:
        self.inbox = inbox
        self.pending: list[list[Item]] = [[] for _ in range(processes)]
        """Each process's items received and not yet handed on, in its order."""
        self.last: list[tuple[int, int, int] | None] = [None] * processes
        """The position of the last item each process sent."""
        self.totals: list[RunTotals | None] = [None] * processes
        self.tallies: list[Tally | None] = [None] * processes
        """Each process's counts across its flows (`Monitor.tally_state`)."""
        self.counted: list[Counter[str] | None] = [None] * processes
        """Each process's records by log that the summary only counts (`run_split`)."""
        self.errors: list[str | None] = [None] * processes
        self.done = [False] * processes
        self.stats: Any = None
        self.total: int | None = None
        self.count = 0
        """Packets process 0 has read, and the bytes of the file (progress)."""
        self.read = 0

    def chunks(self) -> Iterator[list[Item]]:
        """Every item of every process, in capture order (by position; between processes at one
        position, the lower process first, as `heapq.merge` orders them), in chunks: after each
        message, the items before the position every process still sending has reached. One
        sort of each chunk merges the processes' runs in C, instead of one Python step per
        item (a flood of short flows makes two items a flow)."""
        pending, last, done = self.pending, self.last, self.done
        while not all(done):
            self._receive()
            if any(p is None for k, p in enumerate(last) if not done[k]):
                continue  # a process still sending has sent nothing: anything may come first
            ahead = [p for k, p in enumerate(last) if not done[k] and p is not None]
            if not ahead:
                continue
            mark = min(ahead)
            chunk: list[Item] = []
            for items in pending:
                if items:
                    cut = bisect_left(items, mark, key=_POSITION)  # only those before the mark
                    chunk += items[:cut]
                    del items[:cut]
            if chunk:
                chunk.sort(key=_POSITION)  # stable: at one position, the lower process first
                yield chunk
        chunk = [item for items in pending for item in items]
        if chunk:
            chunk.sort(key=_POSITION)
            yield chunk

    def _receive(self) -> None:
        k, message = self.inbox.get()
        if message is None:
            if not self.done[k]:
                self.done[k] = True
                if self.totals[k] is None and self.errors[k] is None:
                    self.errors[k] = f"process {k} of the shared capture ended without a result"
            return
        kind, payload = pickle.loads(message)
        if kind == "items":
            items, packets, read = payload
            if items:
                self.pending[k] += items
                self.last[k] = items[-1][0]
            if k == 0:
                self.count, self.read = packets, read
        elif kind == "tally":
            self.tallies[k] = payload
        elif kind == "counted":
            self.counted[k] = payload
        elif kind == "totals":
            self.totals[k] = payload
            if k == 0:  # process 0 read the whole file: the progress line's last share
                self.count, self.read = payload.stats.packets, self.total or self.read
        elif kind == "error":
            self.errors[k] = payload
        else:  # "crash": a bug; the traceback goes to the log, not to the user's terminal
            logger.error("process %d of the shared capture failed:\n%s", k, payload)
            self.errors[k] = f"process {k} failed: {payload.strip().splitlines()[-1]}"

    def progress(self) -> tuple[int, int | None]:
        """Bytes of the file read so far by process 0, and its size (`Source.progress`)."""
        return self.read, self.total


def _merge(
    processes: int,
    inbox: _Inbox,
    emit: Callable[[Record], None],
    config: AnalysisConfig,
    lines: Callable[[str, bytes, int], None] | None,
    records: Callable[[Record], None] | None,
    summary: SummaryCollector | None,
    progress: ProgressFn | None,
    source: Any,
) -> RunResult:
    streams = _Streams(processes, inbox)
    streams.stats = source.stats
    streams.total = source.progress()[1] or _size(source.stats.name)
    monitor = Monitor(
        Context(emit=emit, dns=DnsNameCache()),
        config.policy,
        config.classifier,
        config.resolver or NullResolver(),
    )
    book = monitor.book
    reported = 0
    for chunk in streams.chunks():
        by_log: dict[str, list[bytes]] = {}
        for _, log, line, obj in chunk:
            if log is None:
                book(obj)  # what depends on the order; it writes nothing
                continue
            if line is not None and lines is not None:
                text = by_log.get(log)
                if text is None:
                    by_log[log] = [line]
                else:
                    text.append(line)
            if obj is not None and records is not None:
                records(obj)
        if lines is not None:
            for log, text in by_log.items():  # each file's lines in order, one write a chunk
                lines(log, b"".join(text), len(text))
        if progress is not None and streams.count - reported >= 65536:
            reported = streams.count
            progress(cast(Source, streams), reported)  # what Progress reads: stats, progress()
    failed = [e for e in streams.errors if e is not None]
    if failed:
        raise CaptureError(failed[0])
    for tally in streams.tallies:
        if tally is not None:
            monitor.add_tally(tally)
    if summary is not None:
        for counts in streams.counted:
            if counts is not None:
                summary.add_counts(counts)
    totals = [t for t in streams.totals if t is not None]
    return finish_run(merge_totals(totals), monitor, emit)


_POSITION = itemgetter(0)


def _size(path: str) -> int | None:
    """The file's size for the progress line; None when it cannot be read (the processes say
    why)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return None


class _Wants(NamedTuple):
    """What the parent takes of a process's records."""

    lines: bool
    """Their JSONL lines (`record_line`)."""
    records: bool
    """The records themselves."""
    for_summary: bool
    """The records are for the terminal summary, which only counts most logs."""


def _work(path: str, k: int, processes: int, conn: Connection, wants: _Wants) -> None:
    """Process k: its flows of the capture, sent to the parent as tagged items."""
    try:
        with fewer_collections():
            _share(path, k, processes, conn, wants)
    except CaptureError as exc:
        conn.send_bytes(pickle.dumps(("error", str(exc))))
    except BaseException:
        conn.send_bytes(pickle.dumps(("crash", traceback.format_exc())))
    finally:
        conn.close()


def _share(path: str, k: int, processes: int, conn: Connection, wants: _Wants) -> None:
    want_lines, want_records = wants.lines, wants.records
    config = _CONFIG or AnalysisConfig()
    source = open_source(path)
    items: list[Item] = []
    counted: Counter[str] | None = Counter() if want_records and wants.for_summary else None
    reads = SummaryCollector.reads
    send = conn.send_bytes
    state = [0, 0]  # packets and bytes read (process 0: the parent's progress)

    def flush() -> None:
        send(pickle.dumps(("items", (items, *state)), pickle.HIGHEST_PROTOCOL))
        items.clear()

    def emit(record: Record) -> None:
        if not (want_lines or want_records):
            return  # the parent writes and keeps none of them (`analyze --quiet`, no `--out`)
        flow = record_flow()
        if flow is not None and foreign and flow.uid in foreign:
            return  # a flow made for its facts: its owner writes it
        taken: Any = record if want_records else None
        if counted is not None:
            if isinstance(record, FlowRecord):
                taken = FlowRow.of(record)  # what the summary reads of it
            elif not reads(record):
                counted[record.log] += 1  # all the summary takes of it
                if not want_lines:
                    return
                taken = None
        items.append(
            (
                position(),
                record.log,
                record_line(record) if want_lines else None,
                taken,
            )
        )
        if len(items) >= BATCH:
            flush()

    def handoff(end: FlowEnd) -> None:
        items.append((position(), None, None, end))
        if len(items) >= BATCH:
            flush()

    # DNS answers name the flows after them, Neighbor Discovery says which addresses are on the
    # link: every process reads every DNS flow and every Neighbor Discovery message.
    share = Share(k, processes, DNS_PORT, frozenset({DnsAnalyzer.name, NdpAnalyzer.name}), ND_TYPES)
    pipe = Pipeline(emit, config, share=share, handoff=handoff)

    engine = pipe.engine
    foreign = engine.foreign
    record_flow, position = engine.record_flow, engine.position

    def progress(_: Any, count: int) -> None:
        state[:] = count, source.progress()[0]
        flush()  # the parent's progress line moves with the packets read, not with the records

    feed_source(pipe, source, config, progress if k == 0 else None, 65536)
    totals = pipe.end(source.stats)
    flush()
    if counted is not None:
        send(pickle.dumps(("counted", counted), pickle.HIGHEST_PROTOCOL))
    send(pickle.dumps(("tally", pipe.monitor.tally_state()), pickle.HIGHEST_PROTOCOL))
    send(pickle.dumps(("totals", totals), pickle.HIGHEST_PROTOCOL))
