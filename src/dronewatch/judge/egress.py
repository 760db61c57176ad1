"""What left one device for one destination and category: the unit an alert is raised on.

The monitor turns each finished flow that crossed the local boundary, each connection off the local
network that got no answer, and each name that is not local a local host looked up, into one
`EgressRecord` (egress.jsonl): the observation, with the classification,
evidence and destination facts it needs. `EgressBook` folds observations into one `Egress` per
(device, destination, category, note, LDM state), and `judge_device` turns a device's entries into
its alerts under its policy. `dronewatch analyze` and the alert service both run exactly this code
over the same records, so they raise the same alerts whatever order the records arrive in.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dronewatch.core.hooks import Record
from dronewatch.geoip.base import GeoInfo
from dronewatch.judge.alert import (
    NOTE_ATTEMPT,
    NOTE_DNS,
    NOTE_LEAK,
    NOTE_OTHER_APP,
    Alert,
    alert_id,
)
from dronewatch.judge.classify import Classification
from dronewatch.judge.policy import DevicePolicy

KIND_FLOW = "flow"
"""An egress observation of a flow: bytes the host sent off the local network."""
KIND_LOOKUP = "lookup"
"""An egress observation of a DNS lookup, by a local host, of a name that is not local: a
drone vendor's name (`ldm.vendor_dns_lookup`) or any other (`ldm.egress_attempt`)."""
KIND_ATTEMPT = "attempt"
"""An egress observation of a connection off the local network that nothing answered and that
could not have carried data (`unanswered_attempt`): an `ldm.egress_attempt`."""

ATTEMPT_MAX_UDP_BYTES = 512
"""Unanswered UDP of an unrecognised protocol is an attempt up to this many payload bytes; more
could hold a flight log or a photo's worth of data, so it counts as data that left."""
ATTEMPT_UDP_SERVICES = frozenset({"dns", "quic", "dhcp", "ntp", "stun"})
"""UDP protocols whose opening messages carry no user data: unanswered, they are attempts
whatever their size (a QUIC Initial is padded to 1,200 bytes and retried)."""


def unanswered_attempt(proto: str, service: str, pkts_in: int, payload_out: int) -> bool:
    """Whether a flow off the local network was only an attempt: nothing came back, and what went
    out could not have carried data (TCP without payload: SYNs; ICMP; UDP of a handshake
    protocol, or of at most `ATTEMPT_MAX_UDP_BYTES`). A mirror port that sees one direction only
    sees no answers either: TCP with payload and bigger UDP still count as data that left."""
    if pkts_in:
        return False
    if proto == "tcp":
        return payload_out == 0
    if proto == "udp":
        return service in ATTEMPT_UDP_SERVICES or payload_out <= ATTEMPT_MAX_UDP_BYTES
    return proto in ("icmp", "icmp6")


MAX_UIDS = 20
"""Flow uids (and Community IDs) kept per alert as evidence."""


@dataclass(slots=True)
class Egress:
    """Traffic from one host to one destination in one category, with one LDM state."""

    host_ip: str
    host_mac: str | None
    dest: str
    category: str
    note: str
    ldm: bool
    first: float
    last: float
    kind: str = KIND_FLOW
    """What the entry counts: flows, lookups or attempts (`EgressRecord.kind`)."""
    dest_ip: str | None = None
    dest_port: int | None = None
    proto: str | None = None
    dest_name: str | None = None
    cls: Classification | None = None
    geo: GeoInfo | None = None
    bytes_out: int = 0
    bytes_in: int = 0
    pkts_out: int = 0
    pkts_in: int = 0
    flows: int = 0
    uids: list[str] = field(default_factory=list)
    cids: list[str] = field(default_factory=list)
    evidence: dict[str, str] = field(default_factory=dict)

    def add_flow(
        self,
        *,
        first: float,
        last: float,
        bytes_out: int,
        bytes_in: int,
        pkts_out: int,
        pkts_in: int,
        uid: str,
        cid: str | None = None,
    ) -> None:
        """Count one more flow in this entry."""
        self.first = min(self.first, first)
        self.last = max(self.last, last)
        self.bytes_out += bytes_out
        self.bytes_in += bytes_in
        self.pkts_out += pkts_out
        self.pkts_in += pkts_in
        self.flows += 1
        if len(self.uids) < MAX_UIDS and uid not in self.uids:
            self.uids.append(uid)
            if cid is not None:
                self.cids.append(cid)


def build_alert(e: Egress, scope: str, name: str | None) -> Alert:
    """The alert for one egress entry; `scope` is the device's policy scope (dedicated/shared)."""
    cls = e.cls
    drone_related = cls is not None and not cls.behavioural
    note = e.note
    if note == NOTE_LEAK and scope == "shared" and not drone_related:
        note = NOTE_OTHER_APP
    if note in (NOTE_OTHER_APP, NOTE_ATTEMPT):
        severity = "low"
    elif note == NOTE_DNS:
        severity = "medium"
    elif cls is not None and not cls.behavioural:
        severity = cls.severity
    else:
        severity = "high" if e.bytes_out > 1_000_000 else "medium"
    who = f"{cls.vendor} " if drone_related and cls is not None else ""
    if note == NOTE_DNS:
        msg = f"{e.host_ip} looked up {who}cloud name {e.dest} while local-data mode was on"
    elif note == NOTE_ATTEMPT and e.kind == KIND_LOOKUP:
        msg = (
            f"{e.host_ip} looked up {e.dest} ({_times(e.flows, 'lookup')}) while local-data mode "
            "was on; no data was sent to it"
        )
    elif note == NOTE_ATTEMPT:
        port = f"{e.proto}/{e.dest_port}" if e.proto else str(e.dest_port)
        msg = (
            f"{e.host_ip} tried to reach {who}{e.dest} ({port}, {_times(e.flows, 'attempt')}) "
            "while local-data mode was on; nothing answered and nothing was delivered"
        )
    elif note == NOTE_OTHER_APP:
        msg = (
            f"{e.host_ip} sent {e.bytes_out:,} bytes to {e.dest} (not attributed to the "
            "drone app) while local-data mode was on"
        )
    else:
        msg = (
            f"{e.host_ip} sent {e.bytes_out:,} bytes of {e.category} data to {who}"
            f"{e.dest} while local-data mode was on"
        )
    geo = e.geo
    return Alert(
        ts=e.first,
        id=alert_id(e.host_ip, e.dest, e.category, note),
        note=note,
        msg=msg,
        first_seen=e.first,
        last_seen=e.last,
        device_ip=e.host_ip,
        device_mac=e.host_mac,
        device_name=name,
        category=e.category,
        severity=severity,
        dest_ip=e.dest_ip,
        dest_port=e.dest_port,
        dest_name=e.dest_name,
        proto=e.proto,
        vendor=cls.vendor if cls else None,
        app=cls.app if cls else None,
        rule_id=cls.rule_id if cls else None,
        confidence=cls.confidence if cls else None,
        evidence_tag=cls.evidence if cls else None,
        evidence=dict(e.evidence),
        dest_country=geo.country_code if geo else None,
        dest_asn=geo.asn if geo else None,
        dest_as_org=geo.as_org if geo else None,
        bytes_out=e.bytes_out,
        bytes_in=e.bytes_in,
        pkts_out=e.pkts_out,
        pkts_in=e.pkts_in,
        flows=e.flows,
        uids=tuple(e.uids),
        community_ids=tuple(e.cids),
        ldm="on",
    )


def _times(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class EgressRecord(Record):
    """One flow that carried bytes off a local host, or one vendor name a local host looked up:
    what the judge folds into alerts (`ts` is the flow's first packet)."""

    log: ClassVar[str] = "egress"
    last_ts: float
    uid: str
    kind: str
    """flow, lookup or attempt."""
    host_ip: str
    dest_ip: str
    dest_port: int
    proto: str
    bytes_out: int
    bytes_in: int
    pkts_out: int
    pkts_in: int
    category: str
    host_mac: str | None = None
    dest_name: str | None = None
    """The destination's name (SNI, HTTP host, DNS name) for an outbound flow or attempt; the name
    looked up for a lookup; None for an inbound flow."""
    community_id: str | None = None
    rule_id: str | None = None
    vendor: str | None = None
    app: str | None = None
    confidence: float | None = None
    severity: str | None = None
    evidence_tag: str | None = None
    behavioural: bool | None = None
    """True for a behavioural label (no rule matched); None when unclassified."""
    evidence: dict[str, str] = field(default_factory=dict, hash=False)
    """The facts that matched the rule, then the flow's names and JA4."""
    dest_country: str | None = None
    dest_asn: int | None = None
    dest_as_org: str | None = None

    @property
    def classification(self) -> Classification | None:
        """The classification the record carries, as the alert builder reads it."""
        if self.rule_id is None:
            return None
        return Classification(
            rule_id=self.rule_id,
            vendor=self.vendor or "unknown",
            app=self.app or "unknown",
            category=self.category,
            confidence=self.confidence or 0.0,
            evidence=self.evidence_tag or "I",
            source="",
            severity=self.severity or "medium",
            behavioural=bool(self.behavioural),
        )

    @property
    def geo(self) -> GeoInfo | None:
        """Where the destination is (None for a lookup)."""
        if self.kind == KIND_LOOKUP:
            return None
        return _public_geo(self.dest_country, self.dest_asn, self.dest_as_org)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> EgressRecord:
        """The record from its JSON form (`to_dict`), as the service stores it."""
        fields = {k: v for k, v in doc.items() if k != "log"}
        fields["evidence"] = dict(fields.get("evidence") or {})
        return cls(**fields)


@functools.lru_cache(maxsize=4096)
def _public_geo(country: str | None, asn: int | None, as_org: str | None) -> GeoInfo:
    """A public destination's place, made once for each country and AS (frozen, shared)."""
    return GeoInfo("public", country_code=country, asn=asn, as_org=as_org)


def note_of(obs: EgressRecord) -> str:
    """The finding an observation is: data that left, a lookup of a drone vendor's name, or an
    attempt (a lookup of another name, a connection nobody answered)."""
    if obs.kind == KIND_FLOW:
        return NOTE_LEAK
    if obs.kind == KIND_LOOKUP and obs.rule_id is not None and not obs.behavioural:
        return NOTE_DNS
    return NOTE_ATTEMPT


class EgressBook:
    """Egress observations folded into one `Egress` per (host, destination, category, note,
    LDM state), in the order they are added."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str, str, bool], Egress] = {}

    def add(self, obs: EgressRecord, ldm: bool) -> None:
        """Count one observation; `ldm`: whether LDM was on for the host during it."""
        lookup = obs.kind == KIND_LOOKUP
        entry = self._entry(obs, note_of(obs), ldm)
        if (obs.ts, obs.dest_ip) < (entry.first, entry.dest_ip or ""):
            # The earliest observation names the address, whatever order they arrive in.
            entry.dest_ip, entry.dest_port, entry.proto = obs.dest_ip, obs.dest_port, obs.proto
        if lookup:  # one more lookup of the name: no bytes, one packet out
            entry.first = min(entry.first, obs.ts)
            entry.last = max(entry.last, obs.last_ts)
            entry.flows += 1
            entry.pkts_out += 1
            if len(entry.uids) < MAX_UIDS:
                entry.uids.append(obs.uid)
        else:
            entry.add_flow(
                first=obs.ts,
                last=obs.last_ts,
                bytes_out=obs.bytes_out,
                bytes_in=obs.bytes_in,
                pkts_out=obs.pkts_out,
                pkts_in=obs.pkts_in,
                uid=obs.uid,
                cid=obs.community_id,
            )
        for k, v in obs.evidence.items():
            entry.evidence.setdefault(k, v)

    def _entry(self, obs: EgressRecord, note: str, ldm: bool) -> Egress:
        """The entry an observation counts in, made by its first observation."""
        lookup = obs.kind == KIND_LOOKUP
        dest = obs.dest_name or ("" if lookup else obs.dest_ip)
        key = (obs.host_ip, dest, obs.category, note, ldm)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Egress(
                host_ip=obs.host_ip,
                host_mac=obs.host_mac,
                dest=dest,
                category=obs.category,
                note=note,
                ldm=ldm,
                first=obs.ts,
                last=obs.last_ts,
                kind=obs.kind,
                dest_ip=obs.dest_ip,
                dest_port=obs.dest_port,
                proto=obs.proto,
                dest_name=dest if lookup else obs.dest_name,
                cls=obs.classification,
                geo=obs.geo,
            )
        return entry

    def by_host(self) -> dict[str, list[Egress]]:
        """The entries of each host, in the order they were made."""
        out: dict[str, list[Egress]] = {}
        for e in self._entries.values():
            out.setdefault(e.host_ip, []).append(e)
        return out


@dataclass(slots=True)
class Judgement:
    """What one device's egress entries amount to under its policy."""

    alerts: list[Alert]
    allowed_bytes: int
    """Bytes sent to exempt destinations while LDM was on."""


def judge_device(entries: Iterable[Egress], policy: DevicePolicy, name: str | None) -> Judgement:
    """The alerts of one device: every entry made while LDM was on that its policy does not
    exempt. A lookup of a name the device then sent data to is part of that leak, not news; an
    attempt on a destination the device then reached is part of that leak too, and a lookup of a
    name it then tried to connect to is part of that attempt."""
    entries = list(entries)
    alerts: list[Alert] = []
    allowed_bytes = 0
    on = [e for e in entries if e.ldm]
    leaked = {d for e in on if e.note == NOTE_LEAK for d in (e.dest_name, e.dest_ip) if d}
    tried = {e.dest_name for e in on if e.note == NOTE_ATTEMPT and e.kind == KIND_ATTEMPT}
    for e in on:
        lookup = e.kind == KIND_LOOKUP
        if policy.allows(e.category, e.dest_name, "" if lookup else e.dest_ip or ""):
            allowed_bytes += e.bytes_out
            continue
        if lookup and (e.dest_name in leaked or (e.note == NOTE_ATTEMPT and e.dest_name in tried)):
            continue
        if e.kind == KIND_ATTEMPT and (e.dest_name in leaked or e.dest_ip in leaked):
            continue
        alerts.append(build_alert(e, policy.scope, name))
    return Judgement(alerts, allowed_bytes)
