"""What left one device for one destination and category: the unit an alert is raised on.

Both the offline monitor (`dronewatch analyze`) and the alert service keep one `Egress` per
(device, destination, category, note, LDM state) and turn it into an `Alert` with `build_alert`, so
the two agree on alert ids, severities and wording.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dronewatch.geoip.base import GeoInfo
from dronewatch.judge.alert import NOTE_DNS, NOTE_LEAK, NOTE_OTHER_APP, Alert, alert_id
from dronewatch.judge.classify import Classification

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
    if note == NOTE_OTHER_APP:
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
