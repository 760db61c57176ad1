"""Tests for the DNS analyzer: the message decoder, query/answer pairing, TCP framing, the cache."""

from __future__ import annotations

import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.dns import (
    DNS_OPCODE_UPDATE,
    DnsAnalyzer,
    DnsMessage,
    DnsOptions,
    DnsQuestion,
    DnsRecord,
    dns_rcode_name,
    dns_type_name,
    parse_dns_message,
    subject,
)
from dronewatch.core.engine import Engine
from dronewatch.core.flow import IP_PROTO_TCP, Flow, Packet
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, ip, make_flow, make_packet, make_udp
from tests.unit.core.tcpconv import TcpConversation

CLIENT, SERVER = "192.168.1.3", "192.0.2.53"
CPORT = 40000
RR = dpkt.dns.DNS.RR

# RFC 1035 4.1 by hand: id 0x1234, QR|RD|RA, one question, one answer whose owner name is a
# compression pointer (0xc00c) back to the question name at offset 12.
EXAMPLE_ANSWER = (
    b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
    b"\x07example\x03com\x00\x00\x01\x00\x01"
    b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\x5d\xb8\xd8\x22"
)


def query_bytes(trans_id: int, name: str, qtype: int = dpkt.dns.DNS_A) -> bytes:
    """A recursive query for `name`, packed by dpkt."""
    msg = dpkt.dns.DNS(
        id=trans_id,
        op=dpkt.dns.DNS_RD,
        qd=[dpkt.dns.DNS.Q(name=name, type=qtype)],
        an=[],
        ns=[],
        ar=[],
    )
    return bytes(msg)


def answer_bytes(
    trans_id: int,
    name: str,
    answers: list[object],
    *,
    qtype: int = dpkt.dns.DNS_A,
    rcode: int = 0,
) -> bytes:
    """A response to a query for `name` carrying `answers`, packed by dpkt."""
    msg = dpkt.dns.DNS(
        id=trans_id,
        op=dpkt.dns.DNS_QR | dpkt.dns.DNS_RD | dpkt.dns.DNS_RA | rcode,
        qd=[dpkt.dns.DNS.Q(name=name, type=qtype)],
        an=answers,
        ns=[],
        ar=[],
    )
    return bytes(msg)


def a_rr(name: str, addr: str, ttl: int = 300) -> object:
    """An A or AAAA answer record."""
    if ":" in addr:
        return RR(name=name, type=dpkt.dns.DNS_AAAA, ttl=ttl, ip6=ip(addr))
    return RR(name=name, type=dpkt.dns.DNS_A, ttl=ttl, ip=ip(addr))


def cname_rr(name: str, target: str, ttl: int = 60) -> object:
    """A CNAME answer record."""
    return RR(name=name, type=dpkt.dns.DNS_CNAME, ttl=ttl, cname=target)


def from_client(payload: bytes, *, ts: float = 10.0, tcp: bool = False, seq: int = 1000) -> Packet:
    """A packet from the resolver's client to the server."""
    if tcp:
        return make_packet(
            payload, src=CLIENT, dst=SERVER, sport=CPORT, dport=53, ts=ts, tcp_seq=seq
        )
    return make_udp(payload, src=CLIENT, dst=SERVER, sport=CPORT, dport=53, ts=ts)


def from_server(payload: bytes, *, ts: float = 10.05, tcp: bool = False, seq: int = 5000) -> Packet:
    """A packet from the server back to the client."""
    if tcp:
        return make_packet(
            payload, src=SERVER, dst=CLIENT, sport=53, dport=CPORT, ts=ts, tcp_seq=seq
        )
    return make_udp(payload, src=SERVER, dst=CLIENT, sport=53, dport=CPORT, ts=ts)


def dns_records(ctx: RecordingContext) -> list[DnsRecord]:
    """The dns.jsonl records written so far."""
    out = [r for r in ctx.of("dns") if isinstance(r, DnsRecord)]
    assert len(out) == len(ctx.records)
    return out


def setup(tcp: bool = False) -> tuple[RecordingContext, DnsAnalyzer, Flow]:
    """A context, an analyzer and a client-to-server port-53 flow."""
    ctx = RecordingContext()
    return ctx, DnsAnalyzer(ctx), make_flow(from_client(b"", tcp=tcp))


def test_parse_hand_built_message_with_compression() -> None:
    """A byte-literal answer decodes, following the compression pointer to the question name."""
    msg = parse_dns_message(EXAMPLE_ANSWER)
    assert msg.trans_id == 0x1234
    assert msg.is_response and msg.rcode == 0 and msg.opcode == 0
    assert [(q.name, q.qtype, q.qclass) for q in msg.questions] == [("example.com", 1, 1)]
    (rr,) = msg.answers
    assert (rr.name, rr.rtype, rr.ttl, rr.value) == ("example.com", 1, 300, "93.184.216.34")
    assert rr.rdata == bytes([93, 184, 216, 34])


def test_parse_nested_pointers() -> None:
    """A pointer to a name that itself ends in a pointer decodes to the whole name."""
    q1 = b"\x07example\x03com\x00" + struct.pack(">HH", 1, 1)  # at 12
    q2 = b"\x03www\xc0\x0c" + struct.pack(">HH", 1, 1)  # at 29
    q3 = b"\x02m1\xc0\x1d" + struct.pack(">HH", 1, 1)
    q4 = b"\x03www\xc0\x18" + struct.pack(">HH", 1, 1)  # points at q1's root byte
    head = struct.pack(">HHHHHH", 1, 0, 4, 0, 0, 0)
    msg = parse_dns_message(head + q1 + q2 + q3 + q4)
    assert [q.name for q in msg.questions] == [
        "example.com",
        "www.example.com",
        "m1.www.example.com",
        "www",
    ]


def test_parse_many_references_to_a_long_name() -> None:
    """Thousands of records pointing at one 250-byte name decode, each with the full name."""
    long_name = b"".join(b"\x01" + bytes([97 + i % 26]) for i in range(124)) + b"\x00"
    question = long_name + struct.pack(">HH", 1, 1)
    count = 5000
    record = b"\xc0\x0c" + struct.pack(">HHIH", 99, 1, 0, 0)
    data = struct.pack(">HHHHHH", 1, 0x8000, 1, count, 0, 0) + question + record * count
    msg = parse_dns_message(data)
    assert len(msg.answers) == count
    assert msg.answers[-1].name == msg.questions[0].name
    assert len(msg.answers[-1].name) == 247


def test_parse_keeps_records_of_unknown_types() -> None:
    """HTTPS answers and NSEC additionals (which dpkt refuses) do not spoil the message."""
    question = b"\x03www\x07example\x03com\x00" + struct.pack(">HH", 65, 1)
    https = b"\xc0\x0c" + struct.pack(">HHIH", 65, 1, 300, 3) + b"\x00\x01\x00"
    mx = b"\xc0\x0c" + struct.pack(">HHIH", 15, 1, 300, 7) + b"\x00\x0a\x02mx\xc0\x10"
    srv = b"\xc0\x0c" + struct.pack(">HHIH", 33, 1, 300, 8) + b"\x00\x00\x00\x00\x01\xbb\xc0\x0c"
    nsec = b"\xc0\x0c" + struct.pack(">HHIH", 47, 1, 300, 2) + b"\xc0\x0c"
    data = struct.pack(">HHHHHH", 9, 0x8180, 1, 3, 0, 1) + question + https + mx + srv + nsec
    msg = parse_dns_message(data, extra=True)
    assert [(rr.rtype, rr.value) for rr in msg.answers] == [
        (65, None),
        (15, "mx.example.com"),
        (33, "www.example.com"),
    ]
    assert [(rr.rtype, rr.rdata) for rr in msg.extra] == [(47, b"\xc0\x0c")]
    assert parse_dns_message(data).extra == ()


def test_parse_damaged_additional_section_keeps_answers() -> None:
    """A cut additional section leaves the answers and the records before the cut."""
    extra_a = EXAMPLE_ANSWER[12 + 17 :]  # the answer record again, as an additional record
    data = bytearray(EXAMPLE_ANSWER + extra_a + extra_a[:-2])
    data[10:12] = b"\x00\x02"  # arcount 2: the second one is cut
    msg = parse_dns_message(bytes(data), extra=True)
    assert [rr.value for rr in msg.answers] == ["93.184.216.34"]
    assert [rr.value for rr in msg.extra] == ["93.184.216.34"]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x00\x01\x00\x00", "short header"),
        (EXAMPLE_ANSWER[:-3], "answer data cut"),
        (EXAMPLE_ANSWER[:20], "question name cut"),
        (EXAMPLE_ANSWER[:27], "question type cut"),
        (EXAMPLE_ANSWER[:-16] + b"\xc0", "answer pointer cut"),
        (EXAMPLE_ANSWER[:-10], "answer header cut"),
        # A name made only of a pointer to itself.
        (b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", "loop"),
        # 0x40 is an extended label type (RFC 6891 obsoleted them).
        (b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x41\x00\x00\x01\x00\x01", "label"),
        (
            b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            + b"".join(b"\x3f" + bytes([c]) * 63 for c in b"abcd")
            + b"\x00\x00\x01\x00\x01",
            "name over 255 bytes",
        ),
        (
            b"\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00"
            + b"".join(b"\x3f" + bytes([c]) * 63 for c in b"abc")
            + (b"\x32" + b"d" * 50 + b"\x00\x00\x01\x00\x01")  # 244 bytes: fits
            + (b"\x14" + b"e" * 20 + b"\xc0\x0c\x00\x01\x00\x01"),  # 265 with the pointer
            "name over 255 bytes through a pointer",
        ),
    ],
)
def test_parse_rejects_malformed(data: bytes, why: str) -> None:
    """Malformed messages raise DecodeError."""
    with pytest.raises(DecodeError):
        parse_dns_message(data)


def test_type_and_rcode_names() -> None:
    """Known codes have their mnemonic; unknown ones get TYPE<n> / RCODE<n>."""
    assert dns_type_name(28) == "AAAA"
    assert dns_type_name(65) == "HTTPS"
    assert dns_type_name(44) == "SSHFP"
    assert dns_type_name(4321) == "TYPE4321"
    assert dns_rcode_name(3) == "NXDOMAIN"
    assert dns_rcode_name(12) == "RCODE12"


def test_udp_query_and_answer_make_one_record() -> None:
    """A query and its answer give one record with the pair's fields, meta and a cache entry."""
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_client(query_bytes(0x4242, "FlySafe-API.DJI.com"), ts=10.0))
    assert dns_records(ctx) == []
    reply = answer_bytes(0x4242, "flysafe-api.dji.com", [a_rr("flysafe-api.dji.com", "47.88.0.10")])
    analyzer.packet(flow, from_server(reply, ts=10.021))
    (rec,) = dns_records(ctx)
    assert rec.to_dict() == {
        "ts": 10.0,
        "uid": flow.uid,
        "orig_h": CLIENT,
        "orig_p": CPORT,
        "resp_h": SERVER,
        "resp_p": 53,
        "proto": "udp",
        "trans_id": 0x4242,
        "query": "flysafe-api.dji.com",
        "qtype_name": "A",
        "rcode_name": "NOERROR",
        "answers": ["47.88.0.10"],
        "ttls": [300],
        "rtt_s": 0.021,
        "answered": True,
    }
    assert flow.service == "dns"
    assert flow.sticky
    assert flow.meta["dns_query"] == ["flysafe-api.dji.com"]
    assert ctx.dns.name_for(ip("47.88.0.10")) == "flysafe-api.dji.com"
    analyzer.flow_end(flow)
    assert len(dns_records(ctx)) == 1


def test_cname_chain_answers_and_cache() -> None:
    """A CNAME chain lists every target in order; the address is remembered under the query."""
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_client(query_bytes(7, "mydjiflight.dji.com")))
    answers = [
        cname_rr("mydjiflight.dji.com", "MyDjiFlight.dji.com.cdn.example"),
        cname_rr("mydjiflight.dji.com.cdn.example", "edge-1.cdn.example"),
        a_rr("edge-1.cdn.example", "47.88.0.13", ttl=20),
        a_rr("unrelated.example", "203.0.113.99"),  # not on the chain: not remembered
    ]
    analyzer.packet(flow, from_server(answer_bytes(7, "mydjiflight.dji.com", answers)))
    (rec,) = dns_records(ctx)
    assert rec.answers == (
        "mydjiflight.dji.com.cdn.example",
        "edge-1.cdn.example",
        "47.88.0.13",
        "203.0.113.99",
    )
    assert rec.ttls == (60, 60, 20, 300)
    assert ctx.dns.name_for(ip("47.88.0.13")) == "mydjiflight.dji.com"
    assert ctx.dns.name_for(ip("203.0.113.99")) is None


def test_a_flow_read_for_its_facts_feeds_the_cache_and_writes_nothing() -> None:
    """A flow another process of a shared capture writes (`Context.facts_only`): its answers
    still name their addresses, through the CNAME chain, and no record is made of it, answered
    or not; the flow its owner reads gives the record as ever."""
    ctx, analyzer, flow = setup()
    ctx.facts_only.add(flow.uid)
    analyzer.packet(flow, from_client(query_bytes(7, "mydjiflight.dji.com")))
    analyzer.packet(flow, from_client(query_bytes(8, "never.answered.example")))
    answers = [
        cname_rr("mydjiflight.dji.com", "edge-1.cdn.example"),
        a_rr("edge-1.cdn.example", "47.88.0.13"),
    ]
    analyzer.packet(flow, from_server(answer_bytes(7, "mydjiflight.dji.com", answers)))
    analyzer.flow_end(flow)
    assert ctx.records == []
    assert ctx.dns.name_for(ip("47.88.0.13")) == "mydjiflight.dji.com"
    ctx.facts_only.clear()
    analyzer.packet(flow, from_client(query_bytes(9, "api.mapbox.com")))
    analyzer.flow_end(flow)
    assert [r.query for r in dns_records(ctx)] == ["api.mapbox.com"]


def test_another_process_reads_an_answer_without_its_flow() -> None:
    """`facts` (a DNS datagram of another process's flow, `FactsHook`) names the answer's
    addresses as the analyzer reading the flow does, and writes nothing; a query, a datagram
    that is not DNS and an empty one teach nothing."""
    answers = [
        cname_rr("mydjiflight.dji.com", "edge-1.cdn.example"),
        a_rr("edge-1.cdn.example", "47.88.0.13"),
    ]
    answer = answer_bytes(7, "mydjiflight.dji.com", answers)
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_client(query_bytes(7, "mydjiflight.dji.com")))
    analyzer.packet(flow, from_server(answer))
    other = RecordingContext()
    facts = DnsAnalyzer(other)
    for payload in (query_bytes(7, "mydjiflight.dji.com"), b"\x00" * 5, b""):
        facts.facts(from_client(payload))
    assert other.dns.name_for(ip("47.88.0.13")) is None
    facts.facts(from_server(answer))
    assert other.records == []
    assert other.dns.name_for(ip("47.88.0.13")) == ctx.dns.name_for(ip("47.88.0.13"))
    assert other.dns.name_for(ip("47.88.0.13")) == "mydjiflight.dji.com"


def test_facts_need_the_flows_only_when_they_are_not_followed() -> None:
    """Read to its end, a DNS flow's answers do not depend on its earlier packets; read for its
    first packets only, they do, and another process makes the flow (`FactsHook`)."""
    ctx = RecordingContext()
    assert DnsAnalyzer(ctx).facts_need_flows is False
    assert DnsAnalyzer(ctx, DnsOptions(follow_flow=False)).facts_need_flows is True


def test_aaaa_answer() -> None:
    """An AAAA answer is logged as IPv6 text and remembered by its 16 bytes."""
    ctx, analyzer, flow = setup()
    aaaa = dpkt.dns.DNS_AAAA
    analyzer.packet(flow, from_client(query_bytes(11, "api.mapbox.com", aaaa)))
    reply = answer_bytes(11, "api.mapbox.com", [a_rr("api.mapbox.com", "2001:db8::40")], qtype=aaaa)
    analyzer.packet(flow, from_server(reply))
    (rec,) = dns_records(ctx)
    assert (rec.qtype_name, rec.answers) == ("AAAA", ("2001:db8::40",))
    assert ctx.dns.name_for(ip("2001:db8::40")) == "api.mapbox.com"


def test_nxdomain() -> None:
    """An NXDOMAIN answer is answered, with its rcode and no answers."""
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_client(query_bytes(3, "no-such-host.dji.com")))
    analyzer.packet(flow, from_server(answer_bytes(3, "no-such-host.dji.com", [], rcode=3)))
    (rec,) = dns_records(ctx)
    assert (rec.rcode_name, rec.answers, rec.answered) == ("NXDOMAIN", (), True)


def test_unanswered_query_is_written_at_flow_end() -> None:
    """A query with no answer gives a record at flow_end with no rcode and answered False."""
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_client(query_bytes(5, "play.googleapis.com"), ts=3.0))
    assert dns_records(ctx) == []
    analyzer.flow_end(flow)
    (rec,) = dns_records(ctx)
    assert (rec.ts, rec.query, rec.answered) == (3.0, "play.googleapis.com", False)
    assert rec.rcode_name is None and rec.rtt_s is None
    assert "rcode_name" not in rec.to_dict()


def test_answer_without_its_query() -> None:
    """An answer whose query was not seen is still written, with no round-trip time."""
    ctx, analyzer, flow = setup()
    reply = answer_bytes(99, "academy.parrot.com", [a_rr("academy.parrot.com", "52.84.0.61")])
    analyzer.packet(flow, from_server(reply, ts=4.0))
    (rec,) = dns_records(ctx)
    assert (rec.ts, rec.query, rec.rtt_s, rec.answered) == (4.0, "academy.parrot.com", None, True)
    assert ctx.dns.name_for(ip("52.84.0.61")) == "academy.parrot.com"


def test_retransmitted_query_is_a_record_of_its_own() -> None:
    """A query sent twice with the same id is two records, as in Zeek's dns.log: the answer goes
    to the first send (timed from it), the second is unanswered unless a second answer comes."""
    ctx, analyzer, flow = setup()
    query = query_bytes(21, "a.example")
    analyzer.packet(flow, from_client(query, ts=1.0))
    analyzer.packet(flow, from_client(query, ts=2.0))
    analyzer.packet(flow, from_server(answer_bytes(21, "a.example", []), ts=2.5))
    analyzer.flow_end(flow)
    assert [(r.ts, r.answered, r.rtt_s) for r in dns_records(ctx)] == [
        (1.0, True, 1.5),
        (2.0, False, None),
    ]
    ctx, analyzer, flow = setup()
    for ts in (1.0, 2.0):
        analyzer.packet(flow, from_client(query, ts=ts))
    for ts in (2.25, 2.5):
        analyzer.packet(flow, from_server(answer_bytes(21, "a.example", []), ts=ts))
    analyzer.flow_end(flow)
    assert [(r.ts, r.rtt_s) for r in dns_records(ctx)] == [(1.0, 1.25), (2.0, 0.5)]


def test_queries_matched_by_transaction_id() -> None:
    """Several queries in flight on one flow are paired by transaction id, in any answer order."""
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_client(query_bytes(1, "one.example"), ts=1.0))
    analyzer.packet(flow, from_client(query_bytes(2, "two.example"), ts=1.1))
    analyzer.packet(flow, from_server(answer_bytes(2, "two.example", []), ts=1.2))
    analyzer.packet(flow, from_server(answer_bytes(1, "one.example", []), ts=1.3))
    assert [(r.trans_id, r.query) for r in dns_records(ctx)] == [
        (2, "two.example"),
        (1, "one.example"),
    ]
    assert flow.meta["dns_query"] == ["one.example", "two.example"]


def test_pending_queries_are_bounded() -> None:
    """Past max_pending, the oldest waiting query is written out as unanswered; every send of a
    query counts."""
    ctx = RecordingContext()
    analyzer = DnsAnalyzer(ctx, DnsOptions(max_pending=2))
    flow = make_flow(from_client(b""))
    for trans_id in (1, 2, 3):
        analyzer.packet(flow, from_client(query_bytes(trans_id, f"q{trans_id}.example")))
    (rec,) = dns_records(ctx)
    assert (rec.trans_id, rec.answered) == (1, False)
    ctx = RecordingContext()
    analyzer = DnsAnalyzer(ctx, DnsOptions(max_pending=2))
    for ts in (1.0, 2.0, 3.0):
        analyzer.packet(flow, from_client(query_bytes(9, "again.example"), ts=ts))
    analyzer.flow_end(flow)
    assert [(r.ts, r.answered) for r in dns_records(ctx)] == [
        (1.0, False),
        (2.0, False),
        (3.0, False),
    ]


def test_root_query_and_no_follow() -> None:
    """A query for the root adds no dns_query; with follow_flow off the flow is not made sticky."""
    ctx = RecordingContext()
    analyzer = DnsAnalyzer(ctx, DnsOptions(follow_flow=False))
    flow = make_flow(from_client(b""))
    root_ns = b"\x00\x05\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01"
    analyzer.packet(flow, from_client(root_ns))
    analyzer.flow_end(flow)
    (rec,) = dns_records(ctx)
    assert (rec.query, rec.qtype_name) == ("", "NS")
    glue = answer_bytes(5, "", [a_rr("", "198.41.0.4")], qtype=dpkt.dns.DNS_NS)
    analyzer.packet(flow, from_server(glue))
    assert ctx.dns.name_for(ip("198.41.0.4")) is None  # the root names no address
    assert flow.service == "dns" and not flow.sticky
    assert "dns_query" not in flow.meta


def test_reused_id_for_another_name() -> None:
    """A query reusing a waiting query's id for another name waits beside it: the answer goes to
    the query of its name, the other is unanswered at the flow's end."""
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_client(query_bytes(6, "first.example"), ts=1.0))
    analyzer.packet(flow, from_client(query_bytes(6, "second.example"), ts=2.0))
    analyzer.packet(flow, from_server(answer_bytes(6, "second.example", []), ts=2.5))
    analyzer.flow_end(flow)
    assert [(r.query, r.answered, r.rtt_s) for r in dns_records(ctx)] == [
        ("second.example", True, 0.5),
        ("first.example", False, None),
    ]


def test_answer_for_another_name_is_not_paired() -> None:
    """An answer with a waiting query's id but another name does not pair with that query, which
    still waits for its own answer."""
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_client(query_bytes(6, "asked.example"), ts=1.0))
    analyzer.packet(flow, from_server(answer_bytes(6, "other.example", []), ts=1.5))
    analyzer.packet(flow, from_server(answer_bytes(6, "asked.example", []), ts=1.75))
    assert [(r.query, r.answered, r.rtt_s) for r in dns_records(ctx)] == [
        ("other.example", True, None),
        ("asked.example", True, 0.75),
    ]


def test_answers_of_every_type_are_bounded() -> None:
    """Answers of any type are written as Zeek writes them, with their TTLs, at most
    max_answers of them; the cache still gets every address."""
    ctx = RecordingContext()
    analyzer = DnsAnalyzer(ctx, DnsOptions(max_answers=2))
    flow = make_flow(from_client(b""))
    txt = RR(name="m.example", type=dpkt.dns.DNS_TXT, ttl=7200, text=[b"v=spf1"])
    rrs = [txt] + [a_rr("m.example", f"198.51.100.{i}") for i in range(1, 5)]
    analyzer.packet(flow, from_server(answer_bytes(1, "m.example", rrs)))
    (rec,) = dns_records(ctx)
    assert (rec.answers, rec.ttls) == (("TXT 6 v=spf1", "198.51.100.1"), (7200, 300))
    assert ctx.dns.name_for(ip("198.51.100.4")) == "m.example"  # the cache gets them all


def test_only_address_answers_feed_the_cache() -> None:
    """Names and data that look like addresses (a TXT, a PTR target) are logged but name no
    address; the A answer behind a CNAME is named after the name asked for, as before."""
    ctx, analyzer, flow = setup()
    rrs = [
        RR(name="t.example", type=dpkt.dns.DNS_TXT, text=[b"198.51.100.20"]),
        RR(name="t.example", type=dpkt.dns.DNS_PTR, ptrname="198.51.100.21"),
        cname_rr("t.example", "edge.example"),
        a_rr("edge.example", "198.51.100.22"),
    ]
    analyzer.packet(flow, from_server(answer_bytes(4, "t.example", rrs, qtype=dpkt.dns.DNS_ANY)))
    (rec,) = dns_records(ctx)
    assert rec.answers == (
        "TXT 13 198.51.100.20",
        "198.51.100.21",
        "edge.example",
        "198.51.100.22",
    )
    assert rec.qtype_name == "ANY"
    assert ctx.dns.name_for(ip("198.51.100.20")) is None
    assert ctx.dns.name_for(ip("198.51.100.21")) is None
    assert ctx.dns.name_for(ip("198.51.100.22")) == "t.example"


def test_answer_zeek_does_not_log_is_left_out() -> None:
    """HTTPS, HINFO and OPT answers, and a WKS (which Zeek counts but writes nothing for), give
    no entry in `answers` or `ttls`."""
    question = b"\x01x\x07example\x00" + struct.pack(">HH", 65, 1)
    https = b"\xc0\x0c" + struct.pack(">HHIH", 65, 1, 60, 3) + b"\x00\x01\x00"
    wks = b"\xc0\x0c" + struct.pack(">HHIH", 11, 1, 60, 5) + b"\x0a\x00\x00\x01\x06"
    a = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + bytes([198, 51, 100, 30])
    data = struct.pack(">HHHHHH", 3, 0x8180, 1, 3, 0, 0) + question + https + wks + a
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_server(data))
    (rec,) = dns_records(ctx)
    assert (rec.qtype_name, rec.answers, rec.ttls) == ("HTTPS", ("198.51.100.30",), (30,))


def test_answer_without_question_section() -> None:
    """An answer with no question is named after its first record; an empty one names nothing."""
    ctx, analyzer, flow = setup()
    reply = bytes(
        dpkt.dns.DNS(
            id=1,
            op=dpkt.dns.DNS_QR,
            qd=[],
            an=[cname_rr("a.example", "b.example"), a_rr("b.example", "198.51.100.8")],
            ns=[],
            ar=[],
        )
    )
    analyzer.packet(flow, from_server(reply))
    empty = bytes(dpkt.dns.DNS(id=2, op=dpkt.dns.DNS_QR, qd=[], an=[], ns=[], ar=[]))
    analyzer.packet(flow, from_server(empty))
    assert [(r.query, r.qtype_name) for r in dns_records(ctx)] == [(None, None), (None, None)]
    assert ctx.dns.name_for(ip("198.51.100.8")) == "a.example"


def test_the_cache_learns_an_answer_from_the_answer_alone() -> None:
    """An answer without a question, after its query: the record pairs them (the query's name),
    while the cache names the addresses after the answer's first record, as a process that did
    not see the query does (`learn_answers`)."""
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_client(query_bytes(3, "asked.example")))
    reply = bytes(
        dpkt.dns.DNS(
            id=3,
            op=dpkt.dns.DNS_QR,
            qd=[],
            an=[a_rr("owner.example", "198.51.100.7")],
            ns=[],
            ar=[],
        )
    )
    analyzer.packet(flow, from_server(reply))
    assert [r.query for r in dns_records(ctx)] == ["asked.example"]
    assert ctx.dns.name_for(ip("198.51.100.7")) == "owner.example"


def test_cname_loop_ends() -> None:
    """A CNAME loop in an answer neither hangs nor stops the chain's addresses being named."""
    ctx, analyzer, flow = setup()
    answers = [
        cname_rr("loop.example", "x.example"),
        cname_rr("x.example", "loop.example"),
        a_rr("x.example", "198.51.100.9"),
    ]
    analyzer.packet(flow, from_server(answer_bytes(1, "loop.example", answers)))
    assert ctx.dns.name_for(ip("198.51.100.9")) == "loop.example"


def test_tcp_two_messages_in_one_segment() -> None:
    """Two length-prefixed messages in one TCP segment each way give two TCP records."""
    ctx, analyzer, flow = setup(tcp=True)
    assert flow.proto == IP_PROTO_TCP
    q1, q2 = query_bytes(1, "a.example"), query_bytes(2, "b.example")
    segment = struct.pack(">H", len(q1)) + q1 + struct.pack(">H", len(q2)) + q2
    analyzer.packet(flow, from_client(segment, tcp=True, seq=1000))
    r1 = answer_bytes(1, "a.example", [a_rr("a.example", "198.51.100.1")])
    r2 = answer_bytes(2, "b.example", [a_rr("b.example", "198.51.100.2")])
    reply = struct.pack(">H", len(r1)) + r1 + struct.pack(">H", len(r2)) + r2
    analyzer.packet(flow, from_server(reply, tcp=True, seq=5000))
    records = dns_records(ctx)
    assert [(r.query, r.answers, r.proto) for r in records] == [
        ("a.example", ("198.51.100.1",), "tcp"),
        ("b.example", ("198.51.100.2",), "tcp"),
    ]


def test_tcp_message_split_across_segments_and_retransmitted() -> None:
    """A TCP message cut in three (length prefix split too) is read once, retransmission or not."""
    ctx, analyzer, flow = setup(tcp=True)
    query = query_bytes(4, "x.example")
    analyzer.packet(flow, from_client(struct.pack(">H", len(query)) + query, tcp=True, ts=1.0))
    reply = answer_bytes(4, "x.example", [a_rr("x.example", "198.51.100.4")])
    framed = struct.pack(">H", len(reply)) + reply
    parts = [framed[:1], framed[1:10], framed[10:]]
    seq = 5000
    for part in parts:
        analyzer.packet(flow, from_server(part, tcp=True, seq=seq))
        seq += len(part)
    analyzer.packet(flow, from_server(framed[10:], tcp=True, seq=5010))  # retransmission
    analyzer.flow_end(flow)
    (rec,) = dns_records(ctx)
    assert (rec.query, rec.answers, rec.answered) == ("x.example", ("198.51.100.4",), True)


def test_tcp_overlap_and_hole() -> None:
    """Through the engine's stream layer, a segment overlapping what was read gives only its new
    bytes, and a hole (acknowledged, never captured) drops the message it interrupts."""
    conv = TcpConversation(("10.0.0.2", 40000), ("10.0.0.53", 53))
    q1 = query_bytes(1, "one.example")
    framed1 = struct.pack(">H", len(q1)) + q1
    first = conv.send(framed1[:10])
    overlap = conv.send(framed1[5:], seq=first.tcp_seq + 5)
    q2 = query_bytes(2, "two.example")
    framed2 = struct.pack(">H", len(q2)) + q2
    head = conv.send(framed2[:10])
    conv.seq[True] += len(framed2) - 10  # framed2's tail is lost
    q3 = query_bytes(3, "three.example")
    framed3 = struct.pack(">H", len(q3)) + q3
    ctx = RecordingContext()
    engine = Engine([DnsAnalyzer(ctx)], ctx)
    for pkt in (first, overlap, head, conv.send(framed3), conv.ack(False)):
        engine.process(pkt)
    engine.finish()
    assert [r.query for r in dns_records(ctx)] == ["one.example", "three.example"]


def test_tcp_buffer_is_bounded() -> None:
    """Bytes of an incomplete TCP message beyond max_tcp_buffer_bytes are dropped."""
    ctx = RecordingContext()
    analyzer = DnsAnalyzer(ctx, DnsOptions(max_tcp_buffer_bytes=50))
    flow = make_flow(from_client(b"", tcp=True))
    analyzer.packet(flow, from_client(b"\x01\x00" + b"\x00" * 60, tcp=True, seq=1000))
    q = query_bytes(1, "next.example")
    analyzer.packet(flow, from_client(struct.pack(">H", len(q)) + q, tcp=True, seq=1062))
    analyzer.flow_end(flow)
    assert [r.query for r in dns_records(ctx)] == ["next.example"]


def test_tcp_bad_length_prefix_is_dropped() -> None:
    """A TCP length prefix too short for a DNS header drops the buffer without raising."""
    ctx, analyzer, flow = setup(tcp=True)
    analyzer.packet(flow, from_client(b"\x00\x03abc", tcp=True))
    q = query_bytes(8, "after.example")
    analyzer.packet(flow, from_client(struct.pack(">H", len(q)) + q, tcp=True, seq=1005))
    analyzer.flow_end(flow)
    assert [r.query for r in dns_records(ctx)] == ["after.example"]


def test_other_protocol_on_port_53_is_given_up() -> None:
    """After max_failures undecodable payloads and no valid one, the flow is left alone."""
    ctx, analyzer, flow = setup()
    for _ in range(DnsOptions().max_failures):
        analyzer.packet(flow, from_client(b"\x01\x02"))
    analyzer.packet(flow, from_client(query_bytes(1, "late.example")))
    analyzer.flow_end(flow)
    assert dns_records(ctx) == []
    assert flow.service == ""


def test_other_ports_and_transports_are_ignored() -> None:
    """A DNS-shaped payload away from port 53 (mDNS on 5353), or not on UDP/TCP, is not read."""
    ctx = RecordingContext()
    analyzer = DnsAnalyzer(ctx)
    pkt = make_udp(query_bytes(1, "x.local"), sport=5353, dport=5353)
    flow = make_flow(pkt)
    analyzer.packet(flow, pkt)
    odd = make_udp(query_bytes(1, "x.example"), dport=53)
    odd.proto = 132  # SCTP
    odd_flow = make_flow(odd)
    analyzer.packet(odd_flow, odd)
    analyzer.flow_end(flow)
    analyzer.flow_end(odd_flow)
    assert ctx.records == [] and flow.service == "" and odd_flow.service == ""


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_decoder_raises_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes into the decoder raise only DecodeError."""
    try:
        parse_dns_message(data, extra=True)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.one_of(
                st.binary(max_size=200),
                st.builds(
                    lambda cut, flip: EXAMPLE_ANSWER[:cut] + bytes([flip]) + EXAMPLE_ANSWER[cut:],
                    st.integers(0, len(EXAMPLE_ANSWER)),
                    st.integers(0, 255),
                ),
            ),
        ),
        max_size=8,
    ),
    st.booleans(),
)
def test_fuzz_analyzer_raises_nothing(packets: list[tuple[bool, bytes]], tcp: bool) -> None:
    """Arbitrary payloads either way on UDP or TCP port 53 raise nothing from any hook."""
    ctx, analyzer, flow = setup(tcp=tcp)
    seq_c, seq_s = 1000, 5000
    for client, payload in packets:
        if client:
            analyzer.packet(flow, from_client(payload, tcp=tcp, seq=seq_c))
            seq_c += len(payload)
        else:
            analyzer.packet(flow, from_server(payload, tcp=tcp, seq=seq_s))
            seq_s += len(payload)
    analyzer.flow_end(flow)
    assert all(isinstance(r, DnsRecord) for r in ctx.records)


def test_update_logs_the_updated_name_not_the_zone() -> None:
    """Zeek's dns/dynamic-update.pcap: a DNS UPDATE is logged under the name it changes (its
    prerequisite and update records), not the zone its question section names, with no type."""
    from dronewatch.capture.files import FileSource
    from dronewatch.core.pipeline import AnalysisConfig, run_source
    from tests.pcaps import THIRD_PARTY, capture

    records: list[DnsRecord] = []
    run_source(
        FileSource(str(capture(THIRD_PARTY / "zeek" / "dns" / "dynamic-update.pcap"))),
        lambda r: records.append(r) if isinstance(r, DnsRecord) else None,
        AnalysisConfig(),
    )
    assert sorted((r.query, r.qtype_name, r.answered) for r in records) == [
        ("nwin1.stratolab.org", None, True),
        ("nwin2.stratolab.org", None, True),
    ]
    # Its prerequisite and updates, as Zeek's dns.log writes them (dynamic-update's baseline).
    assert sorted((r.answers, r.ttls) for r in records) == [
        (
            (
                f"pre: NoRRSet CNAME nwin{n}.stratolab.org",
                "del: RRSet AAAA",
                "del: RRSet A",
                f"add: A nwin{n}.stratolab.org 192.168.1.{104 + n}",
            ),
            (0, 0, 0, 1200),
        )
        for n in (1, 2)
    ]


def update_response(*records: bytes, n_prereq: int) -> bytes:
    """A response to an UPDATE of zone `example` (class IN), echoing `records`: the first
    `n_prereq` as prerequisites, the rest as updates."""
    zone = b"\x07example\x00" + struct.pack(">HH", 6, 1)  # at 12
    counts = (1, n_prereq, len(records) - n_prereq, 0)
    flags = 0x8000 | DNS_OPCODE_UPDATE << 11
    return struct.pack(">HHHHHH", 77, flags, *counts) + zone + b"".join(records)


def rr_bytes(label: bytes, rtype: int, rclass: int, ttl: int, rdata: bytes = b"") -> bytes:
    """A record owned by `<label>.example`."""
    return (
        bytes([len(label)])
        + label
        + b"\xc0\x0c"
        + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata))
        + rdata
    )


def test_update_prerequisites_and_updates_as_zeek_writes_them() -> None:
    """Every kind of prerequisite (RFC 2136 2.4) and update (2.5) is written as Zeek writes it;
    records that break their section's rules (a prerequisite with a TTL, an update of another
    class) are left out; the zone's name is never the query."""
    data = update_response(
        rr_bytes(b"a", 255, 255, 0),  # name in use
        rr_bytes(b"b", 255, 254, 0),  # name not in use
        rr_bytes(b"c", 1, 255, 0),  # RRset exists (value independent)
        rr_bytes(b"d", 28, 254, 0),  # RRset does not exist
        rr_bytes(b"e", 1, 1, 0, bytes([192, 0, 2, 5])),  # RRset exists (value dependent)
        rr_bytes(b"f", 1, 255, 60),  # a TTL: not a prerequisite
        rr_bytes(b"g", 255, 255, 0),  # delete every RRset of a name
        rr_bytes(b"h", 16, 255, 0),  # delete an RRset
        rr_bytes(b"i", 1, 254, 0, bytes([192, 0, 2, 6])),  # delete one record
        rr_bytes(b"j", 16, 1, 300, b"\x02hi"),  # add a record
        rr_bytes(b"k", 28, 1, 300, bytes(15) + b"\x01"),  # add an address
        rr_bytes(b"l", 1, 3, 300, bytes([192, 0, 2, 7])),  # class CH: not this zone's
        n_prereq=6,
    )
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_server(data))
    (rec,) = dns_records(ctx)
    assert rec.query == "a.example"
    assert list(zip(rec.answers, rec.ttls, strict=True)) == [
        ("pre: NameInUse a.example", 0),
        ("pre: NameNotInUse b.example", 0),
        ("pre: RRSetExists A c.example", 0),
        ("pre: NoRRSet AAAA d.example", 0),
        ("pre: RRSetExists A e.example", 0),
        ("del: RRSet * g.example", 0),
        ("del: RRSet TXT", 0),
        ("add: A i.example 192.0.2.6", 0),
        ("add: TXT 2 hi", 300),
        ("add: AAAA k.example ::1", 300),
    ]
    assert ctx.dns.name_for(ip("192.0.2.6")) is None  # the update section feeds no cache


def test_update_without_one_soa_zone_has_no_answers() -> None:
    """An UPDATE whose zone section is not one SOA entry gives no answers (as Zeek)."""
    data = bytearray(update_response(rr_bytes(b"a", 255, 255, 0), n_prereq=1))
    data[12 + 9 : 12 + 11] = struct.pack(">H", 1)  # the zone's type: A, not SOA
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, from_server(bytes(data)))
    (rec,) = dns_records(ctx)
    assert (rec.query, rec.answers) == ("a.example", ())


def test_subject_of_an_update_without_records_is_unknown() -> None:
    """An UPDATE carrying only its zone names nothing; a query names its first question."""
    update = DnsMessage(7, DNS_OPCODE_UPDATE << 11, (DnsQuestion("zone.example", 6, 1),), ())
    assert subject(update) == (None, None)
    query = DnsMessage(8, 0, (DnsQuestion("Api.Example.", 1, 1),), ())
    assert subject(query) == ("api.example", 1)
