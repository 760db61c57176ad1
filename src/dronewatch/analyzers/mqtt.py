"""MQTT 3.1, 3.1.1 and 5.0 over TCP on any port: the CONNECT and every topic, into mqtt.jsonl.

A flow is MQTT when the originator's first bytes are a CONNECT packet (type 1, protocol name
`MQTT` or `MQIsdp`, level 3, 4 or 5). Both directions are then reassembled (bounded) and read
packet by packet: CONNECT (client id, version, whether a username was sent; never the password),
PUBLISH (topic, QoS, payload length; MQTT 5 topic aliases resolved per direction) and SUBSCRIBE
(topic filters). DJI Cloud API devices publish `thing/product/{sn}/osd` several times a second, so
publishes are summarised: one record per (direction, topic) with a count and the payload bytes,
written when the flow ends. The flow's meta gets `mqtt_client_id` and `mqtt_topics` for the rules.

Where the C extension is built, a followed flow keeps its publish counts in a C `MqttCounter`
(`dronewatch/fastpath/_mqtt.c`), and once the broker has answered, a segment that holds only
whole packets this analyzer would merely count (PUBLISHes of topics it knows, without an alias;
acknowledgements, pings) is counted there without reaching `packet`: by the stream layer, or by
the C walk itself (`dronewatch.core.stream`). The counter refuses anything else, which is read
here; the records are the same either way.

Layout facts: MQTT 3.1.1 (OASIS, 2014) sections 2 and 3; MQTT 5.0 (OASIS, 2019) sections 1.5,
2.2, 3.1, 3.3 and 3.8 (properties, variable byte integers, topic alias property 0x23).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from dronewatch.core.flow import IP_PROTO_TCP, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError
from dronewatch.fastpath import native

if TYPE_CHECKING:
    from dronewatch.fastpath._fastpath import MqttCounter

logger = logging.getLogger(__name__)

CONNECT, CONNACK, PUBLISH, SUBSCRIBE = 1, 2, 3, 8
PROTOCOLS = {b"MQTT": (4, 5), b"MQIsdp": (3,)}
"""Protocol name -> the protocol levels it goes with."""
VERSION_NAMES = {3: "3.1", 4: "3.1.1", 5: "5.0"}
PROP_TOPIC_ALIAS = 0x23

# MQTT 5 property id -> how its value is encoded (section 2.2.2.2).
_BYTE, _U16, _U32, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTIES = {
    0x01: _BYTE,
    0x02: _U32,
    0x03: _UTF8,
    0x08: _UTF8,
    0x09: _BINARY,
    0x0B: _VARINT,
    0x11: _U32,
    0x12: _UTF8,
    0x13: _U16,
    0x15: _UTF8,
    0x16: _BINARY,
    0x17: _BYTE,
    0x18: _U32,
    0x19: _BYTE,
    0x1A: _UTF8,
    0x1C: _UTF8,
    0x1F: _UTF8,
    0x21: _U16,
    0x22: _U16,
    0x23: _U16,
    0x24: _BYTE,
    0x25: _BYTE,
    0x26: _PAIR,
    0x27: _U32,
    0x28: _BYTE,
    0x29: _BYTE,
    0x2A: _BYTE,
}


@dataclass(frozen=True, slots=True)
class MqttOptions:
    """Tunables of the MQTT analyzer."""

    max_buffer_bytes: int = 256 * 1024
    """Most bytes buffered per direction while a packet is incomplete (larger: skipped)."""
    max_topics: int = 256
    """Distinct topics summarised per flow; further topics are counted in the last record."""
    follow_flow: bool = True
    """Keep reading a recognised flow to its end (it is usually long-lived)."""


@dataclass(frozen=True, slots=True)
class MqttRecord(ConnRecord):
    """An MQTT CONNECT, or one topic of a flow with its publish count (written at flow end)."""

    log: ClassVar[str] = "mqtt"
    msg_type: str
    """connect, publish or subscribe."""
    proto_version: str
    """3.1, 3.1.1 or 5.0."""
    client_id: str | None = None
    username_present: bool | None = None
    keep_alive_s: int | None = None
    topic: str | None = None
    """The topic (publish) or topic filter (subscribe)."""
    direction: str | None = None
    """orig (client to broker) or resp (broker to client)."""
    qos: int | None = None
    """Highest QoS seen for the topic."""
    publishes: int | None = None
    payload_bytes: int | None = None
    """Bytes of application payload published on the topic."""


@dataclass(slots=True)
class Connect:
    """What a CONNECT packet says."""

    level: int
    client_id: str
    username_present: bool
    keep_alive_s: int


@dataclass(slots=True)
class Publish:
    topic: str
    qos: int
    retain: bool
    payload_len: int
    topic_alias: int | None = None


def read_varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    """A variable byte integer at `pos`: (value, position after it)."""
    value = 0
    for shift in range(0, 28, 7):
        if pos >= len(data):
            raise DecodeError("truncated variable byte integer")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise DecodeError("variable byte integer longer than 4 bytes")


def _utf8(data: bytes, pos: int) -> tuple[str, int]:
    if pos + 2 > len(data):
        raise DecodeError("truncated string length")
    (n,) = struct.unpack_from("!H", data, pos)
    end = pos + 2 + n
    if end > len(data):
        raise DecodeError("truncated string")
    return data[pos + 2 : end].decode("utf-8", "backslashreplace"), end


def _binary(data: bytes, pos: int) -> int:
    if pos + 2 > len(data):
        raise DecodeError("truncated binary length")
    end = pos + 2 + struct.unpack_from("!H", data, pos)[0]
    if end > len(data):
        raise DecodeError("truncated binary data")
    return int(end)


_FIXED_SIZE = {_BYTE: 1, _U16: 2, _U32: 4}


def read_properties(data: bytes, pos: int) -> tuple[dict[int, object], int]:
    """MQTT 5 properties at `pos`: ({id: value}, position after them)."""
    length, pos = read_varint(data, pos)
    end = pos + length
    if end > len(data):
        raise DecodeError("properties longer than the packet")
    props: dict[int, object] = {}
    while pos < end:
        pid, pos = read_varint(data, pos)
        kind = _PROPERTIES.get(pid)
        if kind is None:
            raise DecodeError(f"unknown property 0x{pid:02x}")
        value: object
        size = _FIXED_SIZE.get(kind, 0)
        if pos + size > end:
            raise DecodeError("property runs past the properties")
        if kind == _BYTE:
            value, pos = data[pos], pos + 1
        elif kind == _U16:
            value, pos = struct.unpack_from("!H", data, pos)[0], pos + 2
        elif kind == _U32:
            value, pos = struct.unpack_from("!I", data, pos)[0], pos + 4
        elif kind == _VARINT:
            value, pos = read_varint(data, pos)
        elif kind == _UTF8:
            value, pos = _utf8(data, pos)
        elif kind == _BINARY:
            pos = _binary(data, pos)
            value = None
        else:
            key, pos = _utf8(data, pos)
            val, pos = _utf8(data, pos)
            value = (key, val)
        if pos > end:
            raise DecodeError("property runs past the properties")
        props[pid] = value
    return props, end


def split_packet(data: bytes) -> tuple[int, int, int] | None:
    """(first byte, start of the body, end of the packet) of the packet at the start of `data`;
    None when more bytes are needed."""
    if len(data) < 2:
        return None
    try:
        length, body = read_varint(data, 1)
    except DecodeError as exc:
        if "truncated" in str(exc):
            return None
        raise
    if body + length > len(data):
        return None
    return data[0], body, body + length


def parse_connect(body: bytes) -> Connect:
    """The variable header and client id of a CONNECT packet's body."""
    name, pos = _utf8(body, 0)
    levels = PROTOCOLS.get(name.encode())
    if levels is None or pos + 4 > len(body):
        raise DecodeError("not an MQTT CONNECT")
    level, flags = body[pos], body[pos + 1]
    keep_alive = struct.unpack_from("!H", body, pos + 2)[0]
    if level not in levels or flags & 0x01:
        raise DecodeError("bad MQTT protocol level or reserved flag")
    pos += 4
    if level == 5:
        _, pos = read_properties(body, pos)
    client_id, pos = _utf8(body, pos)
    return Connect(level, client_id, bool(flags & 0x80), keep_alive)


def parse_publish(first: int, body: bytes, level: int) -> Publish:
    """A PUBLISH packet (fixed-header flags in `first`)."""
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise DecodeError("PUBLISH with QoS 3")
    topic, pos = _utf8(body, 0)
    if qos:
        pos += 2
    alias = None
    if level == 5:
        props, pos = read_properties(body, pos)
        value = props.get(PROP_TOPIC_ALIAS)
        alias = value if isinstance(value, int) else None
    if pos > len(body):
        raise DecodeError("truncated PUBLISH")
    return Publish(topic, qos, bool(first & 0x01), len(body) - pos, alias)


def parse_subscribe(body: bytes, level: int) -> list[tuple[str, int]]:
    """The (topic filter, requested QoS) pairs of a SUBSCRIBE packet."""
    pos = 2
    if level == 5:
        _, pos = read_properties(body, pos)
    out = []
    while pos < len(body):
        topic, pos = _utf8(body, pos)
        if pos >= len(body):
            raise DecodeError("SUBSCRIBE filter without options")
        out.append((topic, body[pos] & 0x03))
        pos += 1
    if not out:
        raise DecodeError("SUBSCRIBE without a topic filter")
    return out


@dataclass(slots=True)
class _Topic:
    first_ts: float
    qos: int = 0
    publishes: int = 0
    payload_bytes: int = 0
    kind: str = "publish"
    index: int = -1
    """Its entry in the flow's `MqttCounter`, which then holds its publish counts (-1: none)."""


@dataclass(slots=True)
class _Direction:
    buf: bytearray = field(default_factory=bytearray)
    skip: int = 0
    """Bytes of an oversized packet still to pass over."""
    aliases: dict[int, str] = field(default_factory=dict)
    lost: int = 0
    """Times its framing was lost (bytes missing, or bytes that are no MQTT packet): a packet
    that loses it is not read in step (`MqttAnalyzer._wait_or_read`)."""


@dataclass(slots=True)
class _State:
    level: int
    dirs: tuple[_Direction, _Direction] = field(
        default_factory=lambda: (_Direction(), _Direction())
    )
    topics: dict[tuple[str, str, str], _Topic] = field(default_factory=dict)
    dropped_topics: int = 0
    answered: bool = False
    """The broker's side sent payload: from then on the analyzer never waits."""
    counter: MqttCounter | None = None
    """The C counter of the flow's publishes, where the extension is built."""


class MqttAnalyzer:
    """Decode MQTT connects, publishes and subscriptions into mqtt.jsonl records."""

    name = "mqtt"
    wants_ports: frozenset[int] = frozenset()
    """The ports `wants` reads (`WantsHook`)."""
    tcp_stream = True
    """Its packet hook reads each direction in order (`dronewatch.core.stream`)."""

    def __init__(self, ctx: Context, options: MqttOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or MqttOptions()
        self._state: dict[str, _State] = {}
        self._rejected: set[str] = set()

    def wants(self, flow: Flow) -> bool:
        """MQTT runs over TCP."""
        return flow.proto == IP_PROTO_TCP

    def packet(self, flow: Flow, pkt: Packet) -> None:
        if pkt.proto != IP_PROTO_TCP or flow.uid in self._rejected:
            return
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        state = self._state.get(flow.uid)
        if state is None:
            if flow.service and flow.service != "mqtt":
                flow.decline(self.name)  # another protocol was recognised on it
                return
            if not from_orig:
                return
            state = self._recognise(flow, pkt)
            if state is None:
                return
        lost = state.dirs[0].lost
        self._feed(flow, pkt, state, 0 if from_orig else 1)
        if flow.uid in self._state:  # not given up
            self._wait_or_read(flow, state, from_orig, state.dirs[0].lost != lost)
        if state.counter is not None:
            self._offer(state)

    @staticmethod
    def _offer(state: _State) -> None:
        """Let the counter take a direction's next segments while it is at a packet boundary with
        nothing buffered, the broker having answered (no wait to keep)."""
        counter = state.counter
        assert counter is not None
        settled = state.answered and bool(state.level)
        for side, d in enumerate(state.dirs):
            counter.ready(side, settled and not d.buf and not d.skip)

    def _wait_or_read(self, flow: Flow, state: _State, from_orig: bool, lost: bool) -> None:
        """Say whether the analyzer waits (`Flow.wait`): its CONNECT is read and the broker
        has sent nothing yet, so it waits for the CONNACK from "resp" and the engine stops a
        flow whose broker never comes into view after its bound (`EngineOptions.stall_packets`).
        A client may send packets before the CONNACK (MQTT 3.1.1 section 3.1.4): a client packet
        whose bytes the analyzer reads in step (a PUBLISH counted, part of one, a PINGREQ)
        starts the wait again, so a client publishing into a capture that never shows its broker
        is never stopped; only bytes it cannot read (framing lost over a gap, or bytes that are
        no MQTT packet) count. Once the broker's side sent anything it never waits again."""
        if not from_orig:
            state.answered = True
        if state.answered or not state.level:
            flow.stop_waiting(self.name)  # answered, or the CONNECT is not whole yet
            return
        if not lost:
            flow.stop_waiting(self.name)  # read in step: the count starts again
        flow.wait(self.name, "CONNACK", "resp")

    def _recognise(self, flow: Flow, pkt: Packet) -> _State | None:
        data = pkt.payload
        if not data or data[0] >> 4 != CONNECT:
            self._rejected.add(flow.uid)
            flow.decline(self.name)
            return None
        try:
            split = split_packet(data)
            level = parse_connect(data[split[1] : split[2]]).level if split else 0
        except DecodeError:
            self._rejected.add(flow.uid)
            flow.decline(self.name)
            return None
        # level 0: the CONNECT is cut over segments; it is confirmed once whole (_packet).
        state = _State(level)
        self._state[flow.uid] = state
        if level:
            self._confirm(flow, state)
        return state

    def _confirm(self, flow: Flow, state: _State) -> None:
        flow.service = "mqtt"
        if self.options.follow_flow:
            fastpath = native()
            if fastpath is not None:
                state.counter = fastpath.MqttCounter()
                state.counter.level = state.level
            flow.follow(self.name, state.counter)

    def _give_up(self, flow: Flow) -> None:
        state = self._state.pop(flow.uid, None)
        if state is not None and state.counter is not None:
            state.counter.ready(0, False)
            state.counter.ready(1, False)
        self._rejected.add(flow.uid)
        flow.decline(self.name)

    def _feed(self, flow: Flow, pkt: Packet, state: _State, side: int) -> None:
        d = state.dirs[side]
        data = pkt.payload
        if pkt.gap:  # bytes lost (the stream layer says how many)
            if d.skip >= pkt.gap and not d.buf:
                d.skip -= pkt.gap  # inside an oversized packet passed over: still in step
            else:
                d.buf.clear()  # resynchronise at the next packet start
                d.skip = 0
                d.lost += 1
        if d.skip:
            cut = min(d.skip, len(data))
            d.skip -= cut
            data = data[cut:]
        d.buf += data
        self._drain(flow, pkt.ts, state, side)

    def _drain(self, flow: Flow, ts: float, state: _State, side: int) -> None:
        d = state.dirs[side]
        while len(d.buf) >= 2:
            try:
                length, body_at = read_varint(d.buf, 1)
            except DecodeError as exc:
                if "truncated" not in str(exc):
                    d.buf.clear()  # not MQTT framing: wait for a packet start
                    d.lost += 1
                return
            end = body_at + length
            if end > len(d.buf):
                if not state.level and end > 64 * 1024:
                    self._give_up(flow)  # a CONNECT is never that large
                    return
                if end > self.options.max_buffer_bytes:
                    d.skip = end - len(d.buf)
                    d.buf.clear()
                return
            first = d.buf[0]
            body = bytes(d.buf[body_at:end])
            del d.buf[:end]
            try:
                self._packet(flow, ts, state, side, first, body)
            except DecodeError as exc:
                if not state.level:
                    self._give_up(flow)
                    return
                logger.debug("%s: MQTT packet skipped: %s", flow.uid, exc)
                d.lost += 1

    def _packet(
        self, flow: Flow, ts: float, state: _State, side: int, first: int, body: bytes
    ) -> None:
        kind = first >> 4
        if not state.level:
            if kind != CONNECT or side != 0:
                raise DecodeError("no CONNECT first")
            c = parse_connect(body)
            state.level = c.level
            self._confirm(flow, state)
        if kind == CONNECT and side == 0:
            c = parse_connect(body)
            state.level = c.level
            if state.counter is not None:
                state.counter.level = c.level
            flow.add_meta("mqtt_client_id", c.client_id)
            self.ctx.emit(
                MqttRecord(
                    ts=ts,
                    **conn(flow),
                    msg_type="connect",
                    proto_version=VERSION_NAMES[c.level],
                    client_id=c.client_id,
                    username_present=c.username_present,
                    keep_alive_s=c.keep_alive_s,
                )
            )
        elif kind == PUBLISH:
            p = parse_publish(first, body, state.level)
            aliases = state.dirs[side].aliases
            topic = p.topic
            if p.topic_alias is not None:
                if topic:
                    aliases[p.topic_alias] = topic
                else:
                    topic = aliases.get(p.topic_alias, f"<alias {p.topic_alias}>")
            self._count(flow, ts, state, side, "publish", topic, p.qos, p.payload_len)
        elif kind == SUBSCRIBE and side == 0:
            for topic, qos in parse_subscribe(body, state.level):
                self._count(flow, ts, state, side, "subscribe", topic, qos, 0)

    def _count(
        self,
        flow: Flow,
        ts: float,
        state: _State,
        side: int,
        kind: str,
        topic: str,
        qos: int,
        size: int,
    ) -> None:
        key = (kind, "orig" if side == 0 else "resp", topic)
        entry = state.topics.get(key)
        if entry is None:
            if len(state.topics) >= self.options.max_topics:
                state.dropped_topics += 1
                return
            entry = state.topics[key] = _Topic(ts, kind=kind)
            if kind == "publish" and state.counter is not None:
                entry.index = state.counter.topic(side, topic)
            flow.add_meta_item("mqtt_topics", topic)
        if entry.index >= 0:
            assert state.counter is not None
            state.counter.add(entry.index, qos, size)
            return
        entry.qos = max(entry.qos, qos)
        if kind == "publish":
            entry.publishes += 1
            entry.payload_bytes += size

    def flow_end(self, flow: Flow) -> None:
        self._rejected.discard(flow.uid)
        state = self._state.pop(flow.uid, None)
        if state is None:
            return
        version = VERSION_NAMES.get(state.level, str(state.level))
        for (kind, direction, topic), t in state.topics.items():
            if t.index >= 0:
                assert state.counter is not None
                t.publishes, t.payload_bytes, t.qos = state.counter.counts(t.index)
            self.ctx.emit(
                MqttRecord(
                    ts=t.first_ts,
                    **conn(flow),
                    msg_type=kind,
                    proto_version=version,
                    client_id=_meta(flow, "mqtt_client_id"),
                    topic=topic,
                    direction=direction,
                    qos=t.qos,
                    publishes=t.publishes if kind == "publish" else None,
                    payload_bytes=t.payload_bytes if kind == "publish" else None,
                )
            )
        if state.dropped_topics:
            logger.info("%s: %d more MQTT topics not listed", flow.uid, state.dropped_topics)


def _meta(flow: Flow, key: str) -> str | None:
    value = flow.meta.get(key)
    return value if isinstance(value, str) else None
