"""RTMP over TCP on any port: the livestream target (tcUrl, app) and the stream published or played.

A flow is RTMP when the client opens with C0 = 0x03 and a 1536-byte C1 (the handshake). After C0,
C1 and C2 (3073 bytes) the client's chunk stream is read: basic and message headers of the four
chunk formats, extended timestamps, Set Chunk Size, and the AMF0 command messages `connect`,
`publish` and `play`. Once those are seen (or a byte budget is spent) the flow is left alone.

Layout facts: Adobe RTMP specification 1.0 (2012) sections 5.2 (handshake), 5.3 (chunking) and
7.2.1 (commands); Adobe AMF0 specification (2007) for the value encoding.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dronewatch.core.flow import IP_PROTO_TCP, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

RTMP_VERSION = 3
HANDSHAKE_SIZE = 1536
CLIENT_HANDSHAKE = 1 + 2 * HANDSHAKE_SIZE
"""C0, C1 and C2: the client's bytes before its first chunk."""
DEFAULT_CHUNK_SIZE = 128
MSG_SET_CHUNK_SIZE = 1
MSG_AMF3_COMMAND = 17
MSG_AMF0_COMMAND = 20
_MSG_HEADER = {0: 11, 1: 7, 2: 3, 3: 0}


@dataclass(frozen=True, slots=True)
class RtmpOptions:
    """Tunables of the RTMP analyzer."""

    max_bytes: int = 256 * 1024
    """Client bytes read (after the handshake) before the flow is left alone."""


@dataclass(frozen=True, slots=True)
class RtmpRecord(ConnRecord):
    """One RTMP session: where the stream goes and what is done with it."""

    log: ClassVar[str] = "rtmp"
    app: str | None = None
    tc_url: str | None = None
    """The target URL the client connected to, e.g. rtmp://live.example.net/live."""
    flash_ver: str | None = None
    swf_url: str | None = None
    stream: str | None = None
    """The stream name published or played."""
    action: str | None = None
    """publish (a livestream leaving the device) or play."""
    commands: tuple[str, ...] = ()
    """AMF0 command names in the order sent (first 16)."""


# --- AMF0 --------------------------------------------------------------------------------------


class _Amf0:
    """Reads AMF0 values from a buffer."""

    def __init__(self, data: bytes, pos: int = 0, depth: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.depth = depth

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise DecodeError("truncated AMF0 value")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def _string(self, size_fmt: str = "!H") -> str:
        (n,) = struct.unpack(size_fmt, self._take(struct.calcsize(size_fmt)))
        return self._take(n).decode("utf-8", "backslashreplace")

    def _properties(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            key = self._string()
            if key == "":
                if self._take(1) != b"\x09":
                    raise DecodeError("AMF0 object without its end marker")
                return out
            if len(out) >= 256:
                raise DecodeError("AMF0 object with too many properties")
            out[key] = self.value()

    def value(self) -> Any:
        if self.depth > 16:
            raise DecodeError("AMF0 nesting too deep")
        marker = self._take(1)[0]
        if marker == 0:
            return struct.unpack("!d", self._take(8))[0]
        if marker == 1:
            return self._take(1) != b"\x00"
        if marker == 2:
            return self._string()
        if marker in (3, 8):
            if marker == 8:
                self._take(4)
            inner = _Amf0(self.data, self.pos, self.depth + 1)
            props = inner._properties()
            self.pos = inner.pos
            return props
        if marker in (5, 6):
            return None
        if marker == 10:
            (count,) = struct.unpack("!I", self._take(4))
            if count > 1024:
                raise DecodeError("AMF0 array too long")
            inner = _Amf0(self.data, self.pos, self.depth + 1)
            items = [inner.value() for _ in range(count)]
            self.pos = inner.pos
            return items
        if marker == 11:
            (millis,) = struct.unpack("!d", self._take(8))
            self._take(2)  # time zone, unused by the format's users
            return millis
        if marker == 12:
            return self._string("!I")
        raise DecodeError(f"unsupported AMF0 marker {marker}")


def decode_amf0(data: bytes) -> list[Any]:
    """Every AMF0 value in `data`, in order."""
    reader = _Amf0(data)
    values = []
    while reader.pos < len(data):
        values.append(reader.value())
        if len(values) > 64:
            raise DecodeError("too many AMF0 values")
    return values


# --- chunk stream ------------------------------------------------------------------------------


@dataclass(slots=True)
class _ChunkStream:
    length: int = 0
    type_id: int = 0
    extended: bool = False
    body: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class ChunkReader:
    """Reassembles messages from the client's chunk stream."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    streams: dict[int, _ChunkStream] = field(default_factory=dict)

    def read(self, buf: bytearray) -> list[tuple[int, bytes]]:
        """Consume whole chunks from `buf`; returns the (type id, body) of completed messages."""
        out: list[tuple[int, bytes]] = []
        while buf:
            taken = self._chunk(buf, out)
            if taken == 0:
                break
            del buf[:taken]
        return out

    def _chunk(self, buf: bytearray, out: list[tuple[int, bytes]]) -> int:
        b0 = buf[0]
        fmt, csid = b0 >> 6, b0 & 0x3F
        pos = 1
        if csid == 0:
            if len(buf) < 2:
                return 0
            csid, pos = 64 + buf[1], 2
        elif csid == 1:
            if len(buf) < 3:
                return 0
            csid, pos = 64 + buf[1] + (buf[2] << 8), 3
        hlen = _MSG_HEADER[fmt]
        if len(buf) < pos + hlen:
            return 0
        cs = self.streams.get(csid)
        if cs is None:
            if fmt != 0:
                raise DecodeError(f"chunk stream {csid} starts without a full header")
            cs = self.streams[csid] = _ChunkStream()
        ts = None
        if fmt <= 2:
            ts = int.from_bytes(buf[pos : pos + 3], "big")
        if fmt <= 1:
            length = int.from_bytes(buf[pos + 3 : pos + 6], "big")
            if cs.body and length != cs.length:
                raise DecodeError("new message header in the middle of a message")
            cs.length, cs.type_id = length, buf[pos + 6]
        pos += hlen
        if ts is not None:
            cs.extended = ts == 0xFFFFFF
        if cs.extended:
            if len(buf) < pos + 4:
                return 0
            pos += 4
        want = min(self.chunk_size, cs.length - len(cs.body))
        if len(buf) < pos + want:
            return 0
        cs.body += buf[pos : pos + want]
        pos += want
        if len(cs.body) >= cs.length:
            body = bytes(cs.body)
            cs.body.clear()
            if cs.type_id == MSG_SET_CHUNK_SIZE and len(body) >= 4:
                size = struct.unpack_from("!I", body)[0] & 0x7FFFFFFF
                if not 1 <= size <= 0xFFFFFF:
                    raise DecodeError(f"bad chunk size {size}")
                self.chunk_size = size
            out.append((cs.type_id, body))
        return pos


@dataclass(slots=True)
class _State:
    skip: int = CLIENT_HANDSHAKE
    buf: bytearray = field(default_factory=bytearray)
    reader: ChunkReader = field(default_factory=ChunkReader)
    read_bytes: int = 0
    done: bool = False
    first_ts: float = 0.0
    app: str | None = None
    tc_url: str | None = None
    flash_ver: str | None = None
    swf_url: str | None = None
    stream: str | None = None
    action: str | None = None
    commands: list[str] = field(default_factory=list)


class RtmpAnalyzer:
    """Find RTMP sessions and their targets, into rtmp.jsonl records."""

    name = "rtmp"
    wants_ports: frozenset[int] = frozenset()
    """The ports `wants` reads (`WantsHook`)."""
    tcp_stream = True
    """Its packet hook reads each direction in order (`dronewatch.core.stream`)."""

    def __init__(self, ctx: Context, options: RtmpOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or RtmpOptions()
        self._state: dict[str, _State] = {}
        self._rejected: set[str] = set()

    def wants(self, flow: Flow) -> bool:
        """RTMP runs over TCP."""
        return flow.proto == IP_PROTO_TCP

    def packet(self, flow: Flow, pkt: Packet) -> None:
        if pkt.proto != IP_PROTO_TCP or flow.uid in self._rejected:
            return
        if pkt.src != flow.orig_h or pkt.sport != flow.orig_p:
            return
        state = self._state.get(flow.uid)
        if state is None:
            if flow.service or not pkt.payload or pkt.payload[0] != RTMP_VERSION:
                self._rejected.add(flow.uid)
                flow.decline(self.name)
                return
            # Not followed: connect and publish come within the first packets the engine shows.
            state = self._state[flow.uid] = _State(first_ts=pkt.ts)
        if state.done:
            return
        data = pkt.payload
        if pkt.gap:  # the stream layer lost bytes: the chunk stream cannot be followed
            self._finish_reading(flow, state, "bytes lost")
            return
        if state.skip:
            cut = min(state.skip, len(data))
            state.skip -= cut
            data = data[cut:]
        state.buf += data
        state.read_bytes += len(data)
        try:
            messages = state.reader.read(state.buf)
        except DecodeError as exc:
            self._finish_reading(flow, state, str(exc))
            return
        for type_id, body in messages:
            self._message(flow, state, type_id, body)
        if state.action is not None or state.read_bytes > self.options.max_bytes:
            self._finish_reading(flow, state, "")

    def _message(self, flow: Flow, state: _State, type_id: int, body: bytes) -> None:
        if type_id == MSG_AMF3_COMMAND and body[:1] == b"\x00":
            body = body[1:]
        elif type_id != MSG_AMF0_COMMAND:
            return
        try:
            values = decode_amf0(body)
        except DecodeError as exc:
            logger.debug("%s: RTMP command not decoded: %s", flow.uid, exc)
            return
        if not values or not isinstance(values[0], str):
            return
        name = values[0]
        if len(state.commands) < 16:
            state.commands.append(name)
        if name == "connect" and len(values) > 2 and isinstance(values[2], dict):
            obj = values[2]
            state.app = _text(obj.get("app"))
            state.tc_url = _text(obj.get("tcUrl"))
            state.flash_ver = _text(obj.get("flashVer"))
            state.swf_url = _text(obj.get("swfUrl"))
            flow.service = "rtmp"
            if state.tc_url:
                flow.add_meta("rtmp_url", state.tc_url)
        elif name in ("publish", "play") and len(values) > 3:
            state.action = name
            state.stream = _text(values[3])
            if state.tc_url and state.stream:
                # The full target replaces the connect URL: it names the stream too.
                flow.set_meta("rtmp_url", f"{state.tc_url.rstrip('/')}/{state.stream}")

    def _finish_reading(self, flow: Flow, state: _State, why: str) -> None:
        if why:
            logger.debug("%s: RTMP reading stopped: %s", flow.uid, why)
        state.done = True
        flow.decline(self.name)
        state.buf.clear()
        if state.app is None and state.tc_url is None:
            self._state.pop(flow.uid, None)
            self._rejected.add(flow.uid)
            flow.decline(self.name)

    def flow_end(self, flow: Flow) -> None:
        self._rejected.discard(flow.uid)
        state = self._state.pop(flow.uid, None)
        if state is None or (state.tc_url is None and state.app is None):
            return
        self.ctx.emit(
            RtmpRecord(
                ts=state.first_ts,
                **conn(flow),
                app=state.app,
                tc_url=state.tc_url,
                flash_ver=state.flash_ver,
                swf_url=state.swf_url,
                stream=state.stream,
                action=state.action,
                commands=tuple(state.commands),
            )
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
