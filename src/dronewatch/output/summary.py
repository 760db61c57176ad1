"""The readable per-device, per-flow summary that `dronewatch analyze` prints."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple, TextIO, cast

from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import CaptureRecord
from dronewatch.geoip.onlink import on_link_text
from dronewatch.judge.alert import Alert, is_lookup
from dronewatch.judge.flowlog import FlowRecord
from dronewatch.judge.monitor import DeviceRecord, VerdictRecord
from dronewatch.judge.verdict import CLEAN, INCOMPLETE, NOT_APPLICABLE, VIOLATION, encrypted_text
from dronewatch.output.terminal import SafeWriter, inline

_ZERO_MAC = "00:00:00:00:00:00"
_PLACEHOLDER_IPS = ("0.0.0.0", "::")


def _category(rec: FlowRecord | FlowRow) -> str:
    """`category (vendor)` of a classified flow, `-` otherwise."""
    if not rec.category:
        return "-"
    if rec.vendor and rec.vendor not in ("any", "unknown"):
        return _clip(f"{rec.category} ({rec.vendor})", 30)
    return rec.category


def _primary(ips: Counter[str]) -> str:
    """The address to name a device by: its busiest, preferring routable over link-local ones."""

    def rank(ip: str) -> tuple[int, int]:
        weak = ip in _PLACEHOLDER_IPS or ip.startswith(("fe80:", "169.254."))
        return (0 if weak else 1, ips[ip])

    return max(ips, key=rank)


MAX_IPS = 64
"""Addresses kept per device (`DeviceSummary.ips`)."""


@dataclass(slots=True)
class DeviceSummary:
    """Totals for one originating host, and its largest flows."""

    ip: str
    mac: str | None = None
    ips: Counter[str] = field(default_factory=Counter)
    """Bytes sent from each address of the device (one MAC can use several), for the first
    `MAX_IPS` addresses."""
    unlisted_flows: int = 0
    """Flows from addresses past the first `MAX_IPS` (a router's MAC under a flood of spoofed
    sources): counted, the addresses not kept, so the summary stays bounded."""
    hostname: str | None = None
    flows: int = 0
    pkts_out: int = 0
    pkts_in: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    top: list[tuple[int, int, FlowRecord | FlowRow]] = field(default_factory=list)


MAX_DEVICES = 20
"""Devices the summary lists by default, those that sent most first (`analyze --devices`); as
many verdicts, the ones that need attention first."""

MAX_ALERTS = 50
"""Alerts the summary lists by default, the most severe first (`analyze --alerts`)."""

_VERDICT_RANK = {VIOLATION: 0, INCOMPLETE: 1, CLEAN: 2, NOT_APPLICABLE: 3}
"""The order the summary lists verdicts in: what needs attention first."""


class FlowRow(NamedTuple):
    """What the summary reads of a flow record (`SummaryCollector.add` takes either): what a
    process of a shared capture sends the parent for the summary instead of the record's 45
    fields."""

    orig_mac: str | None
    orig_h: str
    orig_pkts: int
    resp_pkts: int
    orig_bytes: int
    resp_bytes: int
    proto: str
    resp_h: str
    resp_p: int
    service: str | None
    link: str | None
    server_name: str | None
    category: str | None
    vendor: str | None
    duration_s: float

    @property
    def log(self) -> str:
        return FlowRecord.log

    @classmethod
    def of(cls, record: FlowRecord) -> FlowRow:
        return cls._make(_ROW_FIELDS(record))


_ROW_FIELDS = attrgetter(*FlowRow._fields)

_READ_TYPES = (FlowRecord, FlowRow, CaptureRecord, VerdictRecord, Alert, DeviceRecord)
_READ_LOGS = frozenset({"remoteid", "dji_droneid", "dhcp"})
"""What `SummaryCollector.add` reads of beyond a log's count: these record types and logs."""


class SummaryCollector:
    """Consumes records and keeps bounded totals for the terminal summary: every device's totals
    and largest flows, and of the alerts and verdicts only those it will list (the others
    counted), so a capture of a whole site's mirror port prints a page, not a log."""

    def __init__(
        self, top_flows: int = 15, max_devices: int = MAX_DEVICES, max_alerts: int = MAX_ALERTS
    ) -> None:
        self.top_flows = top_flows
        self.max_devices = max_devices
        self.max_alerts = max_alerts
        self.alerts_seen = 0
        self.verdicts_seen: Counter[str] = Counter()
        self.devices: dict[str, DeviceSummary] = {}
        self.captures: list[CaptureRecord] = []
        self.logs: Counter[str] = Counter()
        self._seq = 0
        self._hostnames: dict[str, str] = {}
        self.verdicts: list[VerdictRecord] = []
        self.alerts: list[Alert] = []
        self.broadcasts: dict[str, set[str]] = {}
        self.not_judged: list[DeviceRecord] = []
        """Local hosts considered and not taken for ground stations (when none was)."""

    @staticmethod
    def reads(record: Record | FlowRow) -> bool:
        """Whether `add` reads more of a record than its log's count: a process of a shared
        capture sends the parent those and counts the others itself (`add_counts`)."""
        return isinstance(record, _READ_TYPES) or record.log in _READ_LOGS

    def add_counts(self, counts: Counter[str]) -> None:
        """Records by log that were counted elsewhere, as if each had been added here."""
        self.logs.update(counts)

    def add(self, record: Record | FlowRow) -> None:
        self.logs[record.log] += 1
        if isinstance(record, (FlowRecord, FlowRow)):
            self._flow(record)
        elif not self.reads(record):
            return
        elif isinstance(record, CaptureRecord):
            self.captures.append(record)
        elif isinstance(record, VerdictRecord):
            self.verdicts_seen[record.verdict] += 1
            self.verdicts.append(record)
            if len(self.verdicts) > 4 * self.max_devices + 64:
                self.verdicts = self._listed_verdicts()
        elif isinstance(record, Alert):
            self.alerts_seen += 1
            self.alerts.append(record)
            if len(self.alerts) > 4 * self.max_alerts + 64:
                self.alerts = self._listed_alerts()
        elif isinstance(record, DeviceRecord):
            if record.not_judged:
                self.not_judged.append(record)
        elif record.log in ("remoteid", "dji_droneid"):
            # The early 90:3A:E6 beacons carry no serial: name the transmitter by its MAC.
            serial = getattr(record, "serial", None)
            name = str(serial) if serial else f"MAC {getattr(record, 'mac', '?')}"
            if len(self.broadcasts.setdefault(record.log, set())) < 50:
                self.broadcasts[record.log].add(name)
        elif record.log == "dhcp":
            mac = getattr(record, "client_mac", None)
            host = getattr(record, "hostname", None)
            if host and mac:
                dev = self.devices.get(mac)  # a device with a MAC is kept under it
                if dev is not None and dev.mac == mac:
                    dev.hostname = host
                self._hostnames[mac] = host

    def _listed_alerts(self) -> list[Alert]:
        """The alerts the summary lists, in its order: the most severe first."""
        return sorted(self.alerts, key=_alert_order)[: self.max_alerts]

    def _listed_verdicts(self) -> list[VerdictRecord]:
        """The verdicts the summary lists: violations, then incomplete, clean and not applicable
        ones, each kind in the order they came."""
        ranked = sorted(self.verdicts, key=lambda v: _VERDICT_RANK.get(v.verdict, 0))
        return ranked[: self.max_devices]

    def _flow(self, rec: FlowRecord | FlowRow) -> None:
        # One device per MAC (its DHCP, link-local and routable addresses together); per address
        # when the capture has no usable MAC (raw IP, loopback).
        mac = rec.orig_mac if rec.orig_mac and rec.orig_mac != _ZERO_MAC else None
        key = mac or rec.orig_h
        dev = self.devices.get(key)
        if dev is None:
            dev = DeviceSummary(ip=rec.orig_h, mac=rec.orig_mac)
            self.devices[key] = dev
        if rec.orig_h in dev.ips or len(dev.ips) < MAX_IPS:
            dev.ips[rec.orig_h] += rec.orig_bytes + 1
        else:
            dev.unlisted_flows += 1
        dev.flows += 1
        dev.pkts_out += rec.orig_pkts
        dev.pkts_in += rec.resp_pkts
        dev.bytes_out += rec.orig_bytes
        dev.bytes_in += rec.resp_bytes
        self._seq += 1
        item = (rec.orig_bytes + rec.resp_bytes, -self._seq, rec)
        if len(dev.top) < self.top_flows:
            heapq.heappush(dev.top, item)
        else:
            heapq.heappushpop(dev.top, item)

    def render(self, stream: TextIO) -> None:
        """Print captures, then devices by bytes sent, each with its largest flows; wire text
        is made printable first, each value on its own line (`dronewatch.output.terminal`)."""
        out = cast(TextIO, SafeWriter(stream))
        for cap in self.captures:
            out.write(_capture_line(cap) + "\n")
        if not self.devices:
            out.write("No IP flows.\n")
        for dev in self.devices.values():
            dev.ip = _primary(dev.ips)  # once, here: a MAC may have sent from many addresses
        devices = sorted(self.devices.values(), key=lambda d: (-d.bytes_out, d.ip))
        listed, unlisted = devices[: self.max_devices], devices[self.max_devices :]
        for dev in listed:
            host = dev.hostname or (self._hostnames.get(dev.mac, "") if dev.mac else "")
            ident = ", ".join(x for x in (dev.mac, host and f"hostname {inline(host)}") if x)
            also = sorted(ip for ip in dev.ips if ip != dev.ip)
            if also:
                if dev.unlisted_flows:
                    also.append(f"{_n(dev.unlisted_flows)} flows from addresses not listed")
                ident = ", ".join(x for x in (ident, f"also {', '.join(also)}") if x)
            out.write(
                f"\nDevice {dev.ip}{f' ({ident})' if ident else ''}: {dev.flows} flows, "
                f"{_n(dev.pkts_out)}/{_n(dev.pkts_in)} packets out/in, "
                f"{_bytes(dev.bytes_out)} out, {_bytes(dev.bytes_in)} in\n"
            )
            rows = [r for _, _, r in sorted(dev.top, key=lambda t: (-t[0], -t[1]))]
            table = [
                (
                    "PROTO",
                    "DESTINATION",
                    "PORT",
                    "SERVICE",
                    "NAME",
                    "CATEGORY",
                    "PKTS OUT/IN",
                    "BYTES OUT/IN",
                    "DURATION",
                )
            ]
            for r in rows:
                table.append(
                    (
                        r.proto,
                        r.resp_h,
                        str(r.resp_p),
                        r.service or r.link or "-",
                        _clip(r.server_name or "-", 36),
                        _category(r),
                        f"{_n(r.orig_pkts)}/{_n(r.resp_pkts)}",
                        f"{_bytes(r.orig_bytes)}/{_bytes(r.resp_bytes)}",
                        f"{r.duration_s:.1f}s",
                    )
                )
            _table(out, table, indent="  ")
            if dev.flows > len(rows):
                out.write(f"  ... and {dev.flows - len(rows)} smaller flows\n")
        if unlisted:
            flows = sum(d.flows for d in unlisted)
            sent = sum(d.bytes_out for d in unlisted)
            out.write(
                f"\n... and {_n(len(unlisted))} more devices ({_n(flows)} flows, {_bytes(sent)} "
                "out): --devices N lists more; with --out, every flow is in flows.jsonl\n"
            )
        for log, serials in sorted(self.broadcasts.items()):
            kind = "Remote ID" if log == "remoteid" else "DJI DroneID"
            names = inline(", ".join(sorted(serials)))
            out.write(f"\nAircraft broadcasts ({kind}, not leaks): {names}\n")
        if self.alerts:
            out.write(f"\nAlerts ({_n(self.alerts_seen)}):\n")
            arows: list[tuple[str, ...]] = [
                (
                    "SEVERITY",
                    "DEVICE",
                    "CATEGORY",
                    "DESTINATION",
                    "COUNTRY/ASN",
                    "BYTES OUT",
                    "RULE",
                )
            ]
            for a in self._listed_alerts():
                where = (
                    "/".join(x for x in (a.dest_country, a.dest_asn and f"AS{a.dest_asn}") if x)
                    or "-"
                )
                dest = a.dest_name or a.dest_ip or "-"
                if is_lookup(a):
                    dest = f"DNS lookup {dest}"
                elif a.dest_port:
                    dest = f"{dest}:{a.dest_port}"
                arows.append(
                    (
                        a.severity,
                        a.device_ip,
                        a.category,
                        _clip(dest, 44),
                        where,
                        _bytes(a.bytes_out),
                        a.rule_id or "-",
                    )
                )
            _table(out, arows, indent="  ", numeric={5})
            if self.alerts_seen > self.max_alerts:
                out.write(
                    f"  ... and {_n(self.alerts_seen - self.max_alerts)} more alerts: --alerts N "
                    "lists more; with --out, every alert is in alerts.jsonl\n"
                )
        if self.verdicts:
            out.write("\nVerdicts:\n")
            listed_verdicts = self._listed_verdicts()
            for v in listed_verdicts:
                who = v.device_ip + (f" ({v.device_name})" if v.device_name else "")
                out.write(f"  {inline(who)}: {v.verdict.upper()}: {inline(v.msg)}\n")
            more = self.verdicts_seen - Counter(v.verdict for v in listed_verdicts)
            if more:
                kinds = ", ".join(
                    f"{_n(n)} {kind.replace('_', ' ')}"
                    for kind, n in sorted(more.items(), key=lambda kv: _VERDICT_RANK.get(kv[0], 0))
                )
                out.write(
                    f"  ... and {_n(more.total())} more verdicts ({kinds}): --devices N lists "
                    "more; with --out, every verdict is in verdicts.jsonl\n"
                )
            if any(cap.analyzer_errors for cap in self.captures):
                out.write(
                    "  (inspection was incomplete: an analyzer failed, so traffic it would have "
                    "named may be missing from these verdicts)\n"
                )
        elif self.captures:
            out.write(
                "\nVerdicts: none: no ground station was recognised and no device was named\n"
            )
            if self.not_judged:
                out.write("  Local hosts considered, busiest first:\n")
                for d in self.not_judged:
                    who = d.ip + (f" ({d.hostname})" if d.hostname else "")
                    out.write(f"    {inline(who)}: not judged: {inline(d.not_judged or '')}\n")
            out.write(
                "  Name the device under test to judge it: --device IP|MAC|CIDR|NAME "
                "(or a device in --policy)\n"
            )
        if self.logs:
            parts = ", ".join(f"{k} {v}" for k, v in sorted(self.logs.items()))
            out.write(f"\nRecords: {parts}\n")


def _capture_line(cap: CaptureRecord) -> str:
    span = (cap.last_ts - cap.ts) if cap.last_ts else 0.0
    links = ", ".join(f"{k} {_n(v)}" for k, v in cap.linktypes.items())
    drops = "drops not reported" if cap.drops is None else f"{_n(cap.drops)} drops"
    line = (
        f"Capture {inline(cap.source)} ({cap.format or 'unknown'}): {_n(cap.packets)} packets over "
        f"{span:.1f}s [{links or 'none'}], {_n(cap.ip_packets)} IP, {_n(cap.flows)} flows, {drops}"
    )
    if cap.truncated:
        line += f", {_n(cap.truncated)} cut by snap length"
    if cap.malformed:
        line += f", {_n(cap.malformed)} malformed"
    if cap.bad_checksums:
        line += f", {_n(cap.bad_checksums)} with a wrong checksum (dropped, as their receiver did)"
    encrypted = cap.non_ip.get("dot11-protected")
    if encrypted:
        line += ", " + encrypted_text(encrypted)
    if cap.evicted_flows:
        line += f", {_n(cap.evicted_flows)} flows evicted from a full flow table"
    if cap.gap_flows:
        line += (
            f", {_n(cap.gap_flows)} TCP flows with content gaps ({_bytes(cap.missed_bytes or 0)} "
            "acknowledged but not captured)"
        )
    if cap.inspection_stopped:
        line += (
            f", inspection stopped on {_n(cap.inspection_stopped)} flows (their analyzers waited "
            "for an answer that never came)"
        )
    on_link = on_link_text(cap.on_link, cap.on_link_refused)
    if on_link:
        line += f"\n  {inline(on_link)}"
    for err in cap.errors:
        line += f"\n  DAMAGED: {inline(err)} (records before it kept)"
    if cap.analyzer_errors:
        failed = ", ".join(f"{hook} {_n(n)}" for hook, n in cap.analyzer_errors.items())
        line += (
            f"\n  INSPECTION INCOMPLETE: analyzers failed ({failed}); their records and facts may "
            "be missing (the log has the first failure of each)"
        )
    return line


_SEV = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def _alert_order(a: Alert) -> tuple[int, str, str, str]:
    """The order the summary lists alerts in: the most severe first, then by device, category
    and destination."""
    return (-_SEV.get(a.severity, 0), a.device_ip, a.category, a.dest_name or "")


def _table(
    out: TextIO,
    rows: Sequence[tuple[str, ...]],
    indent: str = "",
    numeric: frozenset[int] | set[int] = frozenset({2, 6, 7, 8}),
) -> None:
    rows = [tuple(inline(cell) for cell in row) for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.write(indent + "  ".join(cells).rstrip() + "\n")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _n(value: int) -> str:
    return f"{value:,}"


def _bytes(value: int) -> str:
    if value < 1024:
        return f"{value}B"
    scaled = float(value)
    for unit in ("KB", "MB", "GB", "TB"):
        scaled /= 1024
        if scaled < 1024 or unit == "TB":
            break
    return f"{scaled:.1f}{unit}"
