"""RTSP 1.0/2.0 over TCP on any port: each request with its response status, into rtsp.jsonl.

A flow is RTSP when the client's first bytes are a request line `METHOD URL RTSP/1.0` (or 2.0).
Both directions are then read as a stream: request and response heads (bounded), message bodies
passed over by Content-Length (an ANNOUNCE carries its SDP), and RTP/RTCP interleaved in the
connection (`$`, channel, 16-bit length) skipped. Responses are matched to requests by CSeq.
ANNOUNCE/RECORD push a stream off the device (a livestream); DESCRIBE/PLAY pull one.

Layout facts: RFC 2326 sections 6, 7, 10 and 10.12 (interleaved binary data); RFC 7826 for 2.0.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import ClassVar

from dronewatch.core.flow import IP_PROTO_TCP, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

RTSP_METHODS = (
    "OPTIONS",
    "DESCRIBE",
    "ANNOUNCE",
    "SETUP",
    "PLAY",
    "PAUSE",
    "RECORD",
    "TEARDOWN",
    "GET_PARAMETER",
    "SET_PARAMETER",
    "REDIRECT",
    "PLAY_NOTIFY",
)
PUSH_METHODS = frozenset({"ANNOUNCE", "RECORD"})
_REQUEST = re.compile(rb"^([A-Z_]+) (\S+) RTSP/([12]\.0)$")
_STATUS = re.compile(rb"^RTSP/([12]\.0) ([1-5][0-9][0-9]) ?(.*)$")
_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class RtspOptions:
    """Tunables of the RTSP analyzer."""

    max_head_bytes: int = 16 * 1024
    """Most bytes of a head buffered while waiting for its blank line."""
    max_requests: int = 256
    """Requests written per flow; further ones are counted only."""


@dataclass(frozen=True, slots=True)
class RtspRecord(ConnRecord):
    """One RTSP request and, when seen, the status of its response."""

    log: ClassVar[str] = "rtsp"
    method: str
    uri: str
    version: str
    cseq: int | None = None
    user_agent: str | None = None
    transport: str | None = None
    session: str | None = None
    content_type: str | None = None
    request_body_len: int | None = None
    """Content-Length of the request, bytes (an ANNOUNCE's SDP)."""
    status_code: int | None = None
    status_msg: str | None = None
    push: bool = False
    """ANNOUNCE or RECORD: the client sends a stream out."""


@dataclass(slots=True)
class Head:
    """A request or status line with its headers."""

    first: tuple[str, str, str]
    """(method, uri, version) of a request or (version, code, reason) of a response."""
    headers: dict[str, str]
    is_request: bool


def parse_head(head: bytes) -> Head:
    """A request or response head (the bytes before the blank line)."""
    line, _, block = head.partition(b"\r\n")
    headers: dict[str, str] = {}
    for raw in block.split(b"\r\n"):
        if not raw:
            continue
        name, sep, value = raw.partition(b":")
        if not sep or not name.strip():
            raise DecodeError("bad RTSP header line")
        headers.setdefault(
            name.strip().lower().decode("latin-1"),
            value.strip().decode("utf-8", "backslashreplace"),
        )
    m = _REQUEST.match(line)
    if m and m.group(1).decode() in RTSP_METHODS:
        return Head(
            (
                m.group(1).decode(),
                m.group(2).decode("utf-8", "backslashreplace"),
                "RTSP/" + m.group(3).decode(),
            ),
            headers,
            True,
        )
    m = _STATUS.match(line)
    if m:
        return Head(
            (
                "RTSP/" + m.group(1).decode(),
                m.group(2).decode(),
                m.group(3).decode("utf-8", "backslashreplace"),
            ),
            headers,
            False,
        )
    raise DecodeError("not an RTSP request or status line")


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() and len(text) < 12 else None


@dataclass(slots=True)
class _Direction:
    buf: bytearray = field(default_factory=bytearray)
    skip: int = 0
    lost: bool = False


@dataclass(slots=True)
class _Request:
    ts: float
    head: Head
    status: tuple[int, str] | None = None


@dataclass(slots=True)
class _State:
    dirs: tuple[_Direction, _Direction] = field(
        default_factory=lambda: (_Direction(), _Direction())
    )
    requests: list[_Request] = field(default_factory=list)
    by_cseq: dict[int, _Request] = field(default_factory=dict)
    extra: int = 0


class RtspAnalyzer:
    """Decode RTSP requests and responses into rtsp.jsonl records."""

    name = "rtsp"
    wants_ports: frozenset[int] = frozenset()
    """The ports `wants` reads (`WantsHook`)."""
    tcp_stream = True
    """Its packet hook reads each direction in order (`dronewatch.core.stream`)."""

    def __init__(self, ctx: Context, options: RtspOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or RtspOptions()
        self._state: dict[str, _State] = {}
        self._rejected: set[str] = set()

    def wants(self, flow: Flow) -> bool:
        """RTSP requests run over TCP."""
        return flow.proto == IP_PROTO_TCP

    def packet(self, flow: Flow, pkt: Packet) -> None:
        if pkt.proto != IP_PROTO_TCP or flow.uid in self._rejected:
            return
        side = 0 if pkt.src == flow.orig_h and pkt.sport == flow.orig_p else 1
        state = self._state.get(flow.uid)
        if state is None:
            if side or flow.service or not _looks_like_request(pkt.payload):
                self._rejected.add(flow.uid)
                flow.decline(self.name)
                return
            state = self._state[flow.uid] = _State()
            flow.service = "rtsp"
            flow.follow(self.name)  # TEARDOWN comes after the whole stream
        d = state.dirs[side]
        if pkt.gap:  # bytes lost: within interleaved data still in step, else resynchronise
            if d.skip >= pkt.gap and not d.buf:
                d.skip -= pkt.gap
            else:
                d.buf.clear()
                d.skip = 0
                d.lost = True
        self._read(flow, pkt.ts, state, d, pkt.payload)

    def _read(self, flow: Flow, ts: float, state: _State, d: _Direction, data: bytes) -> None:
        if d.skip:
            cut = min(d.skip, len(data))
            d.skip -= cut
            data = data[cut:]
        if d.lost:
            # After lost bytes, wait for something that starts a message.
            start = _resync(data)
            if start < 0:
                return
            data, d.lost = data[start:], False
        d.buf += data
        buf = d.buf
        while buf:
            if buf[0] == 0x24:  # '$': interleaved RTP/RTCP
                if len(buf) < 4:
                    return
                size = 4 + int.from_bytes(buf[2:4], "big")
                if size > len(buf):
                    d.skip = size - len(buf)
                    buf.clear()
                    return
                del buf[:size]
                continue
            end = buf.find(_HEAD_END)
            if end < 0:
                if len(buf) > self.options.max_head_bytes:
                    buf.clear()
                    d.lost = True
                return
            raw = bytes(buf[:end])
            del buf[: end + len(_HEAD_END)]
            try:
                head = parse_head(raw)
            except DecodeError as exc:
                logger.debug("%s: RTSP head skipped: %s", flow.uid, exc)
                d.lost = True
                buf.clear()
                return
            body = _int(head.headers.get("content-length")) or 0
            skip = min(body, len(buf))
            del buf[:skip]
            d.skip = body - skip
            self._message(flow, ts, state, head)

    def _message(self, flow: Flow, ts: float, state: _State, head: Head) -> None:
        cseq = _int(head.headers.get("cseq"))
        if head.is_request:
            if len(state.requests) >= self.options.max_requests:
                state.extra += 1
                return
            req = _Request(ts, head)
            state.requests.append(req)
            if cseq is not None:
                state.by_cseq[cseq] = req
            if len(state.requests) == 1:
                flow.add_meta("rtsp_url", head.first[1])
            return
        answered = state.by_cseq.get(cseq) if cseq is not None else None
        if answered is None:
            answered = next((r for r in state.requests if r.status is None), None)
        if answered is not None and answered.status is None:
            answered.status = (int(head.first[1]), head.first[2])

    def flow_end(self, flow: Flow) -> None:
        self._rejected.discard(flow.uid)
        state = self._state.pop(flow.uid, None)
        if state is None:
            return
        for req in state.requests:
            method, uri, version = req.head.first
            h = req.head.headers
            self.ctx.emit(
                RtspRecord(
                    ts=req.ts,
                    **conn(flow),
                    method=method,
                    uri=uri,
                    version=version,
                    cseq=_int(h.get("cseq")),
                    user_agent=h.get("user-agent"),
                    transport=h.get("transport"),
                    session=h.get("session"),
                    content_type=h.get("content-type"),
                    request_body_len=_int(h.get("content-length")),
                    status_code=req.status[0] if req.status else None,
                    status_msg=req.status[1] if req.status else None,
                    push=method in PUSH_METHODS,
                )
            )
        if state.extra:
            logger.info("%s: %d more RTSP requests not written", flow.uid, state.extra)


def _looks_like_request(data: bytes) -> bool:
    method, sep, _ = data.partition(b" ")
    if not sep:
        return False
    line = data.split(b"\r\n", 1)[0]
    return method.decode("latin-1") in RTSP_METHODS and (
        b" RTSP/" in line or (len(data) < 64 and b"\r\n" not in data)
    )


def _resync(data: bytes) -> int:
    """Where in `data` a message (head or interleaved frame) may start, or -1."""
    candidates = [data.find(m.encode() + b" ") for m in RTSP_METHODS]
    candidates += [data.find(b"RTSP/"), data.find(b"$")]
    found = [c for c in candidates if c >= 0]
    return min(found) if found else -1
