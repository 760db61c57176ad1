"""`dronewatch report`: what a lab tester hands over, gathered from the records of a run.

`ReportCollector` takes the records the pipeline emits, exactly those `analyze` writes (capture,
verdicts, alerts, egress, flows, dns, devices), and keeps what the report shows, bounded by the
destinations and names seen rather than by packets: the verdicts and alerts as they are, the
egress observations folded per destination, the DNS lookups per name. Nothing is judged again:
a verdict in the report is the `verdicts.jsonl` record of the same run. `report_html.render`
turns the collected data into the one self-contained HTML file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dronewatch.analyzers.dns import DnsRecord
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import CaptureRecord
from dronewatch.judge.alert import Alert
from dronewatch.judge.egress import KIND_FLOW, KIND_LOOKUP, EgressRecord
from dronewatch.judge.flowlog import FlowRecord
from dronewatch.judge.monitor import DeviceRecord, VerdictRecord
from dronewatch.output.diff import EgressCollector
from dronewatch.output.timeline import EgressSpan

MAX_IPS = 8
"""Destination addresses kept per destination (the evidence table lists them)."""
MAX_ANSWERS = 8
"""DNS answers kept per name."""
NAME_FACTS = ("sni", "quic_sni", "http_host", "dns_name")
"""The evidence facts that name a destination, as the evidence table shows them."""


@dataclass(slots=True)
class CaptureInfo:
    """One capture file of the report: where it is, its checksum, and what reading it gave."""

    path: str
    sha256: str | None
    """Of the file as read (None for stdin)."""
    size: int | None
    ldm: str
    """The local-data-mode setting it was judged with, in words."""
    record: CaptureRecord | None = None
    flows: int = 0
    evicted: int = 0
    """Flows the flow table evicted before they ended (their counters may be split)."""
    end_reasons: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class DestinationFacts:
    """Everything one device sent to one destination in one category, in one capture."""

    capture: int
    host_ip: str
    dest: str
    category: str
    vendor: str | None = None
    app: str | None = None
    rule_id: str | None = None
    country: str | None = None
    asn: int | None = None
    as_org: str | None = None
    ips: list[str] = field(default_factory=list)
    ports: set[tuple[int, str]] = field(default_factory=set)
    names: dict[str, str] = field(default_factory=dict)
    """The first SNI, QUIC SNI, HTTP host and DNS name seen."""
    bytes_out: int = 0
    bytes_in: int = 0
    flows: int = 0
    answered: int = 0
    """Flows that got any packet back."""
    first: float = float("inf")
    last: float = float("-inf")


@dataclass(slots=True)
class Attempt:
    """The connections (or vendor-name lookups) one host made to one destination and port."""

    capture: int
    host_ip: str
    kind: str
    """flow (a connection or datagrams off the host) or lookup (a vendor cloud name asked)."""
    dest: str
    dest_ip: str
    port: int
    proto: str
    category: str
    count: int = 0
    answered: int = 0
    bytes_out: int = 0
    first: float = float("inf")
    last: float = float("-inf")


@dataclass(slots=True)
class Lookup:
    """The DNS lookups of one name (and type) by one host, in one capture."""

    capture: int
    host_ip: str
    query: str
    qtype: str
    count: int = 0
    answered: int = 0
    rcodes: set[str] = field(default_factory=set)
    answers: list[str] = field(default_factory=list)
    first: float = float("inf")
    last: float = float("-inf")
    category: str | None = None
    """The rule category of a vendor cloud name (from its egress lookup record)."""
    vendor: str | None = None


class ReportCollector:
    """Keeps, from the records of each capture's run, what the report shows."""

    def __init__(self) -> None:
        self.captures: list[CaptureInfo] = []
        self.verdicts: list[tuple[int, VerdictRecord]] = []
        self.alerts: list[tuple[int, Alert]] = []
        self.devices: dict[tuple[int, str], DeviceRecord] = {}
        self.destinations: dict[tuple[int, str, str, str], DestinationFacts] = {}
        self.lookups: dict[tuple[int, str, str, str], Lookup] = {}
        self.vendor_names: dict[tuple[int, str], EgressRecord] = {}
        """Vendor cloud names looked up, from the monitor's lookup observations."""
        self.attempts: dict[tuple[int, str, str, str, int, str], Attempt] = {}
        self.spans: list[tuple[int, str, EgressSpan]] = []
        """(capture, host, span) of every flow that left a host: the timeline's input."""
        self.sides: list[EgressCollector] = []
        """Per capture, the off-device traffic as `dronewatch diff` compares it."""

    @property
    def current(self) -> int:
        return len(self.captures) - 1

    def begin(self, info: CaptureInfo) -> None:
        """Start collecting the records of one more capture."""
        self.captures.append(info)
        self.sides.append(EgressCollector())

    def add(self, record: Record) -> None:
        """Take one record of the current capture's run."""
        i = self.current
        if i < 0:
            raise RuntimeError("ReportCollector.begin() must come before the records")
        self.sides[i].add(record)
        if isinstance(record, FlowRecord):
            cap = self.captures[i]
            cap.flows += 1
            cap.end_reasons[record.end_reason] = cap.end_reasons.get(record.end_reason, 0) + 1
            if record.end_reason == "evicted":
                cap.evicted += 1
        elif isinstance(record, EgressRecord):
            self._egress(i, record)
        elif isinstance(record, DnsRecord):
            self._dns(i, record)
        elif isinstance(record, VerdictRecord):
            self.verdicts.append((i, record))
        elif isinstance(record, Alert):
            self.alerts.append((i, record))
        elif isinstance(record, DeviceRecord):
            self.devices[(i, record.ip)] = record
        elif isinstance(record, CaptureRecord):
            self.captures[i].record = record

    def _egress(self, i: int, r: EgressRecord) -> None:
        dest = r.dest_name or r.dest_ip
        akey = (i, r.host_ip, r.kind, dest, r.dest_port, r.proto)
        at = self.attempts.get(akey)
        if at is None:
            at = self.attempts[akey] = Attempt(
                i, r.host_ip, r.kind, dest, r.dest_ip, r.dest_port, r.proto, r.category
            )
        at.count += 1
        at.answered += r.pkts_in > 0
        at.bytes_out += r.bytes_out
        at.first = min(at.first, r.ts)
        at.last = max(at.last, r.last_ts)
        if r.kind == KIND_LOOKUP:
            self.vendor_names.setdefault((i, r.dest_name or ""), r)
            return
        if r.kind != KIND_FLOW:
            return
        key = (i, r.host_ip, dest, r.category)
        d = self.destinations.get(key)
        if d is None:
            d = self.destinations[key] = DestinationFacts(
                capture=i,
                host_ip=r.host_ip,
                dest=dest,
                category=r.category,
                vendor=r.vendor,
                app=r.app,
                rule_id=r.rule_id,
                country=r.dest_country,
                asn=r.dest_asn,
                as_org=r.dest_as_org,
            )
        if r.dest_ip not in d.ips and len(d.ips) < MAX_IPS:
            d.ips.append(r.dest_ip)
        d.ports.add((r.dest_port, r.proto))
        for k in NAME_FACTS:
            v = r.evidence.get(k)
            if v:
                d.names.setdefault(k, v)
        d.bytes_out += r.bytes_out
        d.bytes_in += r.bytes_in
        d.flows += 1
        d.answered += r.pkts_in > 0
        d.first = min(d.first, r.ts)
        d.last = max(d.last, r.last_ts)
        if r.bytes_out > 0:
            self.spans.append((i, r.host_ip, EgressSpan(r.ts, r.last_ts, r.bytes_out, r.category)))

    def _dns(self, i: int, r: DnsRecord) -> None:
        if not r.query:
            return
        qtype = r.qtype_name or "?"
        key = (i, r.orig_h, r.query, qtype)
        lk = self.lookups.get(key)
        if lk is None:
            lk = self.lookups[key] = Lookup(capture=i, host_ip=r.orig_h, query=r.query, qtype=qtype)
        lk.count += 1
        lk.answered += r.answered
        if r.rcode_name:
            lk.rcodes.add(r.rcode_name)
        for a in r.answers:
            if a not in lk.answers and len(lk.answers) < MAX_ANSWERS:
                lk.answers.append(a)
        lk.first = min(lk.first, r.ts)
        lk.last = max(lk.last, r.ts)

    def finish_lookups(self) -> list[Lookup]:
        """The lookups, each vendor cloud name marked with its category and vendor, busiest
        first within each capture."""
        for lk in self.lookups.values():
            named = self.vendor_names.get((lk.capture, lk.query))
            if named is not None:
                lk.category = named.category
                lk.vendor = named.vendor
        return sorted(
            self.lookups.values(), key=lambda x: (x.capture, x.category is None, -x.count, x.query)
        )
