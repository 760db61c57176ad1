"""Tests for the mDNS analyzer: DNS-SD names and services, deduplication, robustness."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.mdns import (
    MdnsAnalyzer,
    MdnsMessageRecord,
    MdnsOptions,
    MdnsRecord,
    service_type,
)
from dronewatch.core.engine import Engine
from dronewatch.core.flow import Flow, Packet
from tests.factories import RecordingContext, ip, make_flow, make_udp
from tests.unit.analyzers.test_dhcp import capture_udp

DRONE = "192.168.42.1"
PHONE = "192.168.42.10"
MCAST = "224.0.0.251"


def name(text: str) -> bytes:
    """A name in wire form, uncompressed (RFC 1035 3.1)."""
    out = b"".join(bytes([len(label)]) + label.encode() for label in text.split(".") if label)
    return out + b"\x00"


def rr(owner: str, rtype: int, rdata: bytes, *, ttl: int = 120, cls: int = 0x8001) -> bytes:
    """A resource record; class 0x8001 is IN with the mDNS cache-flush bit."""
    return name(owner) + struct.pack(">HHIH", rtype, cls, ttl, len(rdata)) + rdata


def message(
    *,
    response: bool,
    questions: Sequence[tuple[str, int]] = (),
    answers: Sequence[bytes] = (),
    additional: Sequence[bytes] = (),
) -> bytes:
    """An mDNS message (id 0) built from wire-form parts."""
    flags = 0x8400 if response else 0
    head = struct.pack(">HHHHHH", 0, flags, len(questions), len(answers), 0, len(additional))
    body = b"".join(name(q) + struct.pack(">HH", qtype, 1) for q, qtype in questions)
    return head + body + b"".join(answers) + b"".join(additional)


# A simulated ANAFI announcing its ARSDK service: PTR, SRV and, in the additional section, the
# host's address and an NSEC record (a type generic DNS decoders often refuse).
ANAFI_ANNOUNCE = message(
    response=True,
    answers=[
        rr("_arsdk-0914._udp.local", 12, name("ANAFI-G0123._arsdk-0914._udp.local"), cls=1),
        rr(
            "ANAFI-G0123._arsdk-0914._udp.local",
            33,
            struct.pack(">HHH", 0, 0, 44444) + name("anafi-g0123.local"),
        ),
    ],
    additional=[
        rr("anafi-g0123.local", 1, ip(DRONE)),
        rr("anafi-g0123.local", 47, name("anafi-g0123.local") + b"\x00\x01\x40"),
    ],
)


def drone_packet(payload: bytes, *, ts: float = 1.0) -> Packet:
    """A multicast datagram from the drone on 5353."""
    return make_udp(payload, src=DRONE, dst=MCAST, sport=5353, dport=5353, ts=ts)


def setup(options: MdnsOptions | None = None) -> tuple[RecordingContext, MdnsAnalyzer, Flow]:
    """A context, an analyzer and the drone's multicast mDNS flow."""
    ctx = RecordingContext()
    return ctx, MdnsAnalyzer(ctx, options), make_flow(drone_packet(b""))


def mdns_records(ctx: RecordingContext) -> list[MdnsRecord]:
    """The mdns.jsonl records written so far (every other record is a per-message one)."""
    out = [r for r in ctx.of("mdns") if isinstance(r, MdnsRecord)]
    assert len(out) + len(message_records(ctx)) == len(ctx.records)
    return out


def message_records(ctx: RecordingContext) -> list[MdnsMessageRecord]:
    """The mdns_messages.jsonl records written so far."""
    return [r for r in ctx.of("mdns_messages") if isinstance(r, MdnsMessageRecord)]


def test_service_type() -> None:
    """Service types are found in instance, type and subtype names; other names have none."""
    assert service_type("ANAFI-G0123._arsdk-0914._udp.local") == "_arsdk-0914._udp.local"
    assert service_type("_printer._sub._HTTP._tcp.local") == "_http._tcp.local"
    assert service_type("_services._dns-sd._udp.local") == "_dns-sd._udp.local"
    assert service_type("drwxr.local") is None
    assert service_type("_udp.local") is None


def test_announcement_names_services_and_addresses() -> None:
    """A DNS-SD announcement gives its PTR/SRV names, service type and the host's address."""
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, drone_packet(ANAFI_ANNOUNCE, ts=2.5))
    (rec,) = mdns_records(ctx)
    assert rec.to_dict() == {
        "ts": 2.5,
        "uid": flow.uid,
        "orig_h": DRONE,
        "orig_p": 5353,
        "resp_h": MCAST,
        "resp_p": 5353,
        "src_h": DRONE,
        "is_response": True,
        "queries": [],
        "answers": [
            "_arsdk-0914._udp.local",
            "ANAFI-G0123._arsdk-0914._udp.local",
            "anafi-g0123.local",
        ],
        "services": ["_arsdk-0914._udp.local"],
        "addresses": [DRONE],
    }
    assert flow.service == "mdns"


def test_query_names() -> None:
    """A browse query lists the names asked for and their service types."""
    ctx, analyzer, flow = setup()
    query = message(response=False, questions=[("_arsdk-0914._udp.local", 12)])
    pkt = make_udp(query, src=PHONE, dst=MCAST, sport=5353, dport=5353)
    analyzer.packet(flow, pkt)
    (rec,) = mdns_records(ctx)
    assert (rec.is_response, rec.src_h) == (False, PHONE)
    assert rec.queries == ("_arsdk-0914._udp.local",)
    assert rec.services == ("_arsdk-0914._udp.local",)


def test_repeats_are_written_once() -> None:
    """The same announcement repeated on a flow is written once; a different one again."""
    ctx, analyzer, flow = setup()
    for ts in (1.0, 2.0, 3.0):
        analyzer.packet(flow, drone_packet(ANAFI_ANNOUNCE, ts=ts))
    goodbye = message(response=True, answers=[rr("other.local", 1, ip("192.168.42.2"))])
    analyzer.packet(flow, drone_packet(goodbye, ts=4.0))
    assert [r.ts for r in mdns_records(ctx)] == [1.0, 4.0]
    analyzer.flow_end(flow)
    analyzer.packet(flow, drone_packet(ANAFI_ANNOUNCE, ts=5.0))  # state was dropped
    assert len(mdns_records(ctx)) == 3


def test_records_per_flow_are_bounded() -> None:
    """Past max_records_per_flow distinct messages, a flow writes nothing more."""
    ctx, analyzer, flow = setup(MdnsOptions(max_records_per_flow=2))
    for i in range(5):
        query = message(response=False, questions=[(f"host{i}.local", 1)])
        analyzer.packet(flow, drone_packet(query))
    assert len(mdns_records(ctx)) == 2


def test_names_per_record_are_bounded() -> None:
    """Each list of a record keeps at most max_names entries."""
    ctx, analyzer, flow = setup(MdnsOptions(max_names=3))
    query = message(response=False, questions=[(f"h{i}.local", 1) for i in range(10)])
    analyzer.packet(flow, drone_packet(query))
    (rec,) = mdns_records(ctx)
    assert rec.queries == ("h0.local", "h1.local", "h2.local")


def test_real_messages_from_capture() -> None:
    """The capture's mDNS traffic decodes: a service browse, and the phone's own host name."""
    ctx, analyzer, _ = setup()
    flows: dict[tuple[str, str], Flow] = {}
    for src, dst, sport, dport, payload in capture_udp(5353):
        pkt = make_udp(payload, src=src, dst=dst, sport=sport, dport=dport)
        flow = flows.setdefault((src, dst), make_flow(pkt, uid=f"C{len(flows)}"))
        analyzer.packet(flow, pkt)
    records = mdns_records(ctx)
    assert records, "no mDNS message decoded"
    browse = records[0]
    assert (browse.src_h, browse.is_response) == ("192.168.1.3", False)
    assert "_nfs._tcp.local" in browse.services
    assert "_afpovertcp._tcp.local" in browse.queries
    announced = {a for r in records if r.is_response for a in r.answers}
    assert "drwxr.local" in announced
    addresses = {a for r in records for a in r.addresses}
    assert {"192.168.1.3", "fe80::5d3:3ecc:4336:5f90"} <= addresses
    assert len(records) < len(capture_udp(5353))  # repeats were folded


def test_every_message_is_a_record_of_its_own() -> None:
    """Each message, repeats too, is an mdns_messages record: a query with its first question,
    an announcement under its first answer's name with the answers as dns.jsonl writes them."""
    ctx, analyzer, flow = setup()
    query = message(response=False, questions=[("Initial-Query-A.local", 1), ("b.local", 28)])
    analyzer.packet(flow, make_udp(query, src=PHONE, dst=MCAST, sport=5353, dport=5353, ts=0.5))
    for ts in (1.0, 2.0):
        analyzer.packet(flow, drone_packet(ANAFI_ANNOUNCE, ts=ts))
    asked, told, again = message_records(ctx)
    assert asked.to_dict() == {
        "ts": 0.5,
        "uid": flow.uid,
        "orig_h": DRONE,
        "orig_p": 5353,
        "resp_h": MCAST,
        "resp_p": 5353,
        "src_h": PHONE,
        "trans_id": 0,
        "is_response": False,
        "query": "initial-query-a.local",
        "qtype_name": "A",
        "questions": 2,
        "answers": [],
        "ttls": [],
    }
    assert (told.src_h, told.is_response, told.query) == (DRONE, True, "_arsdk-0914._udp.local")
    assert (told.qtype_name, told.questions, told.rcode_name) == (None, 0, "NOERROR")
    assert told.answers == ("anafi-g0123._arsdk-0914._udp.local", "anafi-g0123.local")
    assert told.ttls == (120, 120)
    assert again.ts == 2.0 and again.answers == told.answers
    assert len(mdns_records(ctx)) == 2  # the repeat is folded there


def test_message_records_per_flow_are_bounded() -> None:
    """Past max_messages_per_flow messages a flow writes no more message records (0: none),
    while mdns.jsonl still gets new names."""
    ctx, analyzer, flow = setup(MdnsOptions(max_messages_per_flow=2))
    for i in range(4):
        analyzer.packet(flow, drone_packet(message(response=False, questions=[(f"h{i}.local", 1)])))
    assert [r.query for r in message_records(ctx)] == ["h0.local", "h1.local"]
    assert len(mdns_records(ctx)) == 4
    ctx, analyzer, flow = setup(MdnsOptions(max_messages_per_flow=0))
    analyzer.packet(flow, drone_packet(ANAFI_ANNOUNCE))
    assert message_records(ctx) == [] and len(mdns_records(ctx)) == 1


@pytest.mark.parametrize(("follow", "written"), [(True, 50), (False, 32)])
def test_flow_is_followed_past_the_inspected_packets(follow: bool, written: int) -> None:
    """A host's announcements on one flow are all written, past the engine's 32 inspected
    packets; with follow_flow off, only the inspected ones."""
    ctx = RecordingContext()
    engine = Engine([MdnsAnalyzer(ctx, MdnsOptions(follow_flow=follow))], ctx)
    assert engine.options.inspect_packets < 50
    for n in range(50):
        engine.process(drone_packet(ANAFI_ANNOUNCE, ts=1.0 + n))
    engine.finish()
    assert [r.ts for r in message_records(ctx)] == [1.0 + n for n in range(written)]
    assert len(mdns_records(ctx)) == 1


def test_other_ports_and_garbage_are_ignored() -> None:
    """Messages away from 5353, and bytes that are not DNS, write nothing."""
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, drone_packet(b"\x00\x01\x02"))
    other = make_udp(ANAFI_ANNOUNCE, src=DRONE, dst=PHONE, sport=40000, dport=53)
    analyzer.packet(make_flow(other), other)
    assert ctx.records == []


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.tuples(st.integers(0, len(ANAFI_ANNOUNCE)), st.binary(min_size=1, max_size=4)).map(
            lambda cut: ANAFI_ANNOUNCE[: cut[0]] + cut[1] + ANAFI_ANNOUNCE[cut[0] + 1 :]
        ),
    )
)
def test_fuzz_analyzer_raises_nothing(payload: bytes) -> None:
    """Arbitrary bytes and damaged announcements raise nothing from the analyzer."""
    ctx, analyzer, flow = setup()
    analyzer.packet(flow, drone_packet(payload))
    analyzer.flow_end(flow)
    assert len(mdns_records(ctx)) == len(message_records(ctx)) <= 1
