"""Alerts: one per device + destination + category, updated while the traffic goes on.

Field names follow Zeek's notice and, where one exists, ECS (see `to_ecs`); `to_ocsf` gives an OCSF
Detection Finding (class 2004).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from dronewatch.core.hooks import Record

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_SCORE = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
"""CEF-style 0-10 scores."""
OCSF_SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}

NOTE_LEAK = "ldm.data_left_device"
NOTE_DNS = "ldm.vendor_dns_lookup"
NOTE_OTHER_APP = "ldm.other_traffic"
NOTE_ATTEMPT = "ldm.egress_attempt"
"""The device tried to reach off-device and delivered nothing: a lookup of a name that is not
local, a connection nobody answered (dronewatch.judge.egress)."""

VIOLATION_NOTES = frozenset({NOTE_LEAK, NOTE_DNS})
"""The notes that break the local-data promise: data left, or a vendor's name was looked up.
`ldm.other_traffic` (a shared device's other apps) and `ldm.egress_attempt` are findings of
lower severity that leave the verdict clean."""

JUDGEMENT_LOGS = frozenset({"alerts", "verdicts"})
"""The logs of the judge's own findings (`Alert`, `monitor.VerdictRecord`): written by `analyze`
and by the service, never sent to the service by an agent or a replay, which send observations."""


def is_lookup(alert: Alert) -> bool:
    """Whether an alert is about DNS lookups of its destination name (a vendor lookup, or an
    attempt by lookup) rather than about traffic to it: its evidence is the query."""
    return alert.note == NOTE_DNS or (alert.note == NOTE_ATTEMPT and "dns_query" in alert.evidence)


def alert_id(device: str, destination: str, category: str, note: str) -> str:
    """A stable id for the alert of one device, destination and category."""
    digest = hashlib.sha1(f"{note}|{device}|{destination}|{category}".encode()).hexdigest()
    return "A" + digest[:16]


@dataclass(frozen=True, slots=True)
class Alert(Record):
    """Data left a device while its local-data mode was on (or a vendor lookup was made)."""

    log: ClassVar[str] = "alerts"
    id: str
    note: str
    """ldm.data_left_device, ldm.vendor_dns_lookup, ldm.egress_attempt, or ldm.other_traffic
    (shared scope)."""
    msg: str
    first_seen: float
    last_seen: float
    device_ip: str
    device_mac: str | None
    device_name: str | None
    category: str
    severity: str
    dest_ip: str | None
    dest_port: int | None
    dest_name: str | None
    proto: str | None
    vendor: str | None = None
    app: str | None = None
    rule_id: str | None = None
    confidence: float | None = None
    evidence_tag: str | None = None
    """E, E-w or I: how well the rule's endpoint is documented."""
    evidence: dict[str, str] = field(default_factory=dict, hash=False)
    """What matched: sni, dns_name, http_host, mqtt_topic..."""
    dest_country: str | None = None
    dest_asn: int | None = None
    dest_as_org: str | None = None
    bytes_out: int = 0
    bytes_in: int = 0
    pkts_out: int = 0
    pkts_in: int = 0
    flows: int = 0
    uids: tuple[str, ...] = ()
    """Up to 20 flow uids that make up the alert (the evidence flows)."""
    community_ids: tuple[str, ...] = ()
    ldm: str = "on"
    status: str = "open"


_FIRST = datetime(1, 1, 1, tzinfo=UTC)
_LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def utc_time(ts: float) -> datetime:
    """A network time as a UTC datetime; a time no date can hold (a corrupt capture's year
    148108, NaN) is pinned to the nearest representable instant instead of raising."""
    try:
        return datetime.fromtimestamp(ts, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return _FIRST if ts < 0 else _LAST


def _iso(ts: float) -> str:
    return utc_time(ts).isoformat().replace("+00:00", "Z")


def to_ecs(alert: Alert) -> dict[str, Any]:
    """The alert as an ECS 8.x document (JA4 and LDM state under a `dronewatch` namespace)."""
    doc: dict[str, Any] = {
        "@timestamp": _iso(alert.last_seen),
        "message": alert.msg,
        "ecs": {"version": "8.11.0"},
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["protocol"] if is_lookup(alert) else ["connection", "denied"],
            "action": alert.note,
            "dataset": "dronewatch.alerts",
            "module": "dronewatch",
            "start": _iso(alert.first_seen),
            "end": _iso(alert.last_seen),
            "severity": SEVERITY_SCORE[alert.severity],
            "risk_score": SEVERITY_SCORE[alert.severity] * 10.0,
            "id": alert.id,
        },
        "rule": {
            "id": alert.rule_id,
            "category": alert.category,
            "ruleset": (alert.rule_id or "").split(".")[0] or None,
        },
        "source": {
            "ip": alert.device_ip,
            "mac": alert.device_mac.replace(":", "-").upper() if alert.device_mac else None,
            "bytes": alert.bytes_out,
            "packets": alert.pkts_out,
        },
        "destination": {
            "ip": alert.dest_ip,
            "port": alert.dest_port,
            "domain": alert.dest_name,
            "bytes": alert.bytes_in,
            "packets": alert.pkts_in,
            "geo": {"country_iso_code": alert.dest_country},
            "as": {"number": alert.dest_asn, "organization": {"name": alert.dest_as_org}},
        },
        "network": {
            "transport": alert.proto,
            "direction": "egress",
            "bytes": alert.bytes_out + alert.bytes_in,
            "community_id": alert.community_ids[0] if alert.community_ids else None,
        },
        "host": {"name": alert.device_name},
        "tls": {"client": {"server_name": alert.evidence.get("sni")}},
        "dns": {"question": {"name": alert.evidence.get("dns_query")}},
        "dronewatch": {
            "vendor": alert.vendor,
            "app": alert.app,
            "ldm": alert.ldm,
            "status": alert.status,
            "confidence": alert.confidence,
            "evidence_tag": alert.evidence_tag,
            "evidence": alert.evidence,
            "flows": alert.flows,
            "uids": alert.uids,
        },
    }
    pruned: dict[str, Any] = _prune(doc)
    return pruned


def to_ocsf(alert: Alert) -> dict[str, Any]:
    """The alert as an OCSF 1.x Detection Finding (class_uid 2004)."""
    activity = 1 if alert.flows <= 1 else 2  # Create, then Update
    status_id = {"open": 1, "acknowledged": 2, "resolved": 4}.get(alert.status, 99)
    doc: dict[str, Any] = {
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity,
        "type_uid": 2004 * 100 + activity,
        "time": int(alert.last_seen * 1000),
        "severity_id": OCSF_SEVERITY_ID[alert.severity],
        "severity": alert.severity.capitalize(),
        "status_id": status_id,
        "is_alert": True,
        "confidence_score": round((alert.confidence or 0.0) * 100),
        "message": alert.msg,
        "metadata": {
            "product": {"name": "dronewatch", "vendor_name": "dronewatch"},
            "version": "1.1.0",
        },
        "finding_info": {
            "uid": alert.id,
            "title": alert.msg,
            "types": [alert.note, alert.category],
            "first_seen_time": int(alert.first_seen * 1000),
            "last_seen_time": int(alert.last_seen * 1000),
            "analytic": {"uid": alert.rule_id, "name": alert.rule_id, "type_id": 1},
        },
        "evidences": [
            {
                "src_endpoint": {
                    "ip": alert.device_ip,
                    "mac": alert.device_mac,
                    "hostname": alert.device_name,
                },
                "dst_endpoint": {
                    "ip": alert.dest_ip,
                    "port": alert.dest_port,
                    "hostname": alert.dest_name,
                    "location": {"country": alert.dest_country},
                    "autonomous_system": {"number": alert.dest_asn, "name": alert.dest_as_org},
                },
                "connection_info": {
                    "protocol_name": alert.proto,
                    "direction_id": 2,
                    "uid": alert.uids[0] if alert.uids else None,
                },
                "query": {"hostname": alert.evidence.get("dns_query")},
            }
        ],
        "traffic": {
            "bytes_out": alert.bytes_out,
            "bytes_in": alert.bytes_in,
            "packets_out": alert.pkts_out,
            "packets_in": alert.pkts_in,
        },
        "unmapped": {
            "vendor": alert.vendor,
            "app": alert.app,
            "ldm": alert.ldm,
            "evidence_tag": alert.evidence_tag,
            "evidence": alert.evidence,
        },
    }
    pruned: dict[str, Any] = _prune(doc)
    return pruned


def _prune(value: Any) -> Any:
    """Drop None values and empty containers, recursively."""
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value
