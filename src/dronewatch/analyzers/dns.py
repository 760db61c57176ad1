"""DNS over UDP and TCP port 53: pair each query with its answer into dns.jsonl records.

Every A/AAAA answer also goes into the context's DNS cache under the name the client asked for,
so a later flow to that address is named even when it is encrypted end to end. The records of
every type are logged as Zeek's dns.log writes its `answers` (`_dns_rdata`), and each query sent
is a record of its own, as in Zeek's log.

Messages are read here (RFC 1035 4.1) rather than with `dpkt.dns.DNS`, which rejects a whole
message as soon as one record has a type it does not know (HTTPS, SVCB, NSEC, RRSIG: common in
answers today) or a label that is not UTF-8, and decodes every compression pointer anew (so a
crafted message pointing thousands of times at one long name costs thousands of decodes); the
type and flag constants are RFC 1035's and 3596's. `parse_dns_message` raises only `DecodeError`;
the mDNS analyzer reuses it.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from dronewatch.analyzers._dns_rdata import DNS_TYPE_NAMES, TYPE_ANY, render
from dronewatch.core.flow import IP_PROTO_TCP, IP_PROTO_UDP, Flow, Packet, ip_str
from dronewatch.core.hooks import ConnRecord, Context, DnsCache, conn, conn_values, make_record
from dronewatch.exceptions import DecodeError
from dronewatch.fastpath import native

logger = logging.getLogger(__name__)

DNS_PORT = 53
DNS_HEADER_LEN = 12
DNS_MAX_NAME_LEN = 255
"""RFC 1035 2.3.4: a name is at most 255 bytes on the wire."""
DNS_MAX_POINTER_HOPS = 128
"""Compression pointers followed in a row; a real name needs at most one per label."""

DNS_TYPE_A = 1
DNS_TYPE_NS = 2
DNS_TYPE_CNAME = 5
DNS_TYPE_SOA = 6
DNS_TYPE_PTR = 12
DNS_TYPE_MX = 15
DNS_TYPE_AAAA = 28  # RFC 3596
DNS_TYPE_SRV = 33
DNS_TYPE_DNAME = 39
DNS_FLAG_QR = 0x8000  # RFC 1035 4.1.1: the header's first flag bit
DNS_OPCODE_UPDATE = 5  # RFC 2136 1.3
DNS_CLASS_NONE = 254  # RFC 2136 1.3: the classes an UPDATE's prerequisites and deletions use
DNS_CLASS_ANY = 255

DNS_RCODE_NAMES: dict[int, str] = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
}
"""IANA names of the header response codes (RFC 1035, RFC 2136)."""

_HEADER = struct.Struct(">HHHHHH")
_QUESTION = struct.Struct(">HH")
_RR_FIXED = struct.Struct(">HHIH")
_NAME_TYPES = frozenset({DNS_TYPE_CNAME, DNS_TYPE_NS, DNS_TYPE_PTR, DNS_TYPE_DNAME})
_ADDRESS_TYPES = frozenset({DNS_TYPE_A, DNS_TYPE_AAAA})


def is_dns_response(payload: bytes) -> bool:
    """Whether a datagram is a DNS response: a full header with the QR bit set (RFC 1035
    4.1.1); the engine's originator rule reads it (`Engine._start`)."""
    return len(payload) >= DNS_HEADER_LEN and payload[2] << 8 & DNS_FLAG_QR != 0


def dns_type_name(rtype: int) -> str:
    """The mnemonic of a record type, or `TYPE<n>` (RFC 3597) when it has none here."""
    return DNS_TYPE_NAMES.get(rtype) or f"TYPE{rtype}"


def dns_rcode_name(rcode: int) -> str:
    """The mnemonic of a response code, or `RCODE<n>`."""
    return DNS_RCODE_NAMES.get(rcode) or f"RCODE{rcode}"


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class DnsQuestion:
    """One entry of the question section."""

    name: str
    """Name as sent (case kept), without the trailing dot."""
    qtype: int
    qclass: int
    """Class; mDNS uses the top bit as the unicast-response flag."""


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class DnsResource:
    """One resource record of the answer, authority or additional section."""

    name: str
    """Owner name as sent (case kept), without the trailing dot."""
    rtype: int
    rclass: int
    """Class; mDNS uses the top bit as the cache-flush flag."""
    ttl: int
    """Time to live, seconds."""
    rdata: bytes
    value: str | None = None
    """Text of the data: the address of A/AAAA, the target name of CNAME, DNAME, NS, PTR, SRV
    and MX; None for other types."""
    text: str | None = None
    """The record as Zeek's dns.log writes it among the answers (`_dns_rdata.render`): "" when
    Zeek counts it but writes nothing, None when it logs nothing; only when the message was
    parsed with `text`."""


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class DnsMessage:
    """A decoded DNS (or mDNS) message."""

    trans_id: int
    flags: int
    questions: tuple[DnsQuestion, ...]
    answers: tuple[DnsResource, ...]
    extra: tuple[DnsResource, ...] = ()
    """Authority and additional records, read only when asked for and only as far as they parse."""
    n_authority: int = 0
    """How many of `extra` are the authority section (an UPDATE's update section)."""

    @property
    def is_response(self) -> bool:
        """The QR bit: a response rather than a query."""
        return bool(self.flags & DNS_FLAG_QR)

    @property
    def rcode(self) -> int:
        """Response code from the header (the low 4 bits of the flags)."""
        return self.flags & 0x000F

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0x000F


_Names = dict[int, tuple[str, int]]
"""Names already decoded in one message, by offset: (text, wire length)."""


def _read_name(data: bytes, off: int, names: _Names, depth: int = 0) -> tuple[str, int, int]:
    """The name at `off`: its text, its wire length, and the offset just past it (RFC 1035 4.1.4).

    A compression pointer's target is decoded once per message and then reused from `names`, so
    a message pointing many times at one long name (or at a chain of pointers) costs no more
    than one naming it once.
    """
    labels: list[str] = []
    size = len(data)
    wire_len = 1
    while True:
        if off >= size:
            raise DecodeError("name runs past the end of the message")
        n = data[off]
        if n == 0:
            return ".".join(labels), wire_len, off + 1
        kind = n & 0xC0
        if kind == 0xC0:
            if off + 1 >= size:
                raise DecodeError("truncated compression pointer")
            target = ((n & 0x3F) << 8) | data[off + 1]
            known = names.get(target)
            if known is None:
                if depth >= DNS_MAX_POINTER_HOPS:
                    raise DecodeError("compression pointer loop")
                text, length, _ = _read_name(data, target, names, depth + 1)
                known = names[target] = (text, length)
            wire_len += known[1] - 1
            if wire_len > DNS_MAX_NAME_LEN:
                raise DecodeError("name longer than 255 bytes")
            if known[0]:
                labels.append(known[0])
            return ".".join(labels), wire_len, off + 2
        if kind:
            raise DecodeError(f"unsupported label type {n:#04x}")
        start = off + 1
        off = start + n
        if off > size:
            raise DecodeError("label runs past the end of the message")
        wire_len += n + 1
        if wire_len > DNS_MAX_NAME_LEN:
            raise DecodeError("name longer than 255 bytes")
        # Labels are bytes; real names are ASCII or UTF-8, anything else is kept escaped.
        labels.append(data[start:off].decode("utf-8", "backslashreplace"))


def _read_resource(
    data: bytes, off: int, names: _Names, text: bool = False
) -> tuple[DnsResource, int]:
    """The resource record at `off` and the offset just past it (RFC 1035 4.1.3); with `text`,
    its rendering as Zeek's dns.log answers (`_dns_rdata.render`) too."""
    name, _, off = _read_name(data, off, names)
    if off + _RR_FIXED.size > len(data):
        raise DecodeError("truncated resource record")
    rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, off)
    start = off + _RR_FIXED.size
    end = start + rdlen
    if end > len(data):
        raise DecodeError("record data runs past the end of the message")
    rdata = data[start:end]
    value: str | None = None
    if (rtype == DNS_TYPE_A and rdlen == 4) or (rtype == DNS_TYPE_AAAA and rdlen == 16):
        value = ip_str(rdata)
    elif rtype in _NAME_TYPES and rdlen:
        value = _read_name(data, start, names)[0]
    elif rtype == DNS_TYPE_SRV and rdlen > 6:  # priority, weight, port, target (RFC 2782)
        value = _read_name(data, start + 6, names)[0]
    elif rtype == DNS_TYPE_MX and rdlen > 2:  # preference, exchange
        value = _read_name(data, start + 2, names)[0]
    rendered: str | None = None
    if text and value is not None and rtype != DNS_TYPE_DNAME:  # an address or a target name
        rendered = value if rtype in _ADDRESS_TYPES else value.lower()
    elif text:
        try:
            rendered = render(
                rtype, name, data, start, end, lambda at: _read_name(data, at, names)[0]
            )
        except DecodeError:
            pass  # a name inside the data that does not parse: nothing to show
    return DnsResource(name, rtype, rclass, ttl, rdata, value, rendered), end


def parse_dns_message(data: bytes, *, extra: bool = False, text: bool = False) -> DnsMessage:
    """Decode a DNS message: header, questions and answers; with `extra`, the other records too;
    with `text`, each record's rendering as Zeek's dns.log answers (`DnsResource.text`).

    Read by the C extension where it is used (`_fastpath.dns_parse`, a few times as fast: a
    capture of short flows is mostly DNS, and every process sharing a capture reads every DNS
    flow), else by `_parse_message`: the same objects and errors (a test holds them together).

    Raises:
        DecodeError: the header, a question or an answer does not parse.
    """
    if _c_parse is not None and type(data) is bytes:
        return _c_parse(data, extra, text)
    return _parse_message(data, extra=extra, text=text)


def _parse_message(data: bytes, *, extra: bool = False, text: bool = False) -> DnsMessage:
    """`parse_dns_message` in Python."""
    if len(data) < DNS_HEADER_LEN:
        raise DecodeError(f"{len(data)} bytes is shorter than a DNS header")
    trans_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    off = DNS_HEADER_LEN
    names: _Names = {}
    questions: list[DnsQuestion] = []
    for _ in range(qdcount):
        name, _, off = _read_name(data, off, names)
        if off + _QUESTION.size > len(data):
            raise DecodeError("truncated question")
        qtype, qclass = _QUESTION.unpack_from(data, off)
        off += _QUESTION.size
        questions.append(DnsQuestion(name, qtype, qclass))
    answers: list[DnsResource] = []
    for _ in range(ancount):
        rr, off = _read_resource(data, off, names, text)
        answers.append(rr)
    others: list[DnsResource] = []
    if extra:
        try:
            for _ in range(nscount + arcount):
                rr, off = _read_resource(data, off, names, text)
                others.append(rr)
        except DecodeError:
            pass  # keep what parsed: a damaged additional section does not spoil the answers
    return DnsMessage(
        trans_id, flags, tuple(questions), tuple(answers), tuple(others), min(nscount, len(others))
    )


def _render_text(
    rtype: int, owner: str, data: bytes, start: int, end: int, names: _Names
) -> str | None:
    """`render` of a record the C reader does not render itself, reading names inside its data
    through the message's table of names (`names`, which the C reader keeps too)."""
    return render(rtype, owner, data, start, end, lambda at: _read_name(data, at, names)[0])


def _c_reader() -> Callable[[bytes, bool, bool], DnsMessage] | None:
    """The C extension's `dns_parse`, set up with this module's classes, or None without C."""
    c = native()
    if c is None:
        return None

    def members(cls: type) -> tuple[object, ...]:
        return tuple(inspect.getattr_static(cls, f.name) for f in dataclasses.fields(cls))

    c.dns_setup(
        DnsQuestion,
        members(DnsQuestion),
        DnsResource,
        members(DnsResource),
        DnsMessage,
        members(DnsMessage),
        _render_text,
        DecodeError,
    )
    return c.dns_parse  # type: ignore[no-any-return]


_c_parse = _c_reader()


def _norm(name: str) -> str:
    """A name as logged: lower case, no trailing dot."""
    return name.lower().rstrip(".")


Subject: TypeAlias = "tuple[str | None, int | None]"
"""What a message is about (`subject`): a name and a record type, either unknown (None)."""


def subject(msg: DnsMessage) -> Subject:
    """What a message is about: the name and type of its first question; for an UPDATE
    (RFC 2136), whose question section names only the zone, the name its prerequisites or
    updates change (as Zeek logs it), with no type."""
    if msg.opcode == DNS_OPCODE_UPDATE:
        for rr in (*msg.answers, *msg.extra):  # prerequisites, then updates
            return _norm(rr.name) or None, None
        return None, None
    question = msg.questions[0] if msg.questions else None
    if question is None:
        return None, None
    return _norm(question.name), question.qtype


def _update_answers(msg: DnsMessage) -> Iterator[tuple[str, int]]:
    """The prerequisites and updates of an UPDATE (RFC 2136 2.4, 2.5) as Zeek's dns.log writes
    them among the answers, with their TTLs: `pre: NameInUse <name>`, `pre: NoRRSet <type>
    <name>`..., `del: RRSet <type>`, `add: A <name> <address>`, `add: <record>`. Records that
    break the RFC's rules for their section are left out, as Zeek leaves them out."""
    if len(msg.questions) != 1 or msg.questions[0].qtype != DNS_TYPE_SOA:
        return  # the zone section is one SOA entry (RFC 2136 2.3)
    zclass = msg.questions[0].qclass
    for rr in msg.answers:  # the prerequisite section
        name = _norm(rr.name)
        if rr.ttl != 0:
            continue
        if rr.rclass in (DNS_CLASS_ANY, DNS_CLASS_NONE) and not rr.rdata:
            pass
        elif rr.rclass != zclass:
            continue
        if rr.rtype == TYPE_ANY and rr.rclass in (DNS_CLASS_ANY, DNS_CLASS_NONE):
            in_use = "NameInUse" if rr.rclass == DNS_CLASS_ANY else "NameNotInUse"
            yield f"pre: {in_use} {name}", rr.ttl
        elif rr.rclass == DNS_CLASS_NONE:
            yield f"pre: NoRRSet {dns_type_name(rr.rtype)} {name}", rr.ttl
        else:
            yield f"pre: RRSetExists {dns_type_name(rr.rtype)} {name}", rr.ttl
    for rr in msg.extra[: msg.n_authority]:  # the update section
        name = _norm(rr.name)
        if rr.rclass == DNS_CLASS_ANY and rr.ttl == 0 and not rr.rdata:
            what = f"RRSet * {name}" if rr.rtype == TYPE_ANY else f"RRSet {dns_type_name(rr.rtype)}"
            yield f"del: {what}", rr.ttl
            continue
        if not (rr.rclass == zclass or (rr.rclass == DNS_CLASS_NONE and rr.ttl == 0)):
            continue
        if rr.rtype in _ADDRESS_TYPES and rr.value:
            yield f"add: {dns_type_name(rr.rtype)} {name} {rr.value}", rr.ttl
        elif rr.text:
            yield f"add: {rr.text}", rr.ttl


@dataclass(frozen=True, slots=True)
class DnsOptions:
    """Tunables of the DNS analyzer."""

    max_pending: int = 64
    """Unanswered queries kept per flow (each send of a query counts, as each is a record of its
    own); past that the oldest is written out as unanswered."""
    max_answers: int = 32
    """Answers (and TTLs) kept in one record."""
    max_tcp_buffer_bytes: int = 2 + 65535
    """Most bytes buffered per direction of a TCP flow while a message is incomplete."""
    max_failures: int = 4
    """Undecodable messages on a port-53 flow, with no valid one yet, before giving up on it."""
    follow_flow: bool = True
    """Follow DNS flows to their end, so a long-lived flow (a forwarder's fixed port, a TCP
    connection carrying many queries) is read past the engine's first inspected packets."""

    def __post_init__(self) -> None:
        if self.max_pending < 1:
            raise ValueError("max_pending must be at least 1 (the query being added is kept)")


@dataclass(frozen=True, slots=True)
class DnsRecord(ConnRecord):
    """One DNS exchange: a query and its answer, or a query never answered, or an answer alone.

    Each query sent is a record of its own, as in Zeek's dns.log: a query sent again under the
    same id is a second record, paired with a second answer if one comes (the first answer goes
    to the first send). `ts` is the time of the query (of the answer when the query was not
    seen).
    """

    log: ClassVar[str] = "dns"
    proto: str
    """Transport: udp or tcp."""
    trans_id: int
    """DNS transaction id."""
    query: str | None = None
    """Name asked for, lower case, no trailing dot."""
    qtype_name: str | None = None
    """Record type asked for (A, AAAA, HTTPS, TYPE<n>...)."""
    rcode_name: str | None = None
    """Response code (NOERROR, NXDOMAIN...); None when unanswered."""
    answers: tuple[str, ...] = ()
    """The records of the answer section, in order, as Zeek's dns.log writes them: addresses,
    target names (CNAME, PTR, NS, MX, SRV, SOA), `TXT <len> <text>`, `RRSIG <type covered>
    <signer>`, `DNSKEY <algorithm>`, `DS <algorithm> <digest type>`, `NSEC <owner> <next>`,
    `SSHFP: <hex>`, `<unknown type=N>`...; for an UPDATE, its prerequisites and updates as
    `pre: ...`, `del: ...` and `add: ...` (`_dns_rdata.render`). Only A/AAAA answers feed the
    DNS cache."""
    ttls: tuple[int, ...] = ()
    """Time to live of each entry of `answers`, seconds."""
    rtt_s: float | None = None
    """Time from query to answer, seconds; None when either was not seen."""
    answered: bool = False
    """An answer was seen."""


class _Pending:
    """A query waiting for its answer."""

    __slots__ = ("ts", "query", "qtype")

    def __init__(self, ts: float, query: str | None, qtype: int | None) -> None:
        self.ts = ts
        self.query = query
        self.qtype = qtype


class _TcpStream:
    """One direction of DNS over TCP: 2-byte length-prefixed messages (RFC 1035 4.2.2)."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes, gap: int, limit: int) -> tuple[list[bytes], bool]:
        """Add the direction's next bytes (`gap` bytes lost before them); returns the messages
        they complete, and False on broken framing."""
        if gap:  # the message being buffered cannot be completed
            self.buf.clear()
        buf = self.buf
        buf += data
        messages: list[bytes] = []
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if size < DNS_HEADER_LEN:
                buf.clear()
                return messages, False
            if len(buf) < 2 + size:
                break
            messages.append(bytes(buf[2 : 2 + size]))
            del buf[: 2 + size]
        if len(buf) > limit:
            buf.clear()
        return messages, True


class _DnsState:
    """What the analyzer keeps about one port-53 flow."""

    __slots__ = ("pending", "waiting", "orig", "resp", "good", "bad", "dead")

    def __init__(self) -> None:
        self.pending: dict[int, list[_Pending]] = {}
        """Queries waiting for an answer by transaction id, each id's in the order sent."""
        self.waiting = 0
        """Queries in `pending`."""
        self.orig: _TcpStream | None = None
        self.resp: _TcpStream | None = None
        self.good = 0
        self.bad = 0
        self.dead = False


class DnsAnalyzer:
    """Decode DNS queries and answers on port 53 into dns.jsonl records; feed the DNS cache."""

    name = "dns"
    wants_ports = frozenset({DNS_PORT})
    """The ports `wants` reads (`WantsHook`)."""
    tcp_stream = True
    """Its packet hook reads DNS over TCP in order (`dronewatch.core.stream`)."""

    def __init__(self, ctx: Context, options: DnsOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or DnsOptions()
        self.facts_need_flows = not self.options.follow_flow
        """Without following its flows the analyzer reads only their first packets, so another
        process's DNS flows are made here for it (`FactsHook`)."""
        self._state: dict[str, _DnsState] = {}  # keyed by flow.uid, dropped in flow_end

    def wants(self, flow: Flow) -> bool:
        """Only flows on port 53."""
        return flow.proto in (IP_PROTO_UDP, IP_PROTO_TCP) and DNS_PORT in (flow.resp_p, flow.orig_p)

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Read the DNS message(s) of a UDP datagram or TCP segment on port 53."""
        if (flow.resp_p != DNS_PORT and flow.orig_p != DNS_PORT) or not pkt.payload:
            return
        if flow.proto not in (IP_PROTO_UDP, IP_PROTO_TCP):
            return
        state = self._state.get(flow.uid)
        if state is None:
            state = self._state[flow.uid] = _DnsState()
        if state.dead:
            return
        if flow.proto == IP_PROTO_UDP:
            self._message(flow, state, pkt.payload, pkt.ts)
            return
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        if from_orig:
            stream = state.orig = state.orig or _TcpStream()
        else:
            stream = state.resp = state.resp or _TcpStream()
        messages, framed = stream.feed(pkt.payload, pkt.gap, self.options.max_tcp_buffer_bytes)
        for data in messages:
            self._message(flow, state, data, pkt.ts)
        if not framed:
            self._failed(flow, state, "DNS over TCP length prefix shorter than a header")

    def facts(self, pkt: Packet) -> None:
        """A datagram of a DNS flow another process of `analyze --workers` makes: an answer's
        names go to this process's name cache as they would if it made the flow (`learn_answers`
        does not look at the flow's queries), and nothing is written. What the flow's earlier
        messages would change is not known here: past `max_failures` undecodable messages the
        flow's owner gives it up, and this process still learns from a valid answer on it."""
        if pkt.payload and pkt.proto == IP_PROTO_UDP:  # not another reader's (ICMPv6 ND)
            learn_datagram(self.ctx.dns, pkt.payload, pkt.ts)

    def flow_end(self, flow: Flow) -> None:
        """Write out the queries that were never answered, and drop the flow's state."""
        state = self._state.pop(flow.uid, None)
        if state is None or (self.ctx.facts_only and flow.uid in self.ctx.facts_only):
            return
        for trans_id, queries in state.pending.items():
            for query in queries:
                self._emit_unanswered(flow, trans_id, query)

    def _failed(self, flow: Flow, state: _DnsState, why: str) -> None:
        state.bad += 1
        logger.debug("%s: undecodable DNS message: %s", flow.uid, why)
        if not state.good and state.bad >= self.options.max_failures:
            state.dead = True  # something else is using port 53
            flow.decline(self.name)
            state.orig = state.resp = None

    def _message(self, flow: Flow, state: _DnsState, data: bytes, ts: float) -> None:
        # A flow made here for its facts only: its answers feed the cache, its records are
        # written by another process (no answer text to render, no record to make).
        facts_only = bool(self.ctx.facts_only) and flow.uid in self.ctx.facts_only
        try:
            msg = read_message(data, text=not facts_only)
        except DecodeError as exc:
            self._failed(flow, state, str(exc))
            return
        state.good += 1
        flow.service = "dns"
        if self.options.follow_flow:
            flow.follow(self.name)
        about = subject(msg)  # the first question's name (an UPDATE's changed name), once
        if about[0]:
            flow.add_meta_item("dns_query", about[0])
        if msg.opcode != DNS_OPCODE_UPDATE:
            for question in msg.questions[1:]:
                name = _norm(question.name)
                if name:
                    flow.add_meta_item("dns_query", name)
        if msg.is_response:
            self._answer(flow, state, msg, ts, about, facts_only)
        else:
            self._query(flow, state, msg, ts, about)

    def _query(
        self, flow: Flow, state: _DnsState, msg: DnsMessage, ts: float, about: Subject
    ) -> None:
        """Keep a query until its answer comes; a query sent again under its id is kept apart,
        as Zeek keeps it (two records, the first answer going to the first send). `about`: the
        message's `subject`."""
        name, qtype = about
        if state.waiting >= self.options.max_pending:
            oldest = min(state.pending, key=lambda tid: state.pending[tid][0].ts)
            self._emit_unanswered(flow, oldest, self._take(state, oldest, 0))
        state.pending.setdefault(msg.trans_id, []).append(_Pending(ts, name, qtype))
        state.waiting += 1

    @staticmethod
    def _take(state: _DnsState, trans_id: int, i: int) -> _Pending:
        """Remove and return the `i`th query waiting under `trans_id`."""
        queries = state.pending[trans_id]
        query = queries.pop(i)
        if not queries:
            del state.pending[trans_id]
        state.waiting -= 1
        return query

    def _answer(
        self,
        flow: Flow,
        state: _DnsState,
        msg: DnsMessage,
        ts: float,
        about: Subject,
        facts_only: bool = False,
    ) -> None:
        asked, asked_type = about
        query: _Pending | None = None
        for i, waiting in enumerate(state.pending.get(msg.trans_id, ())):
            # The first query sent under this id, of the name answered: an answer with a
            # waiting query's id but another name answers some other query.
            if asked is None or waiting.query is None or waiting.query == asked:
                query = self._take(state, msg.trans_id, i)
                break
        learn_answers(self.ctx.dns, msg, ts, asked)
        if facts_only:
            return
        name = query.query if query is not None else asked
        qtype = query.qtype if query is not None else asked_type
        answers: list[str] = []
        ttls: list[int] = []
        for text, ttl in (
            _update_answers(msg)
            if msg.opcode == DNS_OPCODE_UPDATE
            else ((rr.text, rr.ttl) for rr in msg.answers)
        ):
            if not text:
                continue  # Zeek writes no answer for it (WKS, HINFO, CAA, HTTPS, OPT...)
            if len(answers) >= self.options.max_answers:
                break
            answers.append(text)
            ttls.append(ttl)
        self.ctx.emit(  # in field order (`make_record`: a record per answer)
            make_record(
                DnsRecord,
                (
                    query.ts if query is not None else ts,  # ts
                    *conn_values(flow),
                    flow.proto_name,  # proto
                    msg.trans_id,
                    name,  # query
                    dns_type_name(qtype) if qtype is not None else None,  # qtype_name
                    dns_rcode_name(msg.rcode),  # rcode_name
                    tuple(answers),
                    tuple(ttls),
                    round(ts - query.ts, 6) if query is not None else None,  # rtt_s
                    True,  # answered
                ),
            )
        )

    def _emit_unanswered(self, flow: Flow, trans_id: int, query: _Pending) -> None:
        self.ctx.emit(
            DnsRecord(
                ts=query.ts,
                **conn(flow),
                proto=flow.proto_name,
                trans_id=trans_id,
                query=query.query,
                qtype_name=dns_type_name(query.qtype) if query.qtype is not None else None,
                answered=False,
            )
        )


__all__ = [
    "DNS_OPCODE_UPDATE",
    "DNS_PORT",
    "DNS_RCODE_NAMES",
    "DNS_TYPE_NAMES",
    "DnsAnalyzer",
    "DnsMessage",
    "DnsOptions",
    "DnsQuestion",
    "DnsRecord",
    "DnsResource",
    "dns_rcode_name",
    "dns_type_name",
    "is_dns_response",
    "learn_answers",
    "learn_datagram",
    "parse_dns_message",
    "read_message",
    "subject",
]


def read_message(data: bytes, *, text: bool = True) -> DnsMessage:
    """A DNS message as the analyzer reads it: an UPDATE with its update section (`subject`).
    DecodeError when it is not one."""
    msg = parse_dns_message(data, text=text)
    if msg.opcode == DNS_OPCODE_UPDATE:
        msg = parse_dns_message(data, extra=True, text=text)
    return msg


def learn_datagram(cache: DnsCache, payload: bytes, ts: float) -> None:
    """What one datagram teaches the name cache read on its own, without its flow
    (`learn_answers` of the DNS response it holds; anything else teaches nothing, and a query,
    half of what another process of `analyze --workers` hands here, is not parsed)."""
    if not is_dns_response(payload):
        return
    try:
        msg = read_message(payload, text=False)
    except DecodeError:
        return
    learn_answers(cache, msg, ts)


def learn_answers(cache: DnsCache, msg: DnsMessage, ts: float, asked: str | None = None) -> None:
    """What a response teaches the name cache, from the response alone: its addresses under its
    own subject (`subject`: the name asked; without a question, the first answer's name). The
    same whoever reads it (the analyzer on its flow, another process of `analyze --workers`, an
    agent's side channel), so every reader learns the same names in the same order: the
    addresses it resolved, through any CNAME chain, map to that name. `asked`: the subject's
    name where the caller has read it (None: read here)."""
    answers = msg.answers
    if not answers:
        return  # nothing to learn (most answers of a flood of lookups of new names)
    name = asked if asked is not None else subject(msg)[0]
    if name is None:
        name = _norm(answers[0].name)
    if not name:
        return
    targets: dict[str, list[str]] = {}
    for rr in answers:
        if rr.rtype == DNS_TYPE_CNAME and rr.value is not None:
            targets.setdefault(_norm(rr.name), []).append(_norm(rr.value))
    chain = {name}
    todo = [name] if targets else []  # without a CNAME the chain is the name alone
    while todo:  # each name enters once, so cycles end
        for target in targets.get(todo.pop(), ()):
            if target not in chain:
                chain.add(target)
                todo.append(target)
    for rr in answers:
        if rr.rtype in (DNS_TYPE_A, DNS_TYPE_AAAA) and rr.value and _norm(rr.name) in chain:
            cache.remember(rr.rdata, name, ts)
