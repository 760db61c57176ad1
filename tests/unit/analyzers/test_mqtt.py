"""MQTT analyzer: packet decoders with byte literals, the recorded sessions, and fuzzing."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.mqtt import (
    MqttAnalyzer,
    MqttOptions,
    MqttRecord,
    parse_connect,
    parse_publish,
    parse_subscribe,
    read_properties,
    read_varint,
    split_packet,
)
from dronewatch.exceptions import DecodeError
from dronewatch.fastpath import native
from tests.factories import RecordingContext, capture_records, make_flow, make_packet
from tests.pcaps import PCAPS

if TYPE_CHECKING:
    from dronewatch.fastpath._fastpath import MqttCounter


def s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect(client: str, level: int = 4, props: bytes = b"") -> bytes:
    name = "MQIsdp" if level == 3 else "MQTT"
    head = s(name) + bytes([level, 0x82]) + struct.pack("!H", 60)
    if level == 5:
        head += varint(len(props)) + props
    return packet(0x10, head + s(client))


def publish(topic: str, payload: bytes, qos: int = 0, level: int = 4, props: bytes = b"") -> bytes:
    body = s(topic) + (b"\x00\x01" if qos else b"")
    if level == 5:
        body += varint(len(props)) + props
    return packet(0x30 | (qos << 1), body + payload)


def feed(segments: list[tuple[bool, bytes]]) -> tuple[RecordingContext, object]:
    """Send TCP segments (from_client, bytes) of one flow through a fresh analyzer."""
    ctx = RecordingContext()
    analyzer = MqttAnalyzer(ctx)
    seqs = {True: 1000, False: 5000}
    first = make_packet(segments[0][1], dport=1883, tcp_seq=seqs[True])
    flow = make_flow(first)
    for client, data in segments:
        if client:
            pkt = make_packet(data, dport=1883, tcp_seq=seqs[True])
        else:
            pkt = make_packet(
                data,
                src="203.0.113.10",
                dst="192.168.1.3",
                sport=1883,
                dport=50000,
                tcp_seq=seqs[False],
            )
        seqs[client] += len(data)
        analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    return ctx, flow


def test_varint() -> None:
    """Variable byte integers decode, including the four-byte maximum, and overlong ones fail."""
    assert read_varint(b"\x00", 0) == (0, 1)
    assert read_varint(b"\xc1\x02", 0) == (321, 2)
    assert read_varint(b"\xff\xff\xff\x7f", 0) == (268_435_455, 4)
    with pytest.raises(DecodeError):
        read_varint(b"\xff\xff\xff\xff\x01", 0)


def test_split_packet_waits_for_the_whole_packet() -> None:
    """A packet cut short asks for more bytes instead of failing."""
    whole = publish("a/b", b"x" * 10)
    assert split_packet(whole[:5]) is None
    assert split_packet(whole) == (0x30, 2, len(whole))


def test_connect_v311_and_v31() -> None:
    """CONNECT gives the level and client id, for MQTT 3.1.1 and the older MQIsdp 3.1."""
    c = parse_connect(connect("pilot2-rc-1")[2:])
    assert (c.level, c.client_id, c.username_present, c.keep_alive_s) == (
        4,
        "pilot2-rc-1",
        True,
        60,
    )
    assert parse_connect(connect("old", level=3)[2:]).level == 3


def test_connect_v5_skips_properties() -> None:
    """MQTT 5 CONNECT properties (session expiry, user property) are passed over."""
    props = b"\x11" + struct.pack("!I", 3600) + b"\x26" + s("k") + s("v")
    assert parse_connect(connect("dock-1", level=5, props=props)[2:]).client_id == "dock-1"


def test_connect_rejects_other_protocols() -> None:
    """A CONNECT-looking packet with another protocol name is not MQTT."""
    with pytest.raises(DecodeError):
        parse_connect(s("HTTP") + b"\x04\x02\x00\x3c" + s("x"))


def test_publish_qos_and_payload() -> None:
    """PUBLISH gives topic, QoS, retain and payload length (packet id skipped for QoS 1)."""
    raw = publish("thing/product/SN1/osd", b'{"lat":1}', qos=1)
    p = parse_publish(raw[0], raw[2:], 4)
    assert (p.topic, p.qos, p.payload_len) == ("thing/product/SN1/osd", 1, 9)


def test_publish_topic_alias_v5() -> None:
    """MQTT 5: a topic alias is learnt from the first publish and resolved in later ones."""
    alias = b"\x23\x00\x07"
    first = publish("thing/product/SN1/osd", b"a" * 5, level=5, props=alias)
    later = publish("", b"b" * 7, level=5, props=alias)
    ctx, flow = feed([(True, connect("dock", level=5)), (True, first), (True, later)])
    (topic,) = [r for r in ctx.of("mqtt") if isinstance(r, MqttRecord) and r.topic]
    assert (topic.topic, topic.publishes, topic.payload_bytes) == ("thing/product/SN1/osd", 2, 12)


def test_subscribe_filters() -> None:
    """SUBSCRIBE lists every topic filter with its QoS."""
    body = b"\x00\x05" + s("thing/product/+/services") + b"\x01" + s("sys/#") + b"\x00"
    assert parse_subscribe(body, 4) == [("thing/product/+/services", 1), ("sys/#", 0)]
    with pytest.raises(DecodeError):
        parse_subscribe(b"\x00\x05", 4)


def test_unknown_v5_property_is_an_error() -> None:
    """A property id the standard does not define is a decode error."""
    with pytest.raises(DecodeError):
        read_properties(b"\x02\x7f\x00", 0)


def test_packets_split_and_merged_over_segments() -> None:
    """A CONNECT split in two segments and two publishes in one segment are all read."""
    c = connect("pilot2-rc-5YSZL9A00100AB")
    two = publish("t/1", b"x" * 3) + publish("t/1", b"y" * 4)
    ctx, flow = feed([(True, c[:7]), (True, c[7:]), (True, two)])
    records = [r for r in ctx.of("mqtt") if isinstance(r, MqttRecord)]
    assert [r.msg_type for r in records] == ["connect", "publish"]
    assert records[1].publishes == 2 and records[1].payload_bytes == 7
    assert flow.meta["mqtt_client_id"] == "pilot2-rc-5YSZL9A00100AB"  # type: ignore[attr-defined]
    assert flow.meta["mqtt_topics"] == ["t/1"]  # type: ignore[attr-defined]
    assert flow.service == "mqtt" and flow.sticky  # type: ignore[attr-defined]


def test_not_mqtt_is_left_alone() -> None:
    """A flow that does not start with CONNECT gets no record and no service."""
    ctx, flow = feed([(True, b"GET / HTTP/1.1\r\n\r\n"), (True, publish("a", b"b"))])
    assert ctx.records == [] and flow.service == ""  # type: ignore[attr-defined]


def test_topic_limit() -> None:
    """Past max_topics, further topics are not listed."""
    ctx = RecordingContext()
    analyzer = MqttAnalyzer(ctx, MqttOptions(max_topics=2))
    data = connect("c") + b"".join(publish(f"t/{i}", b"x") for i in range(5))
    pkt = make_packet(data, dport=1883)
    flow = make_flow(pkt)
    analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    assert len([r for r in ctx.of("mqtt") if isinstance(r, MqttRecord) and r.topic]) == 2


@pytest.mark.parametrize(("name", "version"), [("mqtt_v311", "3.1.1"), ("mqtt_v5", "5.0")])
def test_recorded_sessions(name: str, version: str) -> None:
    """paho-mqtt against mosquitto: both clients, the subscription and the publish counts."""
    records = [
        r
        for r in capture_records(PCAPS / "lab" / f"{name}.pcap", MqttAnalyzer)
        if isinstance(r, MqttRecord)
    ]
    connects = sorted(r.client_id or "" for r in records if r.msg_type == "connect")
    assert connects == ["fleet-server-01", "pilot2-rc-5YSZL9A00100AB"]
    assert {r.proto_version for r in records} == {version}
    osd = next(r for r in records if r.topic == "thing/product/1581F5FHD22AB00D0123/osd")
    assert (osd.publishes, osd.payload_bytes, osd.direction) == (4, 1381, "orig")
    subs = [r.topic for r in records if r.msg_type == "subscribe"]
    assert subs == ["thing/product/5YSZL9A00100AB/services"]


def test_cloud_api_scenario() -> None:
    """The DJI Cloud API scenario: 5 OSD publishes and one QoS 1 event from the RC."""
    records = [
        r
        for r in capture_records(PCAPS / "scenarios" / "dji_cloud_api_mqtt.pcap", MqttAnalyzer)
        if isinstance(r, MqttRecord)
    ]
    by_topic = {r.topic: r for r in records if r.msg_type == "publish"}
    assert by_topic["thing/product/1581F5FHD22AB00D0123/osd"].publishes == 5
    assert by_topic["thing/product/5YSZL9A00100AB/events"].qos == 1
    assert by_topic["thing/product/5YSZL9A00100AB/services"].direction == "resp"


@pytest.mark.parametrize(
    "data",
    [b"\x01\x01", b"\x02\x21\x00", b"\x01\x02"],
    ids=["byte-property-cut", "u16-property-cut", "u32-property-cut"],
)
def test_truncated_property_is_a_decode_error(data: bytes) -> None:
    """A fixed-size property whose value the properties' length cuts off is a DecodeError (these
    raised IndexError and struct.error, found by the fuzz test below)."""
    with pytest.raises(DecodeError, match="runs past"):
        read_properties(data, 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 255), st.sampled_from([3, 4, 5]))
def test_fuzz_decoders_raise_only_decode_error(data: bytes, first: int, level: int) -> None:
    """Arbitrary bytes into every decoder raise only DecodeError."""
    for fn in (
        lambda: parse_connect(data),
        lambda: parse_publish(first, data, level),
        lambda: parse_subscribe(data, level),
        lambda: read_properties(data, 0),
        lambda: split_packet(data),
    ):
        try:
            fn()
        except DecodeError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=120)), max_size=8))
def test_fuzz_analyzer_raises_nothing(segments: list[tuple[bool, bytes]]) -> None:
    """After a real CONNECT, arbitrary segments both ways raise nothing from the analyzer."""
    feed([(True, connect("fuzz", level=5)), *segments])


_TOPICS = ("a/b", "thing/product/1/osd", "é/ü")
_PROPS = (b"\x01\x01", b"\x02\x00\x00\x00\x10", b"\x23\x00\x02", b"\x26" + s("k") + s("v"), b"\x7f")
"""MQTT 5 properties: payload format, expiry interval, topic alias, user property, unknown."""
_PUBLISH = st.tuples(
    st.just("publish"),
    st.sampled_from([*_TOPICS, "other", ""]),
    st.binary(max_size=40),
    st.integers(0, 3),
    st.lists(st.sampled_from(_PROPS), max_size=3).map(b"".join),
)
"""A PUBLISH's (topic, payload, QoS, properties): known topics, others, QoS 3, aliases."""
_OTHER = st.one_of(
    st.sampled_from([b"\x40\x02\x00\x01", b"\xc0\x00", b"\xd0\x00", b"\x82\x03\x00\x01\x00"]),
    st.binary(min_size=1, max_size=8),
)
"""PUBACK, PINGREQ, PINGRESP, SUBSCRIBE, or arbitrary bytes."""
Part = tuple[str, str, bytes, int, bytes] | bytes


def _segment(parts: list[Part], level: int) -> bytes:
    out = b""
    for part in parts:
        if isinstance(part, bytes):
            out += part
            continue
        _, topic, payload, qos, props = part
        body = s(topic) + (b"\x00\x01" if qos else b"")
        if level == 5:
            body += varint(len(props)) + props
        out += packet(0x30 | (qos << 1), body + payload)
    return out


def _counter(level: int, side: int) -> MqttCounter:
    fastpath = native()
    if fastpath is None:
        pytest.skip("the C extension is not built")
    counter = fastpath.MqttCounter()
    counter.level = level
    counter.ready(side, True)
    return counter


def test_c_counter_takes_whole_publishes_of_known_topics_only() -> None:
    """Whole PUBLISHes of known topics (and acknowledgements) are taken; a packet cut at the
    segment's end, an unknown topic, a CONNECT from the client, or a direction not ready are
    refused, changing nothing."""
    counter = _counter(5, 0)
    osd = counter.topic(0, "a/b")
    two = publish("a/b", b"12345", level=5) + publish("a/b", b"67", qos=1, level=5)
    assert counter.feed(two + b"\x40\x02\x00\x01", True) == 3
    assert counter.counts(osd) == (2, 7, 1)
    for refused in (two[:-1], publish("c/d", b"x", level=5), connect("c", 5)):
        assert counter.feed(refused, True) == -1
    counter.ready(0, False)
    assert counter.feed(two, True) == -1
    assert counter.counts(osd) == (2, 7, 1)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(_PUBLISH, _OTHER), min_size=1, max_size=5),
    st.sampled_from([3, 4, 5]),
    st.booleans(),
)
def test_c_counter_counts_what_the_analyzer_would(
    parts: list[Part], level: int, from_orig: bool
) -> None:
    """`MqttCounter.feed` takes a segment only when the analyzer, reading it from a packet
    boundary, would merely count its packets, and counts them as the analyzer does; anything
    else it refuses whole, changing nothing."""
    data = _segment(parts, level)
    side = 0 if from_orig else 1
    counter = _counter(level, side)
    index = {t: counter.topic(side, t) for t in _TOPICS}
    taken = counter.feed(data, from_orig)
    got = {t: counter.counts(i) for t, i in index.items()}
    # The analyzer's reading of the same bytes, packet by packet from the boundary.
    expect = {t: [0, 0, 0] for t in _TOPICS}
    pos, packets, whole = 0, 0, True
    while pos < len(data):
        try:
            split = split_packet(data[pos:])
        except DecodeError:
            split = None
        if split is None:
            whole = False
            break
        first, at, end = split
        kind = first >> 4
        if kind == 3:
            try:
                p = parse_publish(first, data[pos + at : pos + end], level)
            except DecodeError:
                whole = False
                break
            if p.topic not in expect or p.topic_alias is not None:
                whole = False
                break
            counts = expect[p.topic]
            counts[0] += 1
            counts[1] += p.payload_len
            counts[2] = max(counts[2], p.qos)
        elif side == 0 and kind in (1, 8):
            whole = False
            break
        pos += end
        packets += 1
    if taken >= 0:
        assert whole and taken == packets
        assert got == {t: tuple(v) for t, v in expect.items()}
    else:
        assert got == dict.fromkeys(_TOPICS, (0, 0, 0))
