"""Multicast DNS and DNS-SD on UDP 5353: the names and services a device asks for and announces.

mDNS (RFC 6762) uses the DNS message format, so messages are read with the DNS analyzer's
decoder. Service discovery (RFC 6763) is what makes it interesting here: a drone app browsing
for `_arsdk-0914._udp.local` or a controller announcing itself tells what is on the link. The
same announcements repeat every few seconds, so mdns.jsonl holds each distinct set of names of a
flow once; mdns_messages.jsonl holds every message (who announced or asked what, and when), as
Zeek's dns.log holds mDNS: its first question, or the first answer's name, and its answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from dronewatch.analyzers.dns import (
    DNS_TYPE_A,
    DNS_TYPE_AAAA,
    DnsMessage,
    dns_rcode_name,
    dns_type_name,
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
    max_messages_per_flow: int = 10_000
    """Messages written per flow to mdns_messages.jsonl (0: none); mdns.jsonl goes on past it."""
    follow_flow: bool = True
    """Follow mDNS flows to their end, so that the messages (and new names) of a long-lived flow
    (a host's announcements every few seconds) are read past the engine's first inspected
    packets."""


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


@dataclass(frozen=True, slots=True)
class MdnsMessageRecord(ConnRecord):
    """One mDNS message, as Zeek's dns.log writes an mDNS message: what it asks or announces.

    `ts` is the time of the message. Queries and answers are not paired (an answer goes to the
    group, often unasked: RFC 6762 6, 8.3), so each message is a record of its own.
    """

    log: ClassVar[str] = "mdns_messages"
    src_h: str
    """Sender of the message."""
    trans_id: int
    """DNS transaction id (0 in multicast messages, RFC 6762 18.1)."""
    is_response: bool
    """An announcement or answer rather than a query."""
    query: str | None = None
    """The first question's name, lower case; of a response without questions, the owner name
    of its first answer record (as Zeek logs it)."""
    qtype_name: str | None = None
    """The first question's type (A, AAAA, PTR, ANY...)."""
    questions: int = 0
    """Entries of the question section."""
    rcode_name: str | None = None
    """Response code of a response (NOERROR...)."""
    answers: tuple[str, ...] = ()
    """The answer section's records as dns.jsonl writes them (addresses, target names, `TXT
    <len> <text>`...)."""
    ttls: tuple[int, ...] = ()
    """Time to live of each entry of `answers`, seconds (0 in a goodbye announcement)."""


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
    """Decode mDNS queries and announcements on UDP 5353 into mdns.jsonl and
    mdns_messages.jsonl records."""

    name = "mdns"
    wants_ports = frozenset({MDNS_PORT})
    """The ports `wants` reads (`WantsHook`)."""

    def __init__(self, ctx: Context, options: MdnsOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or MdnsOptions()
        self._seen: dict[str, set[int]] = {}  # per flow.uid: hashes of records written; flow_end
        self._messages: dict[str, int] = {}  # per flow.uid: messages written; flow_end

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
            msg = parse_dns_message(pkt.payload, extra=True, text=True)
        except DecodeError as exc:
            logger.debug("%s: undecodable mDNS message: %s", flow.uid, exc)
            return
        flow.service = "mdns"
        if self.options.follow_flow:
            flow.follow(self.name)
        written = self._messages.get(flow.uid, 0)
        if written < self.options.max_messages_per_flow:
            self._messages[flow.uid] = written + 1
            self.ctx.emit(self._message(flow, pkt, msg))
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
        self._messages.pop(flow.uid, None)

    def _message(self, flow: Flow, pkt: Packet, msg: DnsMessage) -> MdnsMessageRecord:
        limit = self.options.max_names
        answers: list[str] = []
        ttls: list[int] = []
        for rr in msg.answers:
            if rr.text and len(answers) < limit:  # none for the types Zeek writes nothing for
                answers.append(rr.text)
                ttls.append(rr.ttl)
        first = msg.questions[0] if msg.questions else None
        if first is not None:
            query: str | None = first.name
        else:
            query = msg.answers[0].name if msg.answers else None
        return MdnsMessageRecord(
            ts=pkt.ts,
            **conn(flow),
            src_h=ip_str(pkt.src),
            trans_id=msg.trans_id,
            is_response=msg.is_response,
            query=(query.lower().rstrip(".") or None) if query is not None else None,
            qtype_name=dns_type_name(first.qtype) if first is not None else None,
            questions=len(msg.questions),
            rcode_name=dns_rcode_name(msg.rcode) if msg.is_response else None,
            answers=tuple(answers),
            ttls=tuple(ttls),
        )

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


__all__ = [
    "MDNS_PORT",
    "MdnsAnalyzer",
    "MdnsMessageRecord",
    "MdnsOptions",
    "MdnsRecord",
    "service_type",
]
