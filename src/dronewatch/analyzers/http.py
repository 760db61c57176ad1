"""HTTP/1.x over TCP on any port: each request, with its response status, into http.jsonl records.

A request is recognised by a method token at the start of the originator's bytes and a version
of `HTTP/1.x` (so RTSP, which shares methods like OPTIONS, is left alone). Heads may be cut over
several segments and are buffered up to a fixed size per direction; on a keep-alive connection
the body of each message is passed over by its Content-Length, and a message whose body length
is not known up front (chunked, or until close) makes the direction wait for a segment that
starts a new message. Header lines are read with `dpkt.http.parse_headers`.
"""

from __future__ import annotations

import io
import logging
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from dronewatch.core.flow import IP_PROTO_TCP, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

HTTP_METHODS = ("GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT")
"""Request methods that mark the start of an HTTP request."""
_REQUEST_STARTS = tuple(m.encode() + b" " for m in HTTP_METHODS)
_RESPONSE_STARTS = (b"HTTP/1.",)
_TOKEN_MAX = max(len(t) for t in _REQUEST_STARTS)
_HEAD_END = b"\r\n\r\n"
_VERSION = re.compile(rb"HTTP/1\.[0-9]")
_STATUS = re.compile(rb"[1-5][0-9][0-9]")
_SEQ_MOD = 1 << 32


@dataclass(frozen=True, slots=True)
class HttpRequestHead:
    """The request line and headers of a request."""

    method: str
    uri: str
    """Request target as sent (origin form `/path?q`, absolute form, or authority for CONNECT)."""
    version: str
    """`HTTP/1.0` or `HTTP/1.1`."""
    headers: Mapping[str, str]
    """Header fields by lower-case name; the first value of a repeated field."""


@dataclass(frozen=True, slots=True)
class HttpResponseHead:
    """The status line and headers of a response."""

    version: str
    status_code: int
    status_msg: str
    headers: Mapping[str, str]
    """Header fields by lower-case name; the first value of a repeated field."""


def _parse_headers(block: bytes) -> dict[str, str]:
    """Header lines (CRLF-separated, no blank line) by lower-case name."""
    import dpkt  # on the first HTTP message: a capture without one starts without dpkt

    try:
        parsed = dpkt.http.parse_headers(io.BytesIO(block))
    except (dpkt.Error, ValueError, UnicodeError) as exc:
        raise DecodeError(f"bad HTTP header: {exc}") from exc
    out: dict[str, str] = {}
    for key, value in parsed.items():
        out[str(key)] = str(value[0] if isinstance(value, list) else value)
    return out


def _text(raw: bytes) -> str:
    # Request targets should be ASCII; a client's stray non-ASCII bytes are kept escaped.
    return raw.decode("utf-8", "backslashreplace")


def parse_request_head(head: bytes) -> HttpRequestHead:
    """Decode a request head: the bytes before the blank line that ends it.

    Raises:
        DecodeError: not `METHOD target HTTP/1.x` with a known method, or a bad header line.
    """
    line, _, block = head.partition(b"\r\n")
    method, _, rest = line.partition(b" ")
    uri, _, version = rest.rpartition(b" ")
    if method + b" " not in _REQUEST_STARTS:
        raise DecodeError("not an HTTP request method")
    if not _VERSION.fullmatch(version):
        raise DecodeError("not an HTTP/1.x request")
    uri = uri.strip(b" ")
    if not uri:
        raise DecodeError("empty request target")
    return HttpRequestHead(method.decode(), _text(uri), version.decode(), _parse_headers(block))


def parse_response_head(head: bytes) -> HttpResponseHead:
    """Decode a response head: the bytes before the blank line that ends it.

    Raises:
        DecodeError: not `HTTP/1.x NNN reason`, or a bad header line.
    """
    line, _, block = head.partition(b"\r\n")
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not _VERSION.fullmatch(version) or not _STATUS.fullmatch(code):
        raise DecodeError("not an HTTP/1.x status line")
    return HttpResponseHead(version.decode(), int(code), _text(reason), _parse_headers(block))


def _may_start(data: bytes, starts: tuple[bytes, ...]) -> bool:
    """`data` starts a message, or is a piece of its first token cut short by the segment."""
    if data.startswith(starts):
        return True
    return len(data) < _TOKEN_MAX and any(t.startswith(data) for t in starts)


def _content_length(headers: Mapping[str, str]) -> int | None:
    """The Content-Length, or None when absent or unusable."""
    value = headers.get("content-length")
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) < 16 else None


def _chunked(headers: Mapping[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


def host_without_port(host: str) -> str:
    """A Host value (`example.com:8080`, `[2001:db8::1]:80`) as a bare, lower-case name."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        host = host[1:end] if end > 0 else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.lower().rstrip(".")


def _split_target(method: str, uri: str) -> tuple[str | None, str | None]:
    """The authority and the path (with query) of a request target (RFC 9112 3.2)."""
    if uri.startswith("/"):
        return None, uri
    if method == "CONNECT":
        return uri, None
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.isalpha():
        authority, slash, path = rest.partition("/")
        return authority.rpartition("@")[2] or None, "/" + path
    return None, None


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Tunables of the HTTP analyzer."""

    max_head_bytes: int = 16 * 1024
    """Most bytes buffered per direction while waiting for the blank line that ends a head."""
    max_pending: int = 32
    """Requests kept per flow while waiting for their responses; past that the oldest is
    written out without a status."""

    def __post_init__(self) -> None:
        if self.max_pending < 1:
            raise ValueError("max_pending must be at least 1 (the request being added is kept)")


@dataclass(frozen=True, slots=True)
class HttpRecord(ConnRecord):
    """One HTTP request and, when seen, the status of its response. `ts` is the request's time."""

    log: ClassVar[str] = "http"
    method: str
    uri: str
    """Request target as sent."""
    version: str
    """Request version: HTTP/1.0 or HTTP/1.1."""
    host: str | None = None
    """Host header as sent (port included), or the authority of an absolute target."""
    user_agent: str | None = None
    content_type: str | None = None
    """Content-Type of the request."""
    request_body_len: int | None = None
    """Content-Length of the request, bytes."""
    status_code: int | None = None
    """Status of the response; None when no response was seen."""
    status_msg: str | None = None
    """Reason phrase of the response."""
    response_body_len: int | None = None
    """Content-Length of the response, bytes."""


class _Request:
    """A request waiting for its response."""

    __slots__ = ("ts", "head", "host")

    def __init__(self, ts: float, head: HttpRequestHead, host: str | None) -> None:
        self.ts = ts
        self.head = head
        self.host = host


class _Side:
    """One direction of the connection: the head being buffered and the body being passed over."""

    __slots__ = ("buf", "skip", "next_seq")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.skip = 0
        """Body bytes still to pass over before the next message starts."""
        self.next_seq: int | None = None

    def place(self, seq: int, data: bytes) -> bytes:
        """The part of a segment not seen before; a hole before it drops what it interrupts."""
        end = (seq + len(data)) % _SEQ_MOD
        if self.next_seq is not None:
            diff = (seq - self.next_seq) % _SEQ_MOD
            if diff >= _SEQ_MOD // 2:  # starts before what we have: a retransmission
                overlap = _SEQ_MOD - diff
                if overlap >= len(data):
                    return b""
                data = data[overlap:]
            elif diff:  # bytes were lost
                if self.skip >= diff and not self.buf:
                    self.skip -= diff  # they were body bytes: still in step
                else:
                    self.buf.clear()
                    self.skip = 0
        self.next_seq = end
        return data


class _HttpState:
    """What the analyzer keeps about one connection that has started an HTTP request."""

    __slots__ = ("orig", "resp", "pending", "requests", "dead")

    def __init__(self) -> None:
        self.orig = _Side()
        self.resp = _Side()
        self.pending: deque[_Request] = deque()
        self.requests = 0
        """Valid requests seen."""
        self.dead = False
        """The connection turned out not to speak HTTP/1.x (RTSP, say)."""


class HttpAnalyzer:
    """Decode HTTP/1.x requests and response statuses on any TCP port into http.jsonl records."""

    name = "http"

    def __init__(self, ctx: Context, options: HttpOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or HttpOptions()
        self._state: dict[str, _HttpState] = {}  # keyed by flow.uid, dropped in flow_end

    def wants(self, flow: Flow) -> bool:
        """HTTP/1.x runs over TCP."""
        return flow.proto == IP_PROTO_TCP

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Buffer heads by direction, read each complete one, and pass over bodies."""
        if flow.proto != IP_PROTO_TCP or not pkt.payload:
            return
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        state = self._state.get(flow.uid)
        if state is None:
            if flow.service and flow.service != "http":
                flow.decline(self.name)  # another protocol (TLS, MQTT, RTSP...) was recognised
                return
            if not from_orig or not _may_start(pkt.payload, _REQUEST_STARTS):
                return
            state = self._state[flow.uid] = _HttpState()
        if state.dead:
            return
        if from_orig:
            data = state.orig.place(pkt.tcp_seq, pkt.payload)
            self._consume(
                state.orig,
                data,
                _REQUEST_STARTS,
                lambda head: self._request(flow, state, head, pkt.ts),
            )
        elif state.requests:
            data = state.resp.place(pkt.tcp_seq, pkt.payload)
            self._consume(
                state.resp, data, _RESPONSE_STARTS, lambda head: self._response(flow, state, head)
            )

    def flow_end(self, flow: Flow) -> None:
        """Write the requests still waiting for a response, and drop the flow's state."""
        state = self._state.pop(flow.uid, None)
        if state is None:
            return
        for request in state.pending:
            self._emit(flow, request, None)

    def _consume(
        self,
        side: _Side,
        data: bytes,
        starts: tuple[bytes, ...],
        on_head: Callable[[bytes], int | None],
    ) -> None:
        """Feed bytes to one direction; `on_head` reads a head and says how long its body is."""
        limit = self.options.max_head_bytes
        while data:
            if side.skip:
                step = min(side.skip, len(data))
                side.skip -= step
                data = data[step:]
                continue
            if not side.buf and not _may_start(data, starts):
                return  # inside a body of unknown length, or not a message: wait for one
            side.buf += data
            end = side.buf.find(_HEAD_END)
            if end < 0:
                if len(side.buf) > limit:
                    side.buf.clear()  # too long for a head: wait for the next message
                return
            head = bytes(side.buf[:end])
            data = bytes(side.buf[end + len(_HEAD_END) :])
            side.buf.clear()
            body = on_head(head)
            if body is None:
                return  # body length unknown: the rest is not a message start
            side.skip = body

    def _request(self, flow: Flow, state: _HttpState, raw: bytes, ts: float) -> int | None:
        try:
            head = parse_request_head(raw)
        except DecodeError as exc:
            logger.debug("%s: not an HTTP request: %s", flow.uid, exc)
            if not state.requests:
                state.dead = True  # e.g. `OPTIONS rtsp://... RTSP/1.0`
                flow.decline(self.name)
                state.orig.buf.clear()
            return None
        state.requests += 1
        headers = head.headers
        authority, path = _split_target(head.method, head.uri)
        host = headers.get("host") or authority
        flow.service = "http"
        if host and (name := host_without_port(host)):
            flow.add_meta("http_host", name)
        if path:
            flow.add_meta("http_path", path)
        flow.add_meta("http_method", head.method)
        if agent := headers.get("user-agent"):
            flow.add_meta("user_agent", agent)
        if content_type := headers.get("content-type"):
            flow.add_meta("http_content_type", content_type)
        if len(state.pending) >= self.options.max_pending:
            self._emit(flow, state.pending.popleft(), None)
        state.pending.append(_Request(ts, head, host))
        if head.method == "CONNECT" or _chunked(headers):
            return None  # a tunnel follows, or a body without an up-front length
        return _content_length(headers) or 0

    def _response(self, flow: Flow, state: _HttpState, raw: bytes) -> int | None:
        try:
            head = parse_response_head(raw)
        except DecodeError as exc:
            logger.debug("%s: not an HTTP response: %s", flow.uid, exc)
            return None
        code = head.status_code
        if 100 <= code < 200 and code != 101:
            return 0  # interim (100 Continue): the final response follows
        request = state.pending.popleft() if state.pending else None
        if request is not None:
            self._emit(flow, request, head)
        method = request.head.method if request is not None else ""
        if code == 101 or (method == "CONNECT" and code < 300):
            return None  # another protocol (or a tunnel) follows
        if method == "HEAD" or code in (204, 304):
            return 0  # no body whatever the headers say (RFC 9112 6.3)
        if _chunked(head.headers):
            return None
        return _content_length(head.headers)

    def _emit(self, flow: Flow, request: _Request, response: HttpResponseHead | None) -> None:
        headers = request.head.headers
        self.ctx.emit(
            HttpRecord(
                ts=request.ts,
                **conn(flow),
                method=request.head.method,
                uri=request.head.uri,
                version=request.head.version,
                host=request.host,
                user_agent=headers.get("user-agent"),
                content_type=headers.get("content-type"),
                request_body_len=_content_length(headers),
                status_code=response.status_code if response else None,
                status_msg=response.status_msg if response else None,
                response_body_len=_content_length(response.headers) if response else None,
            )
        )


__all__ = [
    "HTTP_METHODS",
    "HttpAnalyzer",
    "HttpOptions",
    "HttpRecord",
    "HttpRequestHead",
    "HttpResponseHead",
    "host_without_port",
    "parse_request_head",
    "parse_response_head",
]
