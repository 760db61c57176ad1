"""The policy stage: classify and geolocate each finished flow, find the ground stations, and turn
traffic that left a device while its local-data mode was on into alerts and per-device verdicts."""

from __future__ import annotations

import heapq
import ipaddress
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, ClassVar, NamedTuple

from dronewatch.core.flow import Flow, ip_str, mac_str
from dronewatch.core.hooks import Context, Record, make_record
from dronewatch.geoip.base import GEOIP_CONFIGURED, GEOIP_ON_LINK, GeoInfo, Resolver
from dronewatch.geoip.local import is_local_name
from dronewatch.judge.alert import NOTE_LEAK, Alert
from dronewatch.judge.classify import Classification, Classifier
from dronewatch.judge.devices import (
    CONFIDENCE_DECLARED,
    CONFIDENCE_PHONE_SIDE,
    DeviceBook,
    Host,
    LocalFlow,
)
from dronewatch.judge.egress import (
    KIND_ATTEMPT,
    KIND_FLOW,
    KIND_LOOKUP,
    Egress,
    EgressBook,
    EgressRecord,
    judge_device,
    unanswered_attempt,
)
from dronewatch.judge.evidence import EvidenceKeeper
from dronewatch.judge.flowlog import flow_record, server_name
from dronewatch.judge.policy import DevicePolicy, Policy
from dronewatch.judge.verdict import Coverage, Sent, decide

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _HostTraffic:
    local_pkts: int = 0
    local_link_pkts: int = 0
    pkts: int = 0
    gap_flows: int = 0
    """TCP flows of the host with content gaps (`dronewatch.core.tcp`)."""
    missed_bytes: int = 0
    stopped_flows: int = 0
    """Flows of the host whose inspection stopped (`EngineOptions.stall_packets`)."""

    def add(self, other: _HostTraffic) -> None:
        """Count another process's share of the host's flows in (`Monitor.add_tally`)."""
        self.local_pkts += other.local_pkts
        self.local_link_pkts += other.local_link_pkts
        self.pkts += other.pkts
        self.gap_flows += other.gap_flows
        self.missed_bytes += other.missed_bytes
        self.stopped_flows += other.stopped_flows


@dataclass(frozen=True, slots=True)
class VerdictRecord(Record):
    """Whether anything left a ground-station device while its local-data mode was on."""

    log: ClassVar[str] = "verdicts"
    device_ip: str
    device_mac: str | None
    device_name: str | None
    ldm: str
    """on, off, or windows (on between given times)."""
    scope: str
    verdict: str
    """clean, violation, incomplete (damaged capture or drops, nothing found), not_applicable."""
    msg: str
    bytes_out: int
    """Bytes the device sent off itself while LDM was on (LDM off: in total)."""
    destinations: int
    categories: tuple[str, ...]
    alerts: int
    vendor_dns_lookups: int
    allowed_bytes: int
    """Bytes sent to exempt destinations (e.g. maps) while LDM was on."""
    packets: int
    """Packets of this device that were inspected."""
    local_link_packets: int
    aircraft: tuple[str, ...]
    drops: int | None
    capture_complete: bool
    reasons: tuple[str, ...]
    """Why the host is a ground station."""
    end_ts: float
    attempts: int = 0
    """Destinations the device tried to reach while LDM was on and delivered nothing to."""
    confidence: float | None = None
    """How sure the strongest reason is (1.0: named by the user)."""


@dataclass(frozen=True, slots=True)
class DeviceRecord(Record):
    """A local host and what it was taken for."""

    log: ClassVar[str] = "devices"
    ip: str
    mac: str | None
    hostname: str | None
    vendor_oui: str | None
    roles: tuple[str, ...]
    reasons: tuple[str, ...]
    """Why the host was given its roles."""
    confidence: float | None = None
    """How sure the strongest reason is."""
    not_judged: str | None = None
    """Why a local host was not taken for a ground station (no verdict of its own)."""


class FlowEnd(NamedTuple):
    """What the books kept across flows need of one finished flow (`Monitor.account`), taken by
    `Monitor.settle`. A process sharing a capture (`dronewatch.core.split`) sends it to the parent,
    which keeps the books in the capture's order: plain values, the flow's egress observations,
    and the flow itself only where the device book reads its facts."""

    first_ts: float
    last_ts: float
    orig_ip: str
    resp_ip: str
    orig_mac: bytes
    resp_mac: bytes
    orig_local: bool
    resp_local: bool
    orig_pkts: int
    resp_pkts: int
    dhcp_hostname: str | None
    link: str | None
    """The drone link recognised on the flow."""
    missed: int
    """Bytes in the flow's content gaps."""
    stopped: bool
    """Whether its inspection stopped early."""
    egress: tuple[EgressRecord, ...]
    """Its egress observation, then the lookups it carried (written by `settle`)."""
    local: tuple[LocalFlow, Classification | None] | None
    """Of a drone link's flow or one between two local hosts, what the device book reads (which
    end is the ground station, from its facts), with its classification."""


class Tally(NamedTuple):
    """The counts `Monitor.tally` keeps across flows, whatever their order."""

    first_ts: float | None
    last_ts: float
    flows: int
    gap_flows: int
    missed_bytes: int
    stopped_flows: int
    ends: dict[str, int]
    traffic: dict[str, _HostTraffic]


PHONE_SIDE_LINKTYPES = frozenset({"raw", "ipv4", "ipv6", "null", "loop"})
"""Link types of captures made on the device itself (a VPN app's tun, PCAPdroid, a loopback)."""

NOT_JUDGED_SHOWN = 20
"""Local hosts listed, busiest first, when no ground station was found (the rest are counted)."""


class Monitor:
    """Runs last at flow end: enriches the flow record and keeps the egress book."""

    name = "monitor"
    helpers = ("finish", "settle", "account", "tally", "book", "tally_state", "add_tally")
    """What the pipeline calls on it besides the hooks."""

    def __init__(
        self,
        ctx: Context,
        policy: Policy,
        classifier: Classifier | None,
        resolver: Resolver,
        evidence: EvidenceKeeper | None = None,
        *,
        announce: bool = False,
        handoff: Callable[[FlowEnd], None] | None = None,
    ) -> None:
        """`announce`: write device records when ground stations are found, not only at the end
        (a live capture has no end for the service to wait for). `handoff`: where each finished
        flow's `FlowEnd` goes instead of this monitor's own books (`account`): a process sharing
        a capture hands it to the parent that keeps them."""
        self.ctx = ctx
        self.handoff = handoff
        self.announce = announce
        self._announced: set[str] = set()
        self.evidence = evidence
        self.policy = policy
        self._declared_macs = policy.declared_macs
        self.classifier = classifier
        self.resolver = resolver
        self.devices = DeviceBook()
        self._book = EgressBook()
        self._traffic: dict[str, _HostTraffic] = {}
        self._first_ts: float | None = None
        self._last_ts = 0.0
        self._dhcp: dict[str, str] = {}
        self._flows = 0
        self.gap_flows = 0
        """TCP flows with content gaps, of every host (the capture record's `gap_flows`)."""
        self.missed_bytes = 0
        self.stopped_flows = 0
        """Flows whose inspection stopped, of every host (the capture record's
        `inspection_stopped`)."""
        self._ends: dict[str, int] = {}
        self._named: dict[str, DevicePolicy] = {}
        """The declared device each named host was matched to (`finish`)."""
        """How many flows each local host was an end of (a phone-side capture: one host, all)."""

    def flow_end(self, flow: Flow) -> None:
        end = self.settle(flow)
        if self.handoff is None:
            self.account(end)
            return
        self.tally(end)  # sums, in any order: kept here, added to the parent's at the end
        if end.dhcp_hostname or end.local is not None or end.egress:
            self.handoff(end)  # what the books need in the capture's order

    def settle(self, flow: Flow) -> FlowEnd:
        """What one finished flow is, alone: classified and geolocated, its record, evidence and
        egress observations written; what the books across flows need of it."""
        resp_geo = self.resolver.lookup(flow.resp_h)
        orig_geo = self.resolver.lookup(flow.orig_h)
        if self._declared_macs:
            # An end whose frames come from a device declared by its MAC is that device, on the
            # local network whatever its address (a phone's global IPv6 addresses).
            if flow.orig_mac in self._declared_macs and orig_geo.scope != "local":
                orig_geo = GEOIP_CONFIGURED
            if flow.resp_mac in self._declared_macs and resp_geo.scope != "local":
                resp_geo = GEOIP_CONFIGURED
        on_link = self.ctx.on_link
        if on_link:
            # A public address the link's protocols showed on the capture's link is a host of
            # the site's network (IPv6 Neighbor Discovery, ARP: `dronewatch.geoip.onlink`).
            if orig_geo.scope == "public" and flow.orig_h in on_link:
                orig_geo = GEOIP_ON_LINK
            if resp_geo.scope == "public" and flow.resp_h in on_link:
                resp_geo = GEOIP_ON_LINK
        orig_local = orig_geo.scope == "local"
        resp_local = resp_geo.scope == "local"
        cls = None
        if self.classifier is not None:
            # A lookup is not traffic to the name looked up: that is judged in _dns().
            queries = flow.service not in ("dns", "mdns")
            cls = self.classifier.classify(
                flow, asn=resp_geo.asn, queries=queries, resp_local=_LOCAL_SCOPE[resp_geo.scope]
            )
            if cls is None and not resp_local:
                cls = self.classifier.behavioural_label(flow, resp_local=False)
        record = flow_record(flow, cls, resp_geo, orig_geo)
        self.ctx.emit(record)
        if self.evidence is not None:
            if orig_local != resp_local:
                evidence = self.evidence.take(flow)
                if evidence is not None:
                    self.ctx.emit(evidence)
            else:
                self.evidence.drop(flow)
        egress: list[EgressRecord] = []
        if orig_local and not resp_local:
            self._egress_flow(flow, cls, resp_geo, record.community_id, egress, outbound=True)
        elif resp_local and not orig_local:
            self._egress_flow(flow, cls, orig_geo, record.community_id, egress, outbound=False)
        if orig_local and flow.service == "dns":
            self._dns(flow, egress)
        for obs in egress:
            self.ctx.emit(obs)
        link = flow.meta.get("link")
        hostname = flow.meta.get("dhcp_hostname")
        return FlowEnd(
            flow.first_ts,
            flow.last_ts,
            flow.orig_ip,
            flow.resp_ip,
            flow.orig_mac,
            flow.resp_mac,
            orig_local,
            resp_local,
            flow.orig_pkts,
            flow.resp_pkts,
            hostname if isinstance(hostname, str) else None,
            link if isinstance(link, str) else None,
            record.missed_bytes or 0,
            record.inspection is not None,
            tuple(egress),
            (LocalFlow.of(flow), cls)
            if isinstance(link, str) or (orig_local and resp_local)
            else None,
        )

    def account(self, end: FlowEnd) -> None:
        """Fold a finished flow into the books kept across flows (hosts, ground stations, what
        left each device, DHCP names), in the capture's order: its sums (`tally`), then what
        depends on the order (`book`)."""
        self.tally(end)
        self.book(end)

    def tally(self, end: FlowEnd) -> None:
        """Add a finished flow to the counts kept across flows that do not depend on the order
        flows come in (the capture's times, flows, packets and what was kept from view, per
        local host): a process sharing a capture keeps them for its flows, and the parent adds
        each process's (`tally_state`, `add_tally`)."""
        if self._first_ts is None or end.first_ts < self._first_ts:
            self._first_ts = end.first_ts
        self._last_ts = max(self._last_ts, end.last_ts)
        orig_local, resp_local, link = end.orig_local, end.resp_local, end.link
        self._flows += 1
        missed, stopped = end.missed, end.stopped
        if missed:
            self.gap_flows += 1
            self.missed_bytes += missed
        self.stopped_flows += stopped
        orig_ip, resp_ip = end.orig_ip, end.resp_ip
        for ip, local in ((orig_ip, orig_local), (resp_ip, resp_local)):
            if local:
                self._ends[ip] = self._ends.get(ip, 0) + 1
        if orig_local:
            self._count(orig_ip, end.orig_pkts, resp_local, link is not None)
            self._unseen(orig_ip, missed, stopped)
        if resp_local:
            self._count(resp_ip, end.resp_pkts, orig_local, link is not None)
            self._unseen(resp_ip, missed, stopped)

    def tally_state(self) -> Tally:
        """The counts `tally` kept, for the parent of a shared capture."""
        return Tally(
            self._first_ts,
            self._last_ts,
            self._flows,
            self.gap_flows,
            self.missed_bytes,
            self.stopped_flows,
            self._ends,
            self._traffic,
        )

    def add_tally(self, t: Tally) -> None:
        """Add another process's counts (`tally_state`) to these: sums, least and greatest."""
        if t.first_ts is not None and (self._first_ts is None or t.first_ts < self._first_ts):
            self._first_ts = t.first_ts
        self._last_ts = max(self._last_ts, t.last_ts)
        self._flows += t.flows
        self.gap_flows += t.gap_flows
        self.missed_bytes += t.missed_bytes
        self.stopped_flows += t.stopped_flows
        for ip, n in t.ends.items():
            self._ends[ip] = self._ends.get(ip, 0) + n
        for ip, traffic in t.traffic.items():
            mine = self._traffic.get(ip)
            if mine is None:
                self._traffic[ip] = traffic
            else:
                mine.add(traffic)

    def book(self, end: FlowEnd) -> None:
        """Fold what depends on the order flows come in into the books: DHCP names, the device
        book (drone links, local rules, streams, vendor traffic) and the egress book."""
        orig_local, resp_local, link = end.orig_local, end.resp_local, end.link
        orig_ip, resp_ip = end.orig_ip, end.resp_ip
        if end.dhcp_hostname and end.orig_mac:
            self._dhcp[mac_str(end.orig_mac)] = end.dhcp_hostname
        if end.local is not None:
            flow, cls = end.local
            if link is not None:
                self.devices.observe_link(flow, link)
            elif orig_local and resp_local:
                if cls is not None and cls.local and cls.responder:
                    self.devices.observe_local_rule(
                        flow, cls.responder, cls.vendor, cls.rule_id, cls.confidence
                    )
                self.devices.observe_streams(flow)
        lookups = False
        for obs in end.egress:
            if obs.kind == KIND_LOOKUP:
                lookups = True
                continue
            if obs.rule_id is not None and not obs.behavioural:
                self.devices.observe_vendor_traffic(
                    obs.host_ip,
                    obs.host_mac or b"",
                    obs.vendor or "",
                    obs.rule_id,
                    obs.confidence or 0.0,
                )
            else:
                self.devices.host(obs.host_ip, obs.host_mac or b"")
            self._observe(obs)
        if self.announce:
            if self.policy.devices:  # a live capture names the declared hosts as they appear
                for ip, mac, local in (
                    (orig_ip, end.orig_mac, orig_local),
                    (resp_ip, end.resp_mac, resp_local),
                ):
                    if local and self._policy(ip, mac_str(mac) or None).declared:
                        self.devices.host(ip, mac).mark(
                            "ground_station", "named by the user", CONFIDENCE_DECLARED
                        )
            self._announce()
        if lookups:
            for obs in end.egress:
                if obs.kind != KIND_LOOKUP:
                    continue
                if obs.rule_id is not None:
                    self.devices.observe_vendor_traffic(
                        obs.host_ip,
                        obs.host_mac or b"",
                        obs.vendor or "",
                        obs.rule_id,
                        obs.confidence or 0.0,
                    )
                self._observe(obs)

    def _count(self, ip: str, pkts: int, peer_local: bool, link: bool) -> None:
        t = self._traffic.get(ip)
        if t is None:
            t = self._traffic[ip] = _HostTraffic()
        t.pkts += pkts
        if peer_local:
            t.local_pkts += pkts
        if link:
            t.local_link_pkts += pkts

    def _unseen(self, ip: str, missed: int, stopped: bool) -> None:
        """What the host's flow kept from view: `missed` bytes in content gaps, an inspection
        stopped (`_count` has made the host's entry)."""
        if missed or stopped:
            t = self._traffic[ip]
            t.gap_flows += bool(missed)
            t.missed_bytes += missed
            t.stopped_flows += stopped

    def _policy(self, ip: str, mac: str | None) -> DevicePolicy:
        return self.policy.for_device(ip, mac, self._dhcp.get(mac) if mac else None)

    def _egress_flow(
        self,
        flow: Flow,
        cls: Classification | None,
        geo: GeoInfo,
        cid: str,
        out: list[EgressRecord],
        *,
        outbound: bool,
    ) -> None:
        """The flow's egress observation, added to `out` (none when nothing left the host)."""
        if outbound:
            host_h, host_mac, dest_h, dest_p = flow.orig_h, flow.orig_mac, flow.resp_h, flow.resp_p
            out_b, in_b, out_p, in_p = (
                flow.orig_bytes,
                flow.resp_bytes,
                flow.orig_pkts,
                flow.resp_pkts,
            )
        else:
            host_h, host_mac, dest_h, dest_p = flow.resp_h, flow.resp_mac, flow.orig_h, flow.orig_p
            out_b, in_b, out_p, in_p = (
                flow.resp_bytes,
                flow.orig_bytes,
                flow.resp_pkts,
                flow.orig_pkts,
            )
        if out_p == 0:
            return  # nothing left the host
        payload_out = flow.orig_payload_bytes if outbound else flow.resp_payload_bytes
        attempt = outbound and unanswered_attempt(flow.proto_name, flow.service, in_p, payload_out)
        evidence: dict[str, str] = dict(cls.matched) if cls is not None else {}
        for k in ("sni", "quic_sni", "http_host", "dns_name", "ja4"):
            fact = flow.meta.get(k)
            if isinstance(fact, str):
                evidence.setdefault(k, fact)
        out.append(  # in field order (`make_record`: one per flow that left a host)
            make_record(
                EgressRecord,
                (
                    flow.first_ts,  # ts
                    flow.last_ts,
                    flow.uid,
                    KIND_ATTEMPT if attempt else KIND_FLOW,  # kind
                    ip_str(host_h),  # host_ip
                    ip_str(dest_h),  # dest_ip
                    dest_p,  # dest_port
                    flow.proto_name,  # proto
                    out_b,  # bytes_out
                    in_b,  # bytes_in
                    out_p,  # pkts_out
                    in_p,  # pkts_in
                    cls.category if cls is not None else "other",  # category
                    mac_str(host_mac) or None,  # host_mac
                    server_name(flow) if outbound else None,  # dest_name
                    cid,  # community_id
                    *_classification_values(cls),
                    evidence,
                    geo.country_code,  # dest_country
                    geo.asn,  # dest_asn
                    geo.as_org,  # dest_as_org
                ),
            )
        )

    def _observe(self, obs: EgressRecord) -> None:
        """Fold an egress observation into the book, with the host's LDM state."""
        ldm = self._policy(obs.host_ip, obs.host_mac).ldm_on(obs.ts, obs.last_ts)
        self._book.add(obs, ldm)

    def _dns(self, flow: Flow, out: list[EgressRecord]) -> None:
        """The names a local host looked up, added to `out`: a drone vendor's name is a vendor
        lookup, any other name the local network does not answer an attempt to reach off the
        device."""
        names = flow.meta.get("dns_query")
        if not isinstance(names, list):
            return
        classify = self.classifier.classify_name if self.classifier is not None else None
        for qname in names:
            cls = classify(qname) if classify is not None else None
            if cls is not None and (cls.behavioural or cls.category == "local_link"):
                continue
            if cls is None and is_local_name(qname, self.resolver.local):
                continue  # a name the local network answers: not an attempt to leave
            out.append(  # in field order (`make_record`: one per name a DNS flow asked)
                make_record(
                    EgressRecord,
                    (
                        flow.first_ts,  # ts
                        flow.last_ts,
                        flow.uid,
                        KIND_LOOKUP,  # kind
                        flow.orig_ip,  # host_ip
                        flow.resp_ip,  # dest_ip
                        flow.resp_p,  # dest_port
                        flow.proto_name,  # proto
                        0,  # bytes_out
                        0,  # bytes_in
                        1,  # pkts_out
                        0,  # pkts_in
                        cls.category if cls is not None else "other",  # category
                        mac_str(flow.orig_mac) or None,  # host_mac
                        qname,  # dest_name
                        None,  # community_id
                        *_classification_values(cls),
                        {"dns_query": qname},  # evidence
                        None,  # dest_country
                        None,  # dest_asn
                        None,  # dest_as_org
                    ),
                )
            )

    def _device_record(self, host: Host) -> DeviceRecord:
        if host.mac and not host.hostname:
            host.hostname = self._dhcp.get(host.mac)
        return DeviceRecord(
            ts=self._first_ts or 0.0,
            ip=host.ip,
            mac=host.mac,
            hostname=host.hostname,
            vendor_oui=host.vendor_oui,
            roles=tuple(sorted(host.roles)),
            reasons=tuple(host.reasons),
            confidence=round(host.confidence, 2) if host.roles else None,
        )

    def _announce(self) -> None:
        """Write a device record as soon as a ground station is found (live capture)."""
        for host in self.devices.ground_stations():
            if host.ip not in self._announced:
                self._announced.add(host.ip)
                self.ctx.emit(self._device_record(host))

    def finish(
        self,
        *,
        drops: int | None,
        complete: bool,
        analyzer_errors: int = 0,
        linktypes: dict[str, int] | None = None,
        evicted_flows: int = 0,
        bad_checksums: int = 0,
        encrypted: dict[bytes, int] | None = None,
    ) -> list[Alert]:
        """Emit devices, alerts and one verdict per ground station; returns the alerts.
        `analyzer_errors`: failed analyzer hook calls, and `evicted_flows`: flows the full flow
        table ended early, each of which leaves a verdict incomplete; `bad_checksums`: packets
        dropped unread for a wrong checksum, which each verdict names; `encrypted`: protected
        802.11 data frames by the MAC that sent them, which leave the verdict of the device
        that sent them incomplete; `linktypes`: the capture's link types by name, which tell a
        capture made on the device."""
        stations = {h.ip: h for h in self.devices.ground_stations()}
        self._declared(stations)
        if not stations:
            self._phone_side(stations, linktypes or {})
        for host in sorted(self.devices.hosts.values(), key=lambda h: h.ip):
            self.ctx.emit(self._device_record(host))
        if not stations:
            self._not_judged()
        by_host = self._book.by_host()
        aircraft = tuple(sorted(h.ip for h in self.devices.hosts.values() if "aircraft" in h.roles))
        alerts: list[Alert] = []
        coverage = (drops, complete, analyzer_errors, evicted_flows, bad_checksums)
        sent_encrypted = {mac_str(mac): n for mac, n in (encrypted or {}).items()}
        for ip, host in sorted(stations.items()):
            alerts.extend(
                self._verdict(ip, host, by_host.get(ip, []), aircraft, coverage, sent_encrypted)
            )
        return alerts

    def _declared(self, stations: dict[str, Host]) -> None:
        """Add the devices the user named (policy file, `--device`) to `stations`: each host a
        declared device matches, or the declaration itself when no host matched (its verdict
        then says nothing of it was seen)."""
        if not self.policy.devices:
            return
        hosts = self.devices.hosts
        seen = [(ip, hosts.get(ip)) for ip in sorted(set(self._traffic) | set(hosts))]
        for dev in self.policy.devices:
            matched = [
                self.devices.host(ip)
                for ip, h in seen
                if self.policy.for_device(ip, h.mac if h else None, self._name(h) if h else None)
                is dev
            ]
            if not matched:
                ident = dev.ip or dev.mac or dev.net or dev.hostname or dev.name
                matched = [stations.get(ident) or self.devices.host(ident)]
            for host in matched:
                host.mark("ground_station", "named by the user", CONFIDENCE_DECLARED)
                stations[host.ip] = host
                self._named[host.ip] = dev

    def _phone_side(self, stations: dict[str, Host], linktypes: dict[str, int]) -> None:
        """A capture made on the device: the one local host that is an end of every flow (not an
        aircraft) is the device, judged without being named."""
        if not self._flows:
            return
        ends = [
            ip
            for ip, n in self._ends.items()
            if n == self._flows and "aircraft" not in self.devices.host(ip).roles
        ]
        if len(ends) != 1:
            return
        ip = ends[0]
        raw = sorted(set(linktypes) & PHONE_SIDE_LINKTYPES)
        how = f"a {'/'.join(raw)} capture, made on the device, in which " if raw else ""
        host = self.devices.host(ip)
        host.mark(
            "ground_station",
            f"phone-side capture: {how}it is an end of every one of the {self._flows:,} flows",
            CONFIDENCE_PHONE_SIDE,
        )
        stations[ip] = host

    def _not_judged(self) -> None:
        """No ground station: a device record for each local host that was considered (the
        busiest first), saying why it was not judged, so the verdict is never silently empty."""
        for ip in islice(_busiest_hosts(self._traffic), NOT_JUDGED_SHOWN):
            host = self.devices.host(ip)
            if "ground_station" in host.roles:
                continue
            record = self._device_record(host)
            self.ctx.emit(replace(record, not_judged=self.devices.not_judged(host)))

    def _name(self, host: Host) -> str | None:
        """A host's DHCP host name, if it gave one."""
        return host.hostname or (self._dhcp.get(host.mac) if host.mac else None)

    def _verdict(
        self,
        ip: str,
        host: Host,
        entries: list[Egress],
        aircraft: tuple[str, ...],
        coverage: tuple[int | None, bool, int, int, int],
        encrypted: dict[str, int],
    ) -> list[Alert]:
        """The verdict of one ground station from its egress entries, and its alerts;
        `coverage`: the capture's drops, completeness, analyzer failures, evicted flows and
        packets dropped for a wrong checksum; `encrypted`: protected 802.11 data frames by the
        MAC that sent them."""
        drops, complete, analyzer_errors, evicted, bad_checksums = coverage
        policy = self._named.get(ip) or self._policy(ip, host.mac)
        # Its MAC: the host's, or the one the user named it by when nothing of it was read.
        mac = host.mac or policy.mac
        sent_encrypted = encrypted.get(mac.lower(), 0) if mac else 0
        name = policy.name or host.hostname
        judgement = judge_device(entries, policy, name)
        alerts = judgement.alerts
        traffic = self._traffic.get(ip, _HostTraffic())
        ldm_text = (
            "on" if policy.ldm and not policy.windows else ("windows" if policy.ldm else "off")
        )
        verdict = decide(
            policy.ldm,
            [Sent(a.note, a.category, a.dest_name or a.dest_ip or "", a.bytes_out) for a in alerts],
            [Sent(e.note, e.category, e.dest, e.bytes_out) for e in entries if e.note == NOTE_LEAK],
            Coverage(
                traffic.pkts,
                drops,
                complete,
                analyzer_errors=analyzer_errors,
                evicted_flows=evicted,
                gap_flows=traffic.gap_flows,
                missed_bytes=traffic.missed_bytes,
                stopped_flows=traffic.stopped_flows,
                bad_checksums=bad_checksums,
                encrypted_frames=sent_encrypted,
                seen=ip in self._ends or sent_encrypted > 0,
            ),
            judgement.allowed_bytes,
        )
        for alert in alerts:
            self.ctx.emit(alert)
        self.ctx.emit(
            VerdictRecord(
                ts=self._first_ts or 0.0,
                device_ip=ip,
                device_mac=host.mac,
                device_name=name,
                ldm=ldm_text,
                scope=policy.scope,
                verdict=verdict.verdict,
                msg=verdict.msg,
                bytes_out=verdict.bytes_out,
                destinations=verdict.destinations,
                categories=verdict.categories,
                alerts=len(alerts),
                vendor_dns_lookups=verdict.vendor_dns_lookups,
                allowed_bytes=judgement.allowed_bytes,
                packets=traffic.pkts,
                local_link_packets=traffic.local_link_pkts,
                aircraft=aircraft,
                drops=drops,
                capture_complete=complete,
                reasons=tuple(host.reasons),
                end_ts=self._last_ts,
                attempts=verdict.attempts,
                confidence=round(host.confidence, 2),
            )
        )
        return alerts


_LOCAL_SCOPE: dict[str, bool | None] = {"local": True, "public": False, "unknown": None}
"""Whether a GeoIP scope is on the local network (the classifier's `resp_local` fact)."""


def _busiest_hosts(traffic: dict[str, _HostTraffic]) -> Iterator[str]:
    """The hosts of `traffic` that could be judged (no group address), the most packets first
    (then by address), taken off a heap as asked for: a scan's tens of thousands of hosts are
    not sorted to name the busiest few."""
    heap = [(-t.pkts, ip) for ip, t in traffic.items()]
    heapq.heapify(heap)
    while heap:
        ip = heapq.heappop(heap)[1]
        if not _group_address(ip):
            yield ip


def _group_address(ip: str) -> bool:
    """Multicast, broadcast and unspecified addresses: not hosts that could be judged."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.is_multicast or addr.is_unspecified or ip == "255.255.255.255"


def _classification_values(cls: Classification | None) -> tuple[Any, ...]:
    """The classification fields of an `EgressRecord`, in its field order: rule_id, vendor, app,
    confidence, severity, evidence_tag, behavioural."""
    if cls is None:
        return _NO_CLASSIFICATION
    return (
        cls.rule_id,
        cls.vendor,
        cls.app,
        cls.confidence,
        cls.severity,
        cls.evidence,
        cls.behavioural,
    )


_NO_CLASSIFICATION = (None,) * 7
