"""Multicast DNS and DNS-SD on UDP 5353: the names and services a device asks for and announces.

mDNS (RFC 6762) uses the DNS message format, so messages are read with the DNS analyzer's
decoder. Service discovery (RFC 6763) is what makes it interesting here: a drone app browsing
for `_arsdk-0914._udp.local` or a controller announcing itself tells what is on the link. The
same announcements repeat every few seconds, so a flow writes each distinct set of names once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from dronewatch.analyzers.dns import (
    DNS_TYPE_A,
    DNS_TYPE_AAAA,
    DnsMessage,
    parse_dns_message,
)
from dronewatch.core.flow import IP_PROTO_UDP, Flow, Packet, ip_str
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

MDNS_PORT = 5353
_SERVICE_PROTOS = ("_udp", "_tcp")


@dataclass(frozen=True, slots=True)
class MdnsOptions:
    """Tunables of the mDNS analyzer."""

    max_records_per_flow: int = 64
    """Distinct records written per flow; a message with the same names as an earlier one of the
    flow is not written again."""
    max_names: int = 32
    """Entries kept in each list of a record."""


@dataclass(frozen=True, slots=True)
class MdnsRecord(ConnRecord):
    """One mDNS message with names not seen before on its flow."""

    log: ClassVar[str] = "mdns"
    src_h: str
    """Sender of the message (the originator, or the responder of a unicast exchange)."""
    is_response: bool
    """An announcement or answer rather than a query."""
    queries: tuple[str, ...] = ()
    """Names of the question section, as sent, without the trailing dot."""
    answers: tuple[str, ...] = ()
    """Owner names of the answer, authority and additional records, and the names their PTR,
    SRV and CNAME data point at."""
    services: tuple[str, ...] = ()
    """DNS-SD service types found in any name (`_arsdk-0914._udp.local`), lower case."""
    addresses: tuple[str, ...] = ()
    """Addresses of the A/AAAA records."""


def service_type(name: str) -> str | None:
    """The DNS-SD service type a name belongs to (`_http._tcp.local`), or None (RFC 6763 4.1)."""
    labels = name.lower().split(".")
    for i in range(1, len(labels)):
        if labels[i] in _SERVICE_PROTOS and labels[i - 1].startswith("_"):
            return ".".join(labels[i - 1 :])
    return None


class _Names:
    """An ordered, bounded set of names."""

    __slots__ = ("items", "limit")

    def __init__(self, limit: int) -> None:
        self.items: dict[str, None] = {}
        self.limit = limit

    def add(self, name: str) -> None:
        if name and len(self.items) < self.limit:
            self.items.setdefault(name, None)

    def out(self) -> tuple[str, ...]:
        return tuple(self.items)


class MdnsAnalyzer:
    """Decode mDNS queries and announcements on UDP 5353 into mdns.jsonl records."""

    name = "mdns"

    def __init__(self, ctx: Context, options: MdnsOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or MdnsOptions()
        self._seen: dict[str, set[int]] = {}  # per flow.uid: hashes of records written; flow_end

    def wants(self, flow: Flow) -> bool:
        """Only UDP flows on port 5353."""
        return flow.proto == IP_PROTO_UDP and MDNS_PORT in (flow.resp_p, flow.orig_p)

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Read one mDNS message and write it unless its flow already wrote the same names."""
        if flow.proto != IP_PROTO_UDP or MDNS_PORT not in (flow.resp_p, flow.orig_p):
            return
        if not pkt.payload:
            return
        try:
            msg = parse_dns_message(pkt.payload, extra=True)
        except DecodeError as exc:
            logger.debug("%s: undecodable mDNS message: %s", flow.uid, exc)
            return
        flow.service = "mdns"
        seen = self._seen.setdefault(flow.uid, set())
        if len(seen) >= self.options.max_records_per_flow:
            return
        record = self._record(flow, pkt, msg)
        key = hash(
            (
                record.src_h,
                record.is_response,
                record.queries,
                record.answers,
                record.services,
                record.addresses,
            )
        )
        if key in seen:
            return
        seen.add(key)
        self.ctx.emit(record)

    def flow_end(self, flow: Flow) -> None:
        """Drop the flow's state."""
        self._seen.pop(flow.uid, None)

    def _record(self, flow: Flow, pkt: Packet, msg: DnsMessage) -> MdnsRecord:
        limit = self.options.max_names
        queries, answers, services, addresses = (_Names(limit) for _ in range(4))
        for question in msg.questions:
            queries.add(question.name)
            if kind := service_type(question.name):
                services.add(kind)
        for rr in (*msg.answers, *msg.extra):
            answers.add(rr.name)
            if kind := service_type(rr.name):
                services.add(kind)
            if rr.value is None:
                continue
            if rr.rtype in (DNS_TYPE_A, DNS_TYPE_AAAA):
                addresses.add(rr.value)
                continue
            answers.add(rr.value)
            if kind := service_type(rr.value):
                services.add(kind)
        return MdnsRecord(
            ts=pkt.ts,
            **conn(flow),
            src_h=ip_str(pkt.src),
            is_response=msg.is_response,
            queries=queries.out(),
            answers=answers.out(),
            services=services.out(),
            addresses=addresses.out(),
        )


__all__ = ["MDNS_PORT", "MdnsAnalyzer", "MdnsOptions", "MdnsRecord", "service_type"]
