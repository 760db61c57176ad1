"""Turn ingested records into stored flows, discovered devices and alerts, under the policy the
service holds: a device's LDM state at the time of each flow comes from its recorded changes.

The service judges with the same code as `dronewatch analyze` (`dronewatch.judge.egress`): it keeps
every egress observation an agent sends, and whenever a device gains observations, is discovered,
or has its LDM history changed, it folds all of that device's observations again into its alerts.
So the alerts do not depend on how records were cut into batches or in which order they came.
Agents send observations only (`dronewatch.api.records` checks every record before it gets
here): `alerts` and `verdicts` records are the service's own judgement.

A batch is applied in one transaction. Re-sending a batch (same batch id) changes nothing, and a
flow or observation already stored is not counted twice even when it arrives in another batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from dronewatch.api import db
from dronewatch.api.store import Store, host_mac
from dronewatch.judge.classify import Classifier
from dronewatch.judge.egress import EgressBook, EgressRecord, judge_device
from dronewatch.judge.policy import DevicePolicy, Policy, ldm_windows

logger = logging.getLogger(__name__)

EGRESS_KEY_KEEP = 300
"""The longest egress key kept as it is (the column holds 400 characters); a longer one keeps
its start and the SHA-256 of the whole."""


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


def device_policy(device: dict[str, Any], changes: Sequence[tuple[float, bool]]) -> DevicePolicy:
    """The policy of a stored device, LDM on in the windows its recorded changes give."""
    windows = ldm_windows(changes)
    return DevicePolicy(
        name=device.get("name") or "",
        mac=device.get("mac"),
        ip=device.get("ip"),
        ldm=bool(windows),
        windows=windows,
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
                        "open_flows": cap.get("open_flows"),
                        "open_since": cap.get("open_since"),
                        "analyzer_errors": sum((cap.get("analyzer_errors") or {}).values()) or None,
                        "evicted_flows": cap.get("evicted_flows"),
                        "gap_flows": cap.get("gap_flows"),
                        "missed_bytes": cap.get("missed_bytes"),
                        "inspection_stopped": cap.get("inspection_stopped"),
                        "bad_checksums": cap.get("bad_checksums"),
                        "encrypted": json.dumps(cap["encrypted"], sort_keys=True)
                        if cap.get("encrypted")
                        else None,
                    },
                )
            stations = [
                {
                    # An empty address is none: a station known by its MAC alone, not one
                    # more device at the address "" (the column holds each address once).
                    "ip": d.get("ip") or None,
                    "mac": d.get("mac") or None,
                    "hostname": d.get("hostname"),
                    "roles": d.get("roles", []),
                }
                for d in by_log.get("devices", [])
                if "ground_station" in (d.get("roles") or [])
            ]
            hosts: list[str] = []
            result.devices_discovered = self.store.discover_devices(
                conn, stations, ldm=discovered_ldm, by=agent
            )
            devices = _DeviceCache(self.store, conn)
            for d in by_log.get("devices", []):
                if d.get("ip") and devices.claim(d["ip"], d.get("mac"), d.get("hostname")):
                    hosts.append(str(d["ip"]))
            self._flows(conn, agent, by_log.get("flows", []), result)
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
            hosts += self.store.insert_egress(
                conn,
                [
                    {
                        "key": _egress_key(rec),
                        "agent": agent,
                        "host_ip": str(rec["host_ip"]),
                        "doc": {k: v for k, v in rec.items() if k != "log"},
                    }
                    for rec in by_log.get("egress", [])
                ],
            )
            # A station found now is judged on everything it sent before, in any batch.
            hosts.extend(s["ip"] for s in stations if s["ip"])
            for host_ip in dict.fromkeys(hosts):
                self.rejudge(conn, host_ip, devices, result)
            ignored = len(by_log.get("alerts", [])) + len(by_log.get("verdicts", []))
            if ignored:
                logger.debug(
                    "batch %s: %d alert/verdict records from %s not taken", batch_id, ignored, agent
                )
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
            result.latest_ts = max(result.latest_ts or 0.0, last)
            rows.append(
                {
                    "uid": f["uid"],
                    "agent": agent,
                    "device_ip": device_ip,
                    "end_reason": f.get("end_reason"),
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
        # Only flows stored now count: a flow sent again (a replay under another path spelling,
        # a batch re-cut after a crash) is not more traffic.
        result.packets += sum(
            int(r["doc"].get("orig_pkts", 0)) + int(r["doc"].get("resp_pkts", 0)) for r in new
        )
        return new

    def rejudge_device(self, device: dict[str, Any]) -> list[dict[str, Any]]:
        """Judge one stored device again in a transaction of its own; returns changed alerts.
        A network or host-name declaration first adopts every host it names that the service
        has seen, then judges each."""
        result = IngestResult(batch_id="")
        with self.store.engine.begin() as conn:
            devices = _DeviceCache(self.store, conn)
            if device.get("ip"):
                hosts = [str(device["ip"])]
            elif device.get("mac") and not (device.get("net") or device.get("hostname")):
                # Declared by its MAC alone: every address its observations came from (a
                # phone's IPv4 and IPv6 addresses, its temporary IPv6 ones).
                hosts = self.store.egress_hosts(conn, str(device["mac"]))
            elif device.get("net") or device.get("hostname"):
                seen = [(d["ip"], d["mac"], d["hostname"]) for d in self.store.list_in(conn)]
                seen += [(ip, None, None) for ip in self.store.egress_hosts(conn)]
                hosts = []
                for ip, mac, hostname in seen:
                    host = devices.claim(ip, mac, hostname)
                    if host is not None and host["parent_id"] == device["id"]:
                        hosts.append(str(ip))
            else:
                hosts = []
            for host_ip in dict.fromkeys(hosts):
                self.rejudge(conn, host_ip, devices, result)
        return result.alerts

    def rejudge(
        self,
        conn: Connection,
        host_ip: str,
        devices: _DeviceCache,
        result: IngestResult | None = None,
    ) -> None:
        """Fold every observation of a device again into its alerts, store the alerts that
        changed and remove those the judge no longer raises."""
        docs = self.store.egress_of(conn, host_ip)
        # Found by its MAC too, as its observations carry it: a device declared by its MAC
        # alone has no address of its own to be found by.
        device = devices.claim(host_ip, host_mac(docs))
        if device is None:
            return
        policy = device_policy(device, devices.changes(device["id"]))
        book = EgressBook()
        for doc in docs:
            obs = EgressRecord.from_dict(doc)
            book.add(obs, policy.ldm_on(obs.ts, obs.last_ts))
        name = device.get("name") or device.get("hostname")
        judgement = judge_device(book.by_host().get(host_ip, []), policy, name)
        stored = self.store.device_alert_docs(conn, host_ip)
        for alert in judgement.alerts:
            doc = alert.to_dict()
            old = stored.pop(alert.id, None)
            if old is not None and _same(old, doc):
                continue
            self.store.upsert_alert(conn, doc, device["id"])
            if result is not None:
                result.alerts.append(doc)
        for alert_id in stored:
            self.store.delete_alert(conn, alert_id)


def _same(stored: dict[str, Any], fresh: dict[str, Any]) -> bool:
    """Whether a stored alert document says what a fresh one says (its status aside)."""
    return {k: v for k, v in stored.items() if k != "status"} == {
        k: v for k, v in fresh.items() if k != "status"
    }


def _egress_key(rec: dict[str, Any]) -> str:
    """What makes an observation one: its flow, its kind and, for a lookup, the name."""
    key = db.nul_free(f"{rec.get('uid')}|{rec.get('kind')}|{rec.get('dest_name') or ''}")
    if len(key) > EGRESS_KEY_KEEP:  # a wire name may be far longer than the column
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        key = f"{key[: EGRESS_KEY_KEEP - 72]}|sha256:{digest}"
    return key


class _DeviceCache:
    """Devices and LDM histories looked up once per batch."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self.store = store
        self.conn = conn
        self._devices: dict[tuple[str | None, str | None], dict[str, Any] | None] = {}
        self._changes: dict[int, list[tuple[float, bool]]] = {}
        self._declared: tuple[list[dict[str, Any]], Policy] | None = None

    def get(self, ip: str | None, mac: str | None) -> dict[str, Any] | None:
        key = (ip, mac)
        if key not in self._devices:
            self._devices[key] = self.store._find(self.conn, ip, mac)
        return self._devices[key]

    def claim(
        self, ip: str | None, mac: str | None = None, hostname: str | None = None
    ) -> dict[str, Any] | None:
        """The device of a host: its own, else, when a network or host-name declaration names
        it (`policy.Policy.for_device`, as `--device` in `analyze`), a device adopted with the
        declaration's policy. A discovered device the declaration names is adopted too; one a
        user declared by address keeps its own policy, as an address wins over a network."""
        device = self.get(ip, mac)
        if device is not None and (device["parent_id"] is not None or not device["discovered"]):
            return device
        if ip is None:
            return device
        declarations, policy = self._declarations()
        named = policy.for_device(ip, mac, hostname or (device or {}).get("hostname"))
        parent = next(
            (d for d, p in zip(declarations, policy.devices, strict=True) if p is named), None
        )
        if parent is None:
            return device
        adopted = self.store.adopt(self.conn, parent, device, ip, mac, hostname)
        self._devices = {}
        self._changes.pop(int(adopted["id"]), None)
        return adopted

    def _declarations(self) -> tuple[list[dict[str, Any]], Policy]:
        if self._declared is None:
            found = self.store.declarations(self.conn)
            self._declared = (
                found,
                Policy(
                    devices=[
                        DevicePolicy(net=d["net"], hostname=d["hostname"], declared=True)
                        for d in found
                    ]
                ),
            )
        return self._declared

    def changes(self, device_id: int) -> list[tuple[float, bool]]:
        if device_id not in self._changes:
            self._changes[device_id] = self.store.ldm_changes_for(self.conn, device_id)
        return self._changes[device_id]
