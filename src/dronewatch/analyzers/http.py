"""HTTP/1.x over TCP on any port: each request, with its response, into http.jsonl records.

Each direction is read in order from the stream layer (`dronewatch.core.stream`), line by line
as Zeek reads it: a request line is any RFC 9110 method token, a target and `HTTP/x.y` (or no
version: an HTTP/0.9 simple request, whose response is the bare body; header lines sent after it,
as by a client whose request line lost its version, are read with it); lines end with CRLF or a
bare LF, and a head ends at the first empty line. A body is read by its framing (RFC 9112 6):
chunked whenever Transfer-Encoding names it, whatever Content-Length says, else Content-Length
(leading zeros allowed; a negative or too large value is no length), else none for a request and
until the close for a response; HEAD, 1xx, 204 and 304 responses have none, and 101 or a CONNECT
answered 2xx turn the connection into a tunnel. Bytes where a request or status line should be
and is not are passed over a line at a time, so a client that sends more than its body says (or
a request smuggled behind a bad length) does not hide the requests after it. The body lengths
logged are the bytes seen (de-chunked), not what the headers promise.

A flow becomes HTTP when the originator's first line is a request line, or, on one of the ports
Zeek gives HTTP, when the responder's first bytes are a status line (a response then logged
without its unreadable request). Once HTTP, the flow is followed to its end (`follow_flow`), so
a keep-alive connection's later requests are read too.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from dronewatch.analyzers._envelope import WebSocketFrames, names_websocket
from dronewatch.core.flow import IP_PROTO_TCP, TCP_SYN, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

HTTP_PORTS = frozenset((80, 81, 631, 1080, 3128, 8000, 8080, 8888))
"""Ports Zeek gives its HTTP analyzer: a flow to one of them is HTTP when its responder answers
with a status line, even if the request could not be read."""
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An RFC 9110 token (5.6.2): what a method is."""
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_STATUS = re.compile(rb"[0-9][0-9][0-9]")
_BLANK = re.compile(rb"\r?\n\r?\n")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,32}")
"""The empty line that ends a head (bare LF line endings accepted)."""
_MAX_LENGTH = (1 << 63) - 1
"""Content-Length values beyond a signed 64-bit integer are no length (Zeek's limit)."""

# How a direction reads its next bytes.
_HEAD = 0
"""Waiting for a start line, then the rest of the head."""
_BODY = 1
"""A body of known length (`remaining` bytes to go)."""
_CHUNK_SIZE = 2
"""The line giving the next chunk's size."""
_CHUNK_DATA = 3
"""A chunk's data (`remaining` bytes to go, then its CRLF)."""
_CHUNK_END = 4
"""The line ending a chunk's data."""
_TRAILER = 5
"""Trailer lines after the last chunk, up to an empty line."""
_TO_CLOSE = 6
"""A response body that lasts until the connection closes."""
_TUNNEL = 7
"""Another protocol follows (101 Switching Protocols, CONNECT): nothing more is read."""


@dataclass(frozen=True, slots=True)
class HttpRequestHead:
    """The request line and headers of a request."""

    method: str
    uri: str
    """Request target as sent (origin form `/path?q`, absolute form, or authority for CONNECT)."""
    version: str
    """`HTTP/1.0`, `HTTP/1.1`... or `HTTP/0.9` for a simple request (no version sent)."""
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


def _lines(head: bytes) -> list[bytes]:
    """A head's lines, without their CRLF or LF."""
    return [line.removesuffix(b"\r") for line in head.split(b"\n")]


def _parse_headers(lines: list[bytes]) -> dict[str, str]:
    """Header lines by lower-case name (the first of a repeated field); a line starting with
    white space continues the one before (obsolete line folding, RFC 9112 5.2); a line without
    a colon is passed over."""
    out: dict[str, str] = {}
    last: str | None = None
    for raw in lines:
        if raw[:1] in (b" ", b"\t"):
            if last is not None and last in out:
                out[last] = (out[last] + " " + _text(raw.strip())).strip()
            continue
        name, sep, value = raw.partition(b":")
        if not sep or not name.strip():
            last = None
            continue
        key = name.strip().decode("latin-1").lower()
        last = key if key not in out else None
        out.setdefault(key, _text(value.strip()))
    return out


def _text(raw: bytes) -> str:
    # Request targets should be ASCII; a client's stray non-ASCII bytes are kept escaped.
    return raw.decode("utf-8", "backslashreplace")


def request_line(line: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(method, target, version) of a request line; version b"" for HTTP/0.9; None if not one.

    A target with whitespace inside (`CONNECT mail.example:25 / HTTP/1.0`, which RFC 9112 3
    forbids but proxies and servers accept) is everything between the method and the version,
    as Zeek reads it (`HTTP_Analyzer::ParseRequest`): a request a server answered is logged,
    not missed for a space a client put in it."""
    parts = line.split()
    if len(parts) >= 3 and parts[-1].startswith(b"HTTP/"):  # `HTTP/1.` too, as Zeek takes it
        method, version = parts[0], parts[-1]
        rest = line.strip()[len(method) :]
        target = rest[: len(rest) - len(version)].strip()
    elif len(parts) == 2 and _VERSION.fullmatch(parts[1]):
        method, target, version = parts[0], b"", parts[1]  # no target (Zeek logs it empty)
    elif len(parts) == 2 and not parts[1].startswith(b"HTTP/"):
        method, target, version = parts[0], parts[1], b""
    else:
        return None
    if not _TOKEN.fullmatch(method):
        return None
    return method, target, version


def parse_request_head(head: bytes) -> HttpRequestHead:
    """Decode a request head: the bytes before the empty line that ends it.

    Raises:
        DecodeError: the first line is not `METHOD target HTTP/x.y` (or `METHOD target`, an
            HTTP/0.9 request) with a token for a method.
    """
    lines = _lines(head)
    parsed = request_line(lines[0])
    if parsed is None:
        raise DecodeError("not an HTTP request line")
    method, target, version = parsed
    return HttpRequestHead(
        method.decode("ascii"),
        _text(target),
        version.decode("ascii") if version else "HTTP/0.9",
        _parse_headers(lines[1:]),
    )


def parse_response_head(head: bytes) -> HttpResponseHead:
    """Decode a response head: the bytes before the empty line that ends it.

    Raises:
        DecodeError: not `HTTP/x.y NNN reason`.
    """
    lines = _lines(head)
    version, _, rest = lines[0].strip().partition(b" ")
    code, _, reason = rest.strip().partition(b" ")
    if not _VERSION.fullmatch(version) or not _STATUS.fullmatch(code):
        raise DecodeError("not an HTTP/1.x status line")
    return HttpResponseHead(
        version.decode("ascii"), int(code), _text(reason.strip()), _parse_headers(lines[1:])
    )


def content_length(headers: Mapping[str, str]) -> int | None:
    """The Content-Length, or None when absent or unusable (negative, not a number, or beyond a
    signed 64-bit integer); leading zeros are allowed (`0050` is 50)."""
    value = headers.get("content-length")
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        return None
    length = int(value)
    return length if length <= _MAX_LENGTH else None


def chunked(headers: Mapping[str, str]) -> bool:
    """Transfer-Encoding names chunked (RFC 9112 6.3: it then frames the body, whatever
    Content-Length says)."""
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
    if method == "CONNECT":  # the authority (what follows a space in a lax target is not)
        words = uri.split(maxsplit=1)
        return (words[0] if words else None), None
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.isalpha():
        authority, slash, path = rest.partition("/")
        return authority.rpartition("@")[2] or None, "/" + path
    return None, None


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Tunables of the HTTP analyzer."""

    max_head_bytes: int = 16 * 1024
    """Most bytes buffered per direction for a line or a head; a longer one is passed over."""
    max_pending: int = 32
    """Requests kept per flow while waiting for their responses; past that the oldest is
    written out without a status."""
    follow_flow: bool = True
    """Read an HTTP connection to its end (every request of a keep-alive connection), not only
    the first packets the engine shows every analyzer."""
    max_inflate_bytes: int = 16 * 1024 * 1024
    """Most bytes a compressed body is inflated to for counting; beyond, its bytes are counted
    as they are (a decompression bomb costs no more)."""

    def __post_init__(self) -> None:
        if self.max_pending < 1:
            raise ValueError("max_pending must be at least 1 (the request being added is kept)")
        if self.max_head_bytes < 64:
            raise ValueError("max_head_bytes must be at least 64")


@dataclass(frozen=True, slots=True)
class HttpRecord(ConnRecord):
    """One HTTP request and, when seen, its response. `ts` is the request's time (the
    response's when the request could not be read)."""

    log: ClassVar[str] = "http"
    method: str | None
    """None when only the response was readable."""
    uri: str | None
    """Request target as sent."""
    version: str | None
    """HTTP version of the exchange: the response's when one was seen, else the request's
    (`HTTP/1.1`; `HTTP/0.9` for a simple request), as Zeek logs it."""
    host: str | None = None
    """Host header as sent (port included), or the authority of an absolute target."""
    user_agent: str | None = None
    content_type: str | None = None
    """Content-Type of the request."""
    request_body_len: int = 0
    """Bytes of request body seen (de-chunked)."""
    status_code: int | None = None
    """Status of the response; None when no response (or an HTTP/0.9 one) was seen."""
    status_msg: str | None = None
    """Reason phrase of the response."""
    response_body_len: int = 0
    """Bytes of response body seen (de-chunked)."""


class _Exchange:
    """A request and its response, written once the response is read (or the flow ends)."""

    __slots__ = ("ts", "request", "host", "request_body", "response", "response_body")

    def __init__(self, ts: float, request: HttpRequestHead | None, host: str | None) -> None:
        self.ts = ts
        self.request = request
        self.host = host
        self.request_body = 0
        self.response: HttpResponseHead | None = None
        self.response_body = 0


class _Side:
    """One direction: what it expects next, and the bytes of a line or head not yet whole."""

    __slots__ = (
        "is_orig",
        "buf",
        "mode",
        "remaining",
        "current",
        "head_at",
        "inflate",
        "inflated",
        "frames",
    )

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.buf = bytearray()
        self.mode = _HEAD
        self.remaining = 0
        self.current: _Exchange | None = None
        """The exchange whose body is being read."""
        self.head_at = -1
        """Where in `buf` a valid start line begins (the rest of its head is awaited), or -1."""
        self.inflate: Any = None
        """A zlib decompressor for a compressed body (its bytes are counted decompressed)."""
        self.inflated = 0
        self.frames: WebSocketFrames | None = None
        """After a switch to WebSocket: the frames the direction's HTTP travels in (a tunnel,
        wstunnel), read until what they carry is not HTTP."""


class _HttpState:
    """What the analyzer keeps about one HTTP connection."""

    __slots__ = ("orig", "resp", "pending", "requests", "requests_in_frames")

    def __init__(self) -> None:
        self.orig = _Side(True)
        self.resp = _Side(False)
        self.pending: deque[_Exchange] = deque()
        """Exchanges whose response is not read yet, oldest first."""
        self.requests = 0
        self.requests_in_frames = False
        """The client's WebSocket frames were found to carry HTTP requests."""


class HttpAnalyzer:
    """Decode HTTP/1.x requests and responses on any TCP port into http.jsonl records."""

    name = "http"
    wants_ports: frozenset[int] = frozenset()
    """The ports `wants` reads (`WantsHook`)."""
    tcp_stream = True
    """Its packet hook reads each direction in order (`dronewatch.core.stream`)."""

    def __init__(self, ctx: Context, options: HttpOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or HttpOptions()
        self._state: dict[str, _HttpState] = {}  # keyed by flow.uid, dropped in flow_end

    def wants(self, flow: Flow) -> bool:
        """HTTP/1.x runs over TCP."""
        return flow.proto == IP_PROTO_TCP

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Read each direction's bytes in order: heads, bodies, the lines between."""
        if flow.proto != IP_PROTO_TCP or not (pkt.payload or pkt.skipped):
            return
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        state = self._state.get(flow.uid)
        if state is None:
            if not pkt.payload:
                return
            state = self._begin(flow, pkt.payload, from_orig)
            if state is None:
                return
        side = state.orig if from_orig else state.resp
        requests = state.requests
        if pkt.skipped:
            self._gap(side, pkt.skipped)  # a body's bytes passed over: counted as a gap's are
        if pkt.gap:
            self._gap(side, pkt.gap)
        if not pkt.payload:
            return  # the flow's end says how much of a body was passed over
        data = bytes(pkt.payload)
        if side.frames is not None:
            data = self._unframe(state, side, data, bool(pkt.gap or pkt.skipped))
        self._read(flow, state, side, from_orig, data, pkt.ts)
        self._wait_or_read(flow, state, from_orig and state.requests == requests)
        if (
            side.mode == _BODY
            and side.frames is None  # a body in frames does not end at a sequence number
            and side.inflate is None
            and side.remaining > 1
            and not side.buf
            and not pkt.tcp_flags & TCP_SYN  # its first byte is the one after the SYN's number
        ):
            # The rest of a body of known length, but its last byte, is not read: only its end
            # matters (where the next message starts), so the stream layer may pass over it.
            end = pkt.tcp_seq + len(pkt.payload) + side.remaining - 1
            flow.pass_over(self.name, from_orig, end)

    @staticmethod
    def _unframe(state: _HttpState, side: _Side, data: bytes, lost: bool) -> bytes:
        """What a WebSocket's frames carry of `data`. The first bytes the client's frames carry
        must start a request, or the tunnel carries another protocol (TLS, SSH) and neither
        direction is read any more; so is it when frames cannot be followed (bytes lost, a
        compressed frame)."""
        frames = side.frames
        assert frames is not None
        carried = None if lost else frames.feed(data)
        if (
            carried is not None
            and side.is_orig
            and side.mode == _HEAD
            and not side.buf
            and carried
            and not state.requests_in_frames
        ):
            line = carried.split(b"\n", 1)[0].removesuffix(b"\r")
            parsed = request_line(line) if b"\n" in carried else None
            if not _may_start(line, True) or (
                b"\n" in carried and (parsed is None or not parsed[2])  # HTTP/1.x only
            ):
                carried = None
            else:
                state.requests_in_frames = True
        if carried is None:
            for one in (state.orig, state.resp):
                one.frames, one.mode = None, _TUNNEL
                one.buf.clear()
            return b""
        return carried

    def _wait_or_read(self, flow: Flow, state: _HttpState, idle: bool) -> None:
        """Say whether the analyzer waits (`Flow.wait`): a request is read whole and its
        response has not begun, and the client's bytes are nothing it can read (the client's
        side between messages with nothing held, or a tunnel's bytes after a CONNECT). Only the
        response lets it read on, so it waits for it from "resp" and the engine stops a flow
        whose response never comes into view after its bound (`EngineOptions.stall_packets`).
        A packet that held a request, its body or the start of one (pipelining, an upload) is
        read in step: the wait starts again from it (`idle` False), so a client still sending
        what the analyzer reads is never stopped; and once the server's answer has begun, it
        reads that."""
        orig, resp = state.orig, state.resp
        unanswered = any(x.response is None and x is not resp.current for x in state.pending)
        if (
            unanswered
            and orig.mode in (_HEAD, _TUNNEL)
            and not orig.buf
            and resp.mode == _HEAD
            and not resp.buf
        ):
            if not idle:
                flow.stop_waiting(self.name)  # a request read: the count starts again
            flow.wait(self.name, "response", "resp")
        else:
            flow.stop_waiting(self.name)

    def flow_end(self, flow: Flow) -> None:
        """Write the exchanges still waiting for a response, and drop the flow's state."""
        state = self._state.pop(flow.uid, None)
        if state is None:
            return
        for exchange in state.pending:
            self._emit(flow, exchange)

    def _begin(self, flow: Flow, data: bytes, from_orig: bool) -> _HttpState | None:
        """The state of a flow whose first bytes make it HTTP; None (and maybe a decline) else.

        A flow with nothing recognisable yet (on an HTTP port, its first request lost) is not a
        wait (`Flow.wait`), even with one side speaking: the client's next request, as much as
        the server's status line, makes it HTTP, and the engine hands an unrecognised flow to
        nobody past `EngineOptions.inspect_packets` anyway."""
        if flow.service and flow.service != "http":
            if flow.service == "tls" and flow.resp_p in HTTP_PORTS and not from_orig:
                # A TLS client at an HTTP server: the server may answer in HTTP (400).
                if data.startswith(b"HTTP/"):
                    state = self._state[flow.uid] = _HttpState()
                    return state
            if flow.service != "tls" or flow.resp_p not in HTTP_PORTS or not from_orig:
                flow.decline(self.name)  # another protocol (TLS, MQTT, RTSP...) was recognised
            return None
        line, newline, _ = data.partition(b"\n")
        if from_orig:
            if newline:
                # The first line, or one soon after a line that starts no request (passed over).
                # An HTTP/0.9 line (no version) only on an HTTP port: `EHLO x` is not HTTP.
                lines = data[: self.options.max_head_bytes].split(b"\n")[:-1]
                simple_ok = flow.resp_p in HTTP_PORTS
                ok = any(
                    (parsed := request_line(one.removesuffix(b"\r"))) is not None
                    and (bool(parsed[2]) or simple_ok)
                    for one in lines
                )
            else:
                first = line.split(b" ", 1)[0]
                ok = bool(_TOKEN.fullmatch(first)) and len(line) < self.options.max_head_bytes
                ok = ok and (b" " in line or len(line) < 16)  # a method cut short, maybe
            if not ok:
                if flow.resp_p not in HTTP_PORTS:
                    flow.decline(self.name)
                return None  # on an HTTP port, the response may still say it is HTTP
        elif not (flow.resp_p in HTTP_PORTS and data.startswith(b"HTTP/")):
            return None
        state = self._state[flow.uid] = _HttpState()
        return state

    def _gap(self, side: _Side, gap: int) -> None:
        """Bytes lost: within a body of known length still in step, else wait for a new line."""
        if side.mode in (_BODY, _CHUNK_DATA) and side.remaining >= gap and not side.buf:
            side.remaining -= gap
            if side.current is not None:
                side.inflate = None  # the compressed stream cannot go on over a hole
                self._count(side, gap)
            return
        if side.mode == _TO_CLOSE:
            side.inflate = None
            self._count(side, gap)
            return
        if side.mode != _TUNNEL:
            side.mode = _HEAD
        side.buf.clear()
        side.head_at = -1
        side.current = None

    @staticmethod
    def _count(side: _Side, n: int) -> None:
        exchange = side.current
        if exchange is None:
            return
        if side.is_orig:
            exchange.request_body += n
        else:
            exchange.response_body += n

    def _read(
        self, flow: Flow, state: _HttpState, side: _Side, from_orig: bool, data: bytes, ts: float
    ) -> None:
        """Feed one direction's next bytes through its modes."""
        limit = self.options.max_head_bytes
        while data:
            mode = side.mode
            if mode == _TUNNEL:
                return
            if mode == _TO_CLOSE:
                self._body_bytes(side, data)
                return
            if mode in (_BODY, _CHUNK_DATA):
                step = min(side.remaining, len(data))
                self._body_bytes(side, data[:step])
                side.remaining -= step
                data = data[step:]
                if not side.remaining:
                    if mode == _BODY:
                        self._done(flow, state, side, from_orig)
                    else:
                        side.mode = _CHUNK_END
                continue
            # Line-oriented modes: a head, chunk framing, trailers.
            side.buf += data
            data = b""
            if mode == _HEAD:
                rest = self._head(flow, state, side, from_orig, ts)
                if rest is None:
                    if len(side.buf) > limit:
                        side.buf.clear()  # too long for a line or a head: pass it over
                        side.head_at = -1
                    return
                data = rest
                continue
            end = side.buf.find(b"\n")
            if end < 0:
                if len(side.buf) > limit:
                    side.buf.clear()
                    self._resync(flow, state, side, from_orig)
                return
            line = bytes(side.buf[:end]).strip()
            data = bytes(side.buf[end + 1 :])
            side.buf.clear()
            self._framing_line(flow, state, side, from_orig, line)

    def _framing_line(
        self, flow: Flow, state: _HttpState, side: _Side, from_orig: bool, line: bytes
    ) -> None:
        """A line of chunked framing: a chunk size, a chunk's end, or a trailer."""
        if side.mode == _CHUNK_END:
            side.mode = _CHUNK_SIZE
            if not line:
                return
            # Data where the chunk's CRLF belongs: framing lost, read the line as a size.
        if side.mode == _TRAILER:
            if not line:
                self._done(flow, state, side, from_orig)
            return
        size_text = line.split(b";", 1)[0].strip()
        size = int(size_text, 16) if _HEX.fullmatch(size_text) else -1
        if size < 0 or size > _MAX_LENGTH:
            logger.debug("%s: bad HTTP chunk size %r", flow.uid, size_text[:32])
            self._resync(flow, state, side, from_orig)
            return
        if size == 0:
            side.mode = _TRAILER
        else:
            side.mode = _CHUNK_DATA
            side.remaining = size

    def _resync(self, flow: Flow, state: _HttpState, side: _Side, from_orig: bool) -> None:
        """The body's framing is lost: the message ends here, the next line may start one."""
        self._done(flow, state, side, from_orig)

    def _body_bytes(self, side: _Side, data: bytes) -> None:
        """Body bytes: counted as Zeek counts them, decompressed when the message says it is
        (Content-Encoding gzip or deflate), within `max_inflate_bytes`."""
        inflate = side.inflate
        if inflate is None:
            self._count(side, len(data))
            return
        room = self.options.max_inflate_bytes - side.inflated
        try:
            out = len(inflate.decompress(data, max(room, 1)))
        except zlib.error:
            side.inflate = None  # not what the header said: count the bytes as they are
            self._count(side, len(data))
            return
        side.inflated += out
        self._count(side, out)
        if side.inflated >= self.options.max_inflate_bytes:
            side.inflate = None

    def _head(
        self, flow: Flow, state: _HttpState, side: _Side, from_orig: bool, ts: float
    ) -> bytes | None:
        """Find a start line (passing over other lines) and its whole head in `side.buf`; read
        it and return the bytes after it, or None while more is needed."""
        buf = side.buf
        if not from_orig and side.head_at < 0:
            waiting = next((x for x in state.pending if x.response is None), None)
            if waiting is not None and waiting.request is not None:
                if waiting.request.version == "HTTP/0.9":
                    # The answer to a simple request is its body alone, up to the close.
                    side.mode, side.current = _TO_CLOSE, waiting
                    rest = bytes(buf)
                    buf.clear()
                    return rest
        while side.head_at < 0:
            end = buf.find(b"\n")
            if end < 0:
                if buf and not _may_start(bytes(buf), from_orig):
                    buf.clear()  # not a start line, and no line end yet: pass over it
                return None
            line = bytes(buf[:end]).removesuffix(b"\r")
            if from_orig and (parsed := request_line(line)) is not None and not parsed[2]:
                # HTTP/0.9: the request is this one line and its response a bare body; header
                # lines after it (a request line that lost its version) are read with it.
                after = _header_follows(bytes(buf[end + 1 :]))
                if after is None:
                    return None  # the next line may still become a header line
                if after:
                    side.head_at = 0
                    break
                rest = bytes(buf[end + 1 :])
                buf.clear()
                self._request(flow, state, line, ts)
                return rest
            if (from_orig and request_line(line) is not None) or (
                not from_orig and _is_status_line(line)
            ):
                side.head_at = 0
                break
            del buf[: end + 1]  # a line that starts no message: passed over, as Zeek does
        match = _BLANK.search(buf)
        if match is None:
            return None
        head = bytes(buf[: match.start()])
        rest = bytes(buf[match.end() :])
        buf.clear()
        side.head_at = -1
        if from_orig:
            self._request(flow, state, head, ts)
        else:
            self._response(flow, state, head, ts)
        return rest

    def _request(self, flow: Flow, state: _HttpState, raw: bytes, ts: float) -> None:
        side = state.orig
        try:
            head = parse_request_head(raw)
        except DecodeError as exc:  # checked before: a line that parses stays one
            logger.debug("%s: not an HTTP request: %s", flow.uid, exc)
            return
        state.requests += 1
        headers = head.headers
        authority, path = _split_target(head.method, head.uri)
        host = headers.get("host") or authority
        flow.service = "http"
        if self.options.follow_flow:
            flow.follow(self.name)
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
            self._emit(flow, state.pending.popleft())
        exchange = _Exchange(ts, head, host)
        state.pending.append(exchange)
        side.current = exchange
        if head.version == "HTTP/0.9":  # no body; the response is a bare body
            side.mode = _HEAD
            side.current = None
            return
        side.inflate, side.inflated = _inflater(headers), 0
        if head.method == "CONNECT":
            side.mode = _TUNNEL  # a tunnel follows
        elif chunked(headers):
            side.mode = _CHUNK_SIZE
        else:
            length = content_length(headers) or 0
            if length:
                side.mode, side.remaining = _BODY, length
            else:
                self._done(flow, state, side, True)

    def _response(self, flow: Flow, state: _HttpState, raw: bytes, ts: float) -> None:
        side = state.resp
        try:
            head = parse_response_head(raw)
        except DecodeError as exc:  # checked before: a line that parses stays one
            logger.debug("%s: not an HTTP response: %s", flow.uid, exc)
            return
        code = head.status_code
        if 100 <= code < 200 and code != 101:
            return  # interim (100 Continue): the final response follows
        exchange = next((x for x in state.pending if x.response is None), None)
        if exchange is None:
            # A response to a request that could not be read: written on its own, as Zeek does.
            exchange = _Exchange(ts, None, None)
            state.pending.append(exchange)
        exchange.response = head
        side.current = exchange
        if not flow.service:
            flow.service = "http"  # a TLS client answered in HTTP keeps its service
        if self.options.follow_flow:
            flow.follow(self.name)
        method = exchange.request.method if exchange.request is not None else ""
        side.inflate, side.inflated = _inflater(head.headers), 0
        if (
            code == 101
            and exchange.request is not None
            and names_websocket(exchange.request.headers)
            and names_websocket(head.headers)
        ):
            # A WebSocket (RFC 6455): its frames may carry HTTP (a tunnel, wstunnel), read on
            # from them; `_unframe` stops at the first frames that carry something else.
            for one in (side, state.orig):
                one.mode, one.frames, one.remaining = _HEAD, WebSocketFrames(), 0
                one.current, one.inflate = None, None
                one.buf.clear()
            self._finish(flow, state, exchange)
        elif code == 101 or (method == "CONNECT" and code < 300):
            side.mode = _TUNNEL  # another protocol (or a tunnel) follows
            state.orig.mode = _TUNNEL
            self._finish(flow, state, exchange)
        elif method == "HEAD" or code in (204, 304):
            self._done(flow, state, side, False)  # no body whatever the headers say
        elif chunked(head.headers):
            side.mode = _CHUNK_SIZE
        else:
            length = content_length(head.headers)
            if length is None:
                side.mode = _TO_CLOSE
            elif length:
                side.mode, side.remaining = _BODY, length
            else:
                self._done(flow, state, side, False)

    def _done(self, flow: Flow, state: _HttpState, side: _Side, from_orig: bool) -> None:
        """A message (head and body) is read: the direction waits for the next start line."""
        exchange = side.current
        side.inflate = None
        side.mode = _HEAD
        side.remaining = 0
        side.current = None
        if not from_orig and exchange is not None:
            self._finish(flow, state, exchange)

    def _finish(self, flow: Flow, state: _HttpState, exchange: _Exchange) -> None:
        """The response is read: write the exchange, once."""
        if exchange in state.pending:
            state.pending.remove(exchange)
            self._emit(flow, exchange)

    def _emit(self, flow: Flow, exchange: _Exchange) -> None:
        request, response = exchange.request, exchange.response
        headers = request.headers if request is not None else {}
        version = response.version if response is not None else None
        if version is None and request is not None:
            version = request.version
        self.ctx.emit(
            HttpRecord(
                ts=exchange.ts,
                **conn(flow),
                method=request.method if request is not None else None,
                uri=request.uri if request is not None else None,
                version=version,
                host=exchange.host,
                user_agent=headers.get("user-agent"),
                content_type=headers.get("content-type"),
                request_body_len=exchange.request_body,
                status_code=response.status_code if response is not None else None,
                status_msg=response.status_msg if response is not None else None,
                response_body_len=exchange.response_body,
            )
        )


def _inflater(headers: Mapping[str, str]) -> Any:
    """A decompressor for a body sent with Content-Encoding gzip or deflate (zlib or raw), or
    None."""
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Deflate()
    return None


class _Deflate:
    """`deflate` as servers send it: with a zlib header (RFC 9110 8.4.1.2), or raw."""

    __slots__ = ("inner",)

    def __init__(self) -> None:
        self.inner: Any = None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self.inner is None:
            zlib_header = len(data) >= 2 and (data[0] << 8 | data[1]) % 31 == 0
            self.inner = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        return bytes(self.inner.decompress(data, max_length))


_HEADER_START = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:")
"""The start of a header field line (RFC 9110 5.1: a token, then a colon)."""
_MAYBE_HEADER = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]*")
"""A line cut short that may still become a header field line."""


def _header_follows(after: bytes) -> bool | None:
    """Whether the bytes after an HTTP/0.9 request line start with a header field line: True,
    False, or None when the line after it is not whole yet and may still become one."""
    if not after:
        return False
    end = after.find(b"\n")
    if end < 0:
        return None if _MAYBE_HEADER.fullmatch(after) else bool(_HEADER_START.match(after))
    return bool(_HEADER_START.match(after[:end]))


def _is_status_line(line: bytes) -> bool:
    version, _, rest = line.strip().partition(b" ")
    return bool(_VERSION.fullmatch(version)) and bool(_STATUS.fullmatch(rest.strip()[:3]))


def _may_start(part: bytes, from_orig: bool) -> bool:
    """`part`, a line not ended yet, may still become a start line."""
    if not from_orig:
        return b"HTTP/".startswith(part[:5]) if len(part) < 5 else part.startswith(b"HTTP/")
    first = part.split(b" ", 1)[0]
    return not first or bool(_TOKEN.fullmatch(first))


__all__ = [
    "HTTP_PORTS",
    "HttpAnalyzer",
    "HttpOptions",
    "HttpRecord",
    "HttpRequestHead",
    "HttpResponseHead",
    "chunked",
    "content_length",
    "host_without_port",
    "parse_request_head",
    "parse_response_head",
    "request_line",
]
