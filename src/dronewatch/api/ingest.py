"""Turn ingested records into stored flows, discovered devices and alerts, under the policy the
service holds: a device's LDM state at the time of each flow comes from its recorded changes.

A batch is applied in one transaction. Re-sending a batch (same batch id) changes nothing, and a
flow already stored (same uid) is not counted twice even when it arrives in another batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from dronewatch.api.store import Store
from dronewatch.geoip.base import GeoInfo
from dronewatch.judge.alert import NOTE_DNS, NOTE_LEAK, alert_id
from dronewatch.judge.classify import Classification, Classifier
from dronewatch.judge.egress import MAX_UIDS, Egress, build_alert
from dronewatch.judge.policy import DevicePolicy

logger = logging.getLogger(__name__)

EVIDENCE_KEY = {"tls": "sni", "quic": "quic_sni", "http": "http_host"}
"""Which fact a flow's server name came from, by service (else a DNS name)."""


@dataclass(slots=True)
class IngestResult:
    """What one batch did."""

    batch_id: str
    duplicate: bool = False
    records: int = 0
    flows_new: int = 0
    packets: int = 0
    devices_discovered: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    """Alerts created or updated by the batch."""
    latest_ts: float | None = None
    """Network time of the newest record, for the ingest-lag metric."""


def ldm_on_during(changes: Sequence[tuple[float, bool]], start: float, end: float) -> bool:
    """Whether LDM was on at any moment of [start, end], from (at, on) changes sorted by time."""
    state = False
    for at, on in changes:
        if at <= start:
            state = on
        elif at <= end and on:
            return True
        else:
            break
    return state


def _policy(device: dict[str, Any]) -> DevicePolicy:
    return DevicePolicy(
        name=device.get("name") or "",
        mac=device.get("mac"),
        ip=device.get("ip"),
        ldm=True,
        scope="shared" if device.get("scope") == "shared" else "dedicated",
        allowed_categories=frozenset(device.get("allowed_categories") or ()),
        allowed_destinations=tuple(device.get("allowed_destinations") or ()),
        local_subnets=tuple(device.get("local_subnets") or ()),
    )


class Ingestor:
    """Applies batches of pipeline records to the store."""

    def __init__(self, store: Store, classifier: Classifier) -> None:
        self.store = store
        self.classifier = classifier
        self._rules = {r.id: r for r in classifier.ruleset.rules}

    def ingest(
        self,
        batch_id: str,
        agent: str,
        records: Sequence[dict[str, Any]],
        discovered_ldm: bool | None = None,
    ) -> IngestResult:
        """Apply one batch; each record is a pipeline record dict with its `log` name.

        `discovered_ldm` gives devices the batch discovers that LDM state from the start of time.
        """
        result = IngestResult(batch_id=batch_id, records=len(records))
        by_log: dict[str, list[dict[str, Any]]] = {}
        for rec in records:
            by_log.setdefault(str(rec.get("log", "")), []).append(rec)
        with self.store.engine.begin() as conn:
            if not self.store.claim_batch(conn, batch_id, agent, len(records)):
                result.duplicate = True
                return result
            for cap in by_log.get("capture", []):
                self.store.add_capture(
                    conn,
                    {
                        "agent": agent,
                        "source": str(cap.get("source", "")),
                        "packets": int(cap.get("packets", 0)),
                        "drops": cap.get("drops"),
                        "complete": bool(cap.get("complete", True)),
                        "first_ts": float(cap.get("ts", 0.0)),
                        "last_ts": cap.get("last_ts"),
                    },
                )
            stations = [
                {
                    "ip": d.get("ip"),
                    "mac": d.get("mac"),
                    "hostname": d.get("hostname"),
                    "roles": d.get("roles", []),
                }
                for d in by_log.get("devices", [])
                if "ground_station" in (d.get("roles") or [])
            ]
            result.devices_discovered = self.store.discover_devices(
                conn, stations, ldm=discovered_ldm, by=agent
            )
            devices = _DeviceCache(self.store, conn)
            leaked: set[tuple[str, str]] = set()
            new_flows = self._flows(conn, agent, by_log.get("flows", []), result)
            self.store.insert_evidence(
                conn,
                [
                    {
                        "uid": e["uid"],
                        "agent": agent,
                        "linktype": int(e.get("linktype", 1)),
                        "frames": list(e.get("frames", [])),
                    }
                    for e in by_log.get("evidence", [])
                    if isinstance(e.get("uid"), str)
                ],
            )
            for flow in new_flows:
                self._judge_flow(conn, flow, devices, result, leaked)
            for rec in by_log.get("dns", []):
                self._judge_lookup(conn, rec, devices, result, leaked)
            for alert in by_log.get("alerts", []):
                device = devices.get(alert.get("device_ip"), alert.get("device_mac"))
                doc = {k: v for k, v in alert.items() if k != "log"}
                self.store.upsert_alert(conn, doc, device["id"] if device else None)
                result.alerts.append(doc)
        return result

    def _flows(
        self, conn: Connection, agent: str, flows: list[dict[str, Any]], result: IngestResult
    ) -> list[dict[str, Any]]:
        rows = []
        for f in flows:
            outbound = f.get("orig_scope") != "public" and f.get("resp_scope") == "public"
            inbound = f.get("orig_scope") == "public" and f.get("resp_scope") == "local"
            device_ip = f["resp_h"] if inbound else f["orig_h"]
            out_b = f.get("resp_bytes", 0) if inbound else f.get("orig_bytes", 0)
            in_b = f.get("orig_bytes", 0) if inbound else f.get("resp_bytes", 0)
            last = float(f["ts"]) + float(f.get("duration_s", 0.0))
            result.packets += int(f.get("orig_pkts", 0)) + int(f.get("resp_pkts", 0))
            result.latest_ts = max(result.latest_ts or 0.0, last)
            rows.append(
                {
                    "uid": f["uid"],
                    "agent": agent,
                    "device_ip": device_ip,
                    "ts": float(f["ts"]),
                    "last_ts": last,
                    "resp_h": f["orig_h"] if inbound else f["resp_h"],
                    "resp_p": int(f["orig_p"] if inbound else f["resp_p"]),
                    "proto": f.get("proto", ""),
                    "server_name": f.get("server_name"),
                    "category": f.get("category"),
                    "vendor": f.get("vendor"),
                    "scope": "public" if outbound or inbound else "local",
                    "bytes_out": int(out_b),
                    "bytes_in": int(in_b),
                    "doc": {k: v for k, v in f.items() if k != "log"},
                }
            )
        new = self.store.insert_flows(conn, rows)
        result.flows_new = len(new)
        return new

    def _classification(self, rule_id: str | None, f: dict[str, Any]) -> Classification | None:
        if not rule_id:
            return None
        rule = self._rules.get(rule_id)
        return Classification(
            rule_id=rule_id,
            vendor=str(f.get("vendor") or "unknown"),
            app=str(f.get("app") or "unknown"),
            category=str(f.get("category") or "other"),
            confidence=float(f.get("confidence") or 0.0),
            evidence=rule.evidence if rule else "I",
            source=rule.source if rule else "",
            severity=rule.severity if rule else "medium",
            behavioural=rule is None,
        )

    def _judge_flow(
        self,
        conn: Connection,
        row: dict[str, Any],
        devices: _DeviceCache,
        result: IngestResult,
        leaked: set[tuple[str, str]],
    ) -> None:
        if row["scope"] != "public" or row["bytes_out"] <= 0:
            return
        f = row["doc"]
        inbound = f.get("orig_scope") == "public"
        mac = f.get("resp_mac") if inbound else f.get("orig_mac")
        device = devices.get(row["device_ip"], mac)
        if device is None:
            return
        if not ldm_on_during(devices.changes(device["id"]), row["ts"], row["last_ts"]):
            return
        policy = _policy(device)
        category = row["category"] or "other"
        name = None if inbound else row["server_name"]
        if policy.allows(category, name, row["resp_h"]):
            return
        cls = self._classification(f.get("rule_id"), f)
        geo = GeoInfo(
            "public",
            country_code=f.get("resp_country"),
            asn=f.get("resp_asn"),
            as_org=f.get("resp_as_org"),
        )
        entry = Egress(
            host_ip=row["device_ip"],
            host_mac=mac,
            dest=name or row["resp_h"],
            category=category,
            note=NOTE_LEAK,
            ldm=True,
            first=row["ts"],
            last=row["last_ts"],
            dest_ip=row["resp_h"],
            dest_port=row["resp_p"],
            proto=row["proto"],
            dest_name=name,
            cls=cls,
            geo=geo,
        )
        if name:
            entry.evidence[EVIDENCE_KEY.get(str(f.get("service")), "dns_name")] = name
        out_p = f.get("resp_pkts", 0) if inbound else f.get("orig_pkts", 0)
        in_p = f.get("orig_pkts", 0) if inbound else f.get("resp_pkts", 0)
        entry.add_flow(
            first=row["ts"],
            last=row["last_ts"],
            bytes_out=row["bytes_out"],
            bytes_in=row["bytes_in"],
            pkts_out=int(out_p),
            pkts_in=int(in_p),
            uid=row["uid"],
            cid=f.get("community_id"),
        )
        self._merge_and_store(conn, entry, policy, device, result)
        leaked.add((row["device_ip"], entry.dest))

    def _judge_lookup(
        self,
        conn: Connection,
        rec: dict[str, Any],
        devices: _DeviceCache,
        result: IngestResult,
        leaked: set[tuple[str, str]],
    ) -> None:
        query = rec.get("query")
        if not isinstance(query, str) or not query:
            return
        device = devices.get(rec.get("orig_h"), None)
        if device is None:
            return
        ts = float(rec.get("ts", 0.0))
        if not ldm_on_during(devices.changes(device["id"]), ts, ts):
            return
        cls = self.classifier.classify_name(query)
        if cls is None or cls.behavioural or cls.category == "local_link":
            return
        policy = _policy(device)
        if policy.allows(cls.category, query, "") or (rec["orig_h"], query) in leaked:
            return
        # A lookup of a name the device also sent data to is part of that leak (maybe an
        # earlier batch's), not a finding of its own.
        if self.store.get_alert_doc(conn, alert_id(rec["orig_h"], query, cls.category, NOTE_LEAK)):
            return
        entry = Egress(
            host_ip=rec["orig_h"],
            host_mac=device.get("mac"),
            dest=query,
            category=cls.category,
            note=NOTE_DNS,
            ldm=True,
            first=ts,
            last=ts,
            dest_ip=rec.get("resp_h"),
            dest_port=rec.get("resp_p"),
            proto=rec.get("proto"),
            dest_name=query,
            cls=cls,
        )
        entry.evidence["dns_query"] = query
        entry.add_flow(
            first=ts,
            last=ts,
            bytes_out=0,
            bytes_in=0,
            pkts_out=1,
            pkts_in=0,
            uid=str(rec.get("uid", "")),
        )
        self._merge_and_store(conn, entry, policy, device, result)

    def _merge_and_store(
        self,
        conn: Connection,
        entry: Egress,
        policy: DevicePolicy,
        device: dict[str, Any],
        result: IngestResult,
    ) -> None:
        name = device.get("name") or device.get("hostname")
        fresh = build_alert(entry, policy.scope, name)
        old = self.store.get_alert_doc(conn, fresh.id)
        if old is not None:
            prev = old["doc"]
            if set(entry.uids) <= set(prev.get("uids", ())):
                return  # this flow is already counted in the alert
            entry.first = min(entry.first, float(prev["first_seen"]))
            entry.last = max(entry.last, float(prev["last_seen"]))
            entry.bytes_out += int(prev.get("bytes_out", 0))
            entry.bytes_in += int(prev.get("bytes_in", 0))
            entry.pkts_out += int(prev.get("pkts_out", 0))
            entry.pkts_in += int(prev.get("pkts_in", 0))
            entry.flows += int(prev.get("flows", 0))
            entry.uids = [*prev.get("uids", ()), *entry.uids][:MAX_UIDS]
            entry.cids = [*prev.get("community_ids", ()), *entry.cids][:MAX_UIDS]
            for k, v in (prev.get("evidence") or {}).items():
                entry.evidence.setdefault(k, v)
        alert = build_alert(entry, policy.scope, name)
        doc = alert.to_dict()
        self.store.upsert_alert(conn, doc, device["id"])
        result.alerts.append(doc)


class _DeviceCache:
    """Devices and LDM histories looked up once per batch."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self.store = store
        self.conn = conn
        self._devices: dict[tuple[str | None, str | None], dict[str, Any] | None] = {}
        self._changes: dict[int, list[tuple[float, bool]]] = {}

    def get(self, ip: str | None, mac: str | None) -> dict[str, Any] | None:
        key = (ip, mac)
        if key not in self._devices:
            self._devices[key] = self.store._find(self.conn, ip, mac)
        return self._devices[key]

    def changes(self, device_id: int) -> list[tuple[float, bool]]:
        if device_id not in self._changes:
            self._changes[device_id] = self.store.ldm_changes_for(self.conn, device_id)
        return self._changes[device_id]
