"""TLS over TCP: read the ClientHello and ServerHello of every flow into tls.jsonl records.

The hellos are plaintext, so the server name, ALPN offer, versions and the JA3/JA4 client
fingerprints are visible without decrypting anything. A hello may be cut over several TCP
segments, which the stream layer (`dronewatch.core.stream`) hands over in order; each direction
is buffered, within a fixed budget, until the hello can be read.

TLS may start after a plaintext exchange (STARTTLS: SMTP, IMAP, FTP's `AUTH TLS`), or travel
in another protocol's framing (`dronewatch.analyzers._envelope`): base64-encoded in the
security exchange of FTP's RFC 2228 (GSI, GridFTP's security), or in the frames of a WebSocket
(a tunnel: wstunnel); the analyzer reads it from what the framing carries.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import ClassVar

from dronewatch.analyzers._envelope import AdatTokens, WebSocketFrames, adat_start, names_websocket
from dronewatch.analyzers._tls_hello import (
    TLS_EXT_EARLY_DATA,
    TLS_HANDSHAKE_CLIENT_HELLO,
    ClientHello,
    ServerHello,
    fingerprints,
    looks_like_handshake,
    parse_client_hello,
    read_handshake_message,
    server_hello_from_records,
    tls_cipher_name,
    tls_version_name,
    under_way,
)
from dronewatch.analyzers.http import parse_request_head, parse_response_head, request_line
from dronewatch.core.flow import IP_PROTO_TCP, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """Tunables of the TLS analyzer."""

    max_buffer_bytes: int = 64 * 1024
    """Most payload bytes kept per direction while a hello is incomplete, and looked through
    for a hello after a plaintext exchange (STARTTLS)."""
    max_records: int = 64
    """Records read after both hellos while waiting for the handshake to end."""
    hello_answer_packets: int = 2
    """Payload packets a client that offers no early data may send after its ClientHello
    before the server's first flight must have come into view: a TLS client sends nothing
    between the two but an alert (RFC 8446 2, 4.1.1; TLS 1.2 the same), so more from it says
    that flight went by out of view (a one-way mirror, a lost direction) and the flow's
    inspection stops at the next one (`Flow.wait`'s `within`). The engine's
    `stall_packets`, when lower, and for a client that offers early data (0-RTT), bound it
    instead. 0: only the engine's bound."""

    def __post_init__(self) -> None:
        value = self.hello_answer_packets
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"TlsOptions.hello_answer_packets={value!r}: must be a whole number, 0 or more"
            )


@dataclass(frozen=True, slots=True)
class TlsRecord(ConnRecord):
    """One TLS handshake: what the client offered and what the server chose.

    `ts` is the time of the packet that completed the ClientHello (or the ServerHello when the
    ClientHello was not seen).
    """

    log: ClassVar[str] = "tls"
    server_name: str | None = None
    """Host name from the ClientHello server_name extension (SNI)."""
    alpn: tuple[str, ...] = ()
    """Application protocols the client offered, in preference order."""
    version: str | None = None
    """Version the server chose (`TLSv1.3`), from its ServerHello."""
    client_versions: tuple[str, ...] = ()
    """Versions the client offered, highest preference first, GREASE removed."""
    cipher: str | None = None
    """Cipher suite the server chose: IANA name when known, else hex (`0x1301`)."""
    ja3: str | None = None
    """JA3 text of the ClientHello."""
    ja3_hash: str | None = None
    """MD5 of the JA3 text."""
    ja4: str | None = None
    """FoxIO JA4 fingerprint of the ClientHello."""
    retry_ja4: str | None = None
    """FoxIO JA4 of the client's second ClientHello, the one it sends in answer to a
    HelloRetryRequest (RFC 8446 4.1.4), seen even when the server's side is not."""
    established: bool = False
    """The handshake completed: both sides switched to encrypted records (after their
    ChangeCipherSpec, or their first application data under TLS 1.3) and one more came, as
    Zeek's ssl.log says it."""
    hello_retry: bool = False
    """The server answered with a TLS 1.3 HelloRetryRequest."""

    @classmethod
    def of_handshake(
        cls,
        flow: Flow,
        ts: float,
        client: ClientHello | None,
        server: ServerHello | None,
        *,
        retry: ClientHello | None,
        transport: str,
        established: bool,
        hello_retry: bool,
    ) -> TlsRecord:
        """The record of a handshake from its hellos (TLS and DTLS alike); `transport` is JA4's
        first letter: `t` for TCP, `d` for DTLS."""
        prints = fingerprints(client, transport) if client else None
        return cls(
            ts=ts,
            **conn(flow),
            server_name=client.server_name if client else None,
            alpn=client.alpn if client else (),
            version=tls_version_name(server.version) if server else None,
            client_versions=tuple(tls_version_name(v) for v in client.versions) if client else (),
            cipher=tls_cipher_name(server.cipher_suite) if server else None,
            ja3=prints.ja3 if prints else None,
            ja3_hash=prints.ja3_hash if prints else None,
            ja4=prints.ja4 if prints else None,
            retry_ja4=fingerprints(retry, transport).ja4 if retry else None,
            established=established,
            hello_retry=hello_retry,
        )


_OLD_VERSIONS = frozenset((0x0002, 0x0300, 0x0301, 0x0302, 0x0303))
"""Versions before TLS 1.3: application data does not mean the handshake is over."""
_START = re.compile(rb"\x16\x03[\x00-\x04]..[\x01\x02]", re.DOTALL)
"""A handshake record carrying a ClientHello (1) or ServerHello (2): where TLS starts after a
plaintext exchange (STARTTLS)."""
_HEAD_END = re.compile(rb"\r?\n\r?\n")
"""The end of an HTTP head. A client whose first bytes are a whole HTTP/1 request head (its
line as the HTTP analyzer reads one, `http.request_line`), of another method than CONNECT (a
tunnel) and without an `Upgrade` header (a WebSocket, RFC 6455, may carry TLS), starts no TLS
on the connection, so the analyzer stops looking."""
_UPGRADE = re.compile(rb"\nupgrade[ \t]*:", re.IGNORECASE)


class _Direction:
    """One direction of a flow: where its TLS starts, its hello, and the record headers since."""

    __slots__ = (
        "pre",
        "started",
        "envelope",
        "hello",
        "full",
        "header",
        "ctype",
        "left",
        "encrypted",
        "lost",
    )

    def __init__(self) -> None:
        self.pre = bytearray()
        """Bytes before TLS started (a STARTTLS protocol's), while looking for the start."""
        self.started = False
        self.envelope: AdatTokens | WebSocketFrames | None = None
        """The framing the direction's TLS travels in (`_envelope`), once found."""
        self.hello = bytearray()
        """The direction's TLS bytes while its hello is incomplete."""
        self.full = False
        """Bytes were lost before the hello was whole, or it outgrew the budget."""
        self.header = bytearray()
        """A record header cut short."""
        self.ctype = 0
        """Content type of the current record."""
        self.left = 0
        """Bytes of the current record still to pass over."""
        self.encrypted = False
        """The direction switched to encrypted records (ChangeCipherSpec, or TLS 1.3 data)."""
        self.lost = False
        """Record framing lost (bytes missing, or not TLS records): no more records read."""


class _TlsState:
    """What the analyzer knows about one TCP flow."""

    __slots__ = (
        "orig",
        "resp",
        "client",
        "server",
        "client_ts",
        "server_ts",
        "client_done",
        "server_done",
        "emitted",
        "established",
        "records",
        "first_len",
        "shaken",
        "retry_buf",
        "retry",
        "retry_done",
        "answered",
        "websocket",
    )

    def __init__(self) -> None:
        self.orig = _Direction()
        self.resp = _Direction()
        self.client: ClientHello | None = None
        self.server: ServerHello | None = None
        self.client_ts = 0.0
        self.server_ts = 0.0
        self.client_done = False
        """Stop looking for the ClientHello: read, or not TLS."""
        self.server_done = False
        """Stop looking for the ServerHello: read, or not TLS."""
        self.emitted = False
        self.established = False
        """Both directions switched to encrypted records and one more came (Zeek's rule)."""
        self.records = 0
        """Records read after both hellos, bounded by `max_records`."""
        self.first_len = 0
        """Length of the ClientHello message (header included), once read."""
        self.shaken = 0
        """Bytes of the client's handshake records so far (the ClientHello's first)."""
        self.retry_buf = bytearray()
        """The client's handshake message after its ClientHello, while incomplete."""
        self.retry: ClientHello | None = None
        """The second ClientHello, sent after a HelloRetryRequest."""
        self.retry_done = False
        """Stop looking for a second ClientHello: read, or the next message is another."""
        self.answered = False
        """The responder's side sent payload: from then on the analyzer never waits."""
        self.websocket = False
        """The client asked to switch to WebSocket (RFC 6455 4.1); the server's `101` does."""

    def retry_pending(self) -> bool:
        """A second ClientHello has begun and is not whole yet (its record is not lost)."""
        return bool(self.retry_buf) and not self.retry_done and not self.orig.lost

    def tls13(self) -> bool:
        """Application data ends the handshake of this connection's version (Zeek counts any
        version but SSL 2/3 and TLS 1.0 to 1.2 as 1.3, an unknown one too)."""
        return self.server is None or self.server.version not in _OLD_VERSIONS


_DONE = _TlsState()
_DONE.emitted = True
"""The state of every flow whose record is written (or that is not TLS): nothing more to do."""


class TlsAnalyzer:
    """Decode TLS ClientHello/ServerHello pairs on any TCP port into tls.jsonl records."""

    name = "tls"
    wants_ports: frozenset[int] = frozenset()
    """The ports `wants` reads (`WantsHook`)."""
    tcp_stream = True
    """Its packet hook reads each direction in order (`dronewatch.core.stream`)."""

    def __init__(self, ctx: Context, options: TlsOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or TlsOptions()
        self._state: dict[str, _TlsState] = {}  # keyed by flow.uid, dropped in flow_end

    def wants(self, flow: Flow) -> bool:
        """TLS runs over TCP (QUIC has its own analyzer)."""
        return flow.proto == IP_PROTO_TCP

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Find where each direction's TLS starts, read its hello, then follow its record headers
        until the handshake is over. After a ClientHello, until the server sends anything, the
        analyzer waits (`Flow.wait`): a flow whose ServerHello never comes into view is given up
        after the engine's bound (`EngineOptions.stall_packets`), its record written at its end."""
        if flow.proto != IP_PROTO_TCP or not pkt.payload:
            return
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        state = self._state.get(flow.uid)
        if state is None:
            if flow.service and flow.service not in ("tls", "http"):
                flow.decline(self.name)  # another protocol (HTTP CONNECT may precede TLS)
                return
            state = self._state[flow.uid] = _TlsState()
        if state.emitted:
            return
        d = state.orig if from_orig else state.resp
        if not from_orig and not state.answered:
            state.answered = True
            flow.stop_waiting(self.name)
        if not d.started and flow.service and flow.service not in ("tls", "http"):
            self._finish(flow, state)  # another protocol was recognised: no STARTTLS to find
            return
        data = bytes(pkt.payload)
        if pkt.gap:
            d.lost = True  # record framing cannot be followed over lost bytes
            if not d.started:
                d.pre.clear()
            elif not (state.client_done if from_orig else state.server_done):
                d.full = True
        if d.envelope is None and not d.started and not d.lost:
            data = self._open_envelope(state, d, data, from_orig)
        if d.envelope is not None:
            carried = d.envelope.feed(data)
            if carried is None:
                d.lost = True  # the framing cannot be followed: nor the records in it
                d.envelope = None
                if not (state.client_done if from_orig else state.server_done):
                    d.full = True
                data = b""
            else:
                data = carried
        other = state.resp if from_orig else state.orig
        if not (d.started or d.pre or d.lost or other.started or d.envelope is not None):
            if under_way(data):
                # The first TLS bytes in view are a record of a session under way (application
                # data, an alert, a ChangeCipherSpec), no hello before them: the capture began
                # after the handshake, which no later byte of the connection repeats.
                self._finish(flow, state)
                return
        if not d.started:
            if from_orig and not d.pre and not d.lost and d.envelope is None:
                line, newline, _ = data.partition(b"\n")
                request = request_line(line.removesuffix(b"\r")) if newline else None
                end = _HEAD_END.search(data) if request is not None else None
                if (
                    request is not None
                    and end is not None
                    and request[2]  # a version: not an HTTP/0.9 line (`EHLO x` is one)
                    and request[0] != b"CONNECT"
                    and _UPGRADE.search(data, 0, end.start()) is None
                ):
                    self._finish(flow, state)  # plain HTTP: no TLS will start
                    return
            data = self._find_start(d, data, from_orig)
            if not d.started:
                self._check_given_up(flow, state)
                return
        if from_orig and not state.client_done:
            self._add_hello(d, data)
            self._read_client(flow, state, pkt.ts)
        elif not from_orig and not state.server_done:
            self._add_hello(d, data)
            self._read_server(flow, state, pkt.ts)
        if not d.lost:
            self._records(state, d, from_orig, data)
        self._check_given_up(flow, state)
        if from_orig and not state.answered and not state.emitted:
            # A ClientHello and nothing from the server: only its ServerHello lets the analyzer
            # read on (a client sends little before it; a second ClientHello is read in step).
            if state.client is not None and not state.retry_pending():
                early = TLS_EXT_EARLY_DATA in state.client.extensions
                within = 0 if early else self.options.hello_answer_packets
                flow.wait(self.name, "ServerHello", "resp", within)
            else:
                flow.stop_waiting(self.name)
        if state.client_done and state.server_done and (state.client or state.server):
            if state.retry_pending():
                return
            if (
                state.established
                or state.records > self.options.max_records
                or (state.orig.lost and state.resp.lost)
            ):
                self._finish(flow, state)

    def flow_end(self, flow: Flow) -> None:
        """Write the record of a handshake seen only in part, and drop the flow's state."""
        state = self._state.pop(flow.uid, None)
        if state is not None and not state.emitted and (state.client or state.server):
            self._emit(flow, state)

    def _finish(self, flow: Flow, state: _TlsState) -> None:
        """Write the record; the hellos and buffers go, one shared placeholder says the flow is
        done."""
        if state.client or state.server:
            self._emit(flow, state)
        self._state[flow.uid] = _DONE
        flow.decline(self.name)

    def _check_given_up(self, flow: Flow, state: _TlsState) -> None:
        """The originator does not speak TLS (or not soon enough): stop looking at the flow."""
        if state.client_done and state.client is None and not state.server_done:
            state.server_done = True
        if state.client_done and state.server_done and not (state.client or state.server):
            self._finish(flow, state)

    def _open_envelope(
        self, state: _TlsState, d: _Direction, data: bytes, from_orig: bool
    ) -> bytes:
        """Before a direction's TLS starts: whether its bytes from here on travel in a framing
        (`_envelope`): an RFC 2228 ADAT token's line (in what is kept of the plaintext and
        `data`), or WebSocket frames after the head of a request asking for it (the client's)
        and of the `101` answering it (the server's), each head the direction's first bytes
        (read as the HTTP analyzer reads heads). When one starts, `d.envelope` is set and the
        bytes from where it starts are returned, for it to read; else `data`."""
        if not d.pre and looks_like_handshake(data[:3]):
            return data  # TLS from the first byte (most flows): no framing to look for
        seen = bytes(d.pre) + data if d.pre else data
        at = adat_start(seen, from_orig)
        if at >= 0:
            d.pre.clear()
            d.envelope = AdatTokens(from_orig, self.options.max_buffer_bytes)
            return seen[at:]
        if d.pre or (not from_orig and not state.websocket):
            return data
        end = _HEAD_END.search(data)
        if end is None or (from_orig and _UPGRADE.search(data, 0, end.start()) is None):
            return data  # no head, or a request that asks for no switch (most HTTP)
        try:
            if from_orig:
                switch = names_websocket(parse_request_head(data[: end.start()]).headers)
                state.websocket = switch
            else:
                answer = parse_response_head(data[: end.start()])
                switch = answer.status_code == 101 and names_websocket(answer.headers)
        except DecodeError:
            return data  # not an HTTP head
        if not switch:
            return data
        d.envelope = WebSocketFrames()  # the direction's frames follow its head
        return data[end.end() :]

    def _find_start(self, d: _Direction, data: bytes, from_orig: bool) -> bytes:
        """Where the direction's TLS begins: at its first byte, or at a hello record after a
        plaintext exchange (STARTTLS); the bytes from there on, or b"" while not found.

        While no start is found the analyzer does not wait (`Flow.wait`), even with one side
        speaking: the hello it looks for comes from this side's own next bytes (after a STARTTLS
        exchange, or after a first segment lost), not from an answer of the other end, and a flow
        nobody recognises is bounded already (no analyzer follows it past
        `EngineOptions.inspect_packets`)."""
        if not d.pre and looks_like_handshake(data[:3]):
            d.started = True
            return data
        d.pre += data
        found = _START.search(d.pre)
        while found is not None and (d.pre[found.end() - 1] == 1) != from_orig:
            found = _START.search(d.pre, found.start() + 1)
        if found is not None:
            d.started = True
            rest = bytes(d.pre[found.start() :])
            d.pre.clear()
            return rest
        if len(d.pre) > self.options.max_buffer_bytes:
            d.pre.clear()
            d.lost = True
        else:
            del d.pre[: max(0, len(d.pre) - 8)]  # a record header cut by the segment's end
        return b""

    def _add_hello(self, d: _Direction, data: bytes) -> None:
        if d.full:
            return
        if len(d.hello) + len(data) > self.options.max_buffer_bytes:
            d.full = True
            return
        d.hello += data

    def _records(self, state: _TlsState, d: _Direction, from_orig: bool, data: bytes) -> None:
        """Follow the direction's record headers (RFC 8446 5.1): a ChangeCipherSpec, or
        application data under TLS 1.3, switches it to encrypted records; a record sent while
        both directions are encrypted ends the handshake (Zeek's `established`)."""
        other = state.resp if from_orig else state.orig
        both_hellos = state.client_done and state.server_done
        while data:
            if d.left:
                step = min(d.left, len(data))
                if from_orig and d.ctype == 22:
                    self._client_handshake(state, data[:step])
                d.left -= step
                data = data[step:]
                continue
            need = 5 - len(d.header)
            d.header += data[:need]
            data = data[need:]
            if len(d.header) < 5:
                return
            ctype, major = d.header[0], d.header[1]
            d.ctype = ctype
            d.left = d.header[3] << 8 | d.header[4]
            d.header.clear()
            if ctype not in (20, 21, 22, 23) or major != 3:
                d.lost = True  # not TLS records (or framing lost): stop reading them
                return
            if both_hellos:
                state.records += 1
            if d.encrypted:
                if other.encrypted:
                    state.established = True
            elif ctype == 20:
                d.encrypted = True
            elif ctype == 23 and state.tls13():
                d.encrypted = True
                if other.encrypted:
                    state.established = True

    def _client_handshake(self, state: _TlsState, chunk: bytes) -> None:
        """Bytes of the client's handshake records, the ClientHello's first: the message after
        the ClientHello, when it is a second ClientHello (after a HelloRetryRequest), is read into
        `state.retry`. Any other message (TLS 1.2's ClientKeyExchange) ends the search, as does a
        ServerHello that is not a HelloRetryRequest."""
        start = state.shaken
        state.shaken += len(chunk)
        if state.retry_done or state.client is None:
            return
        if state.server is not None and not state.server.hello_retry_request:
            state.retry_done = True
            state.retry_buf.clear()
            return
        chunk = chunk[max(0, state.first_len - start) :]
        if not chunk:
            return
        buf = state.retry_buf
        buf += chunk
        needed = 4 + int.from_bytes(buf[1:4], "big") if len(buf) >= 4 else 4
        if buf[0] != TLS_HANDSHAKE_CLIENT_HELLO or needed > self.options.max_buffer_bytes:
            state.retry_done = True
            buf.clear()
            return
        if len(buf) < needed:
            return
        state.retry_done = True
        try:
            state.retry = parse_client_hello(bytes(buf))
        except DecodeError as exc:
            logger.debug("no second ClientHello: %s", exc)
        buf.clear()

    def _read_client(self, flow: Flow, state: _TlsState, ts: float) -> None:
        d = state.orig
        data = bytes(d.hello)
        hello: ClientHello | None = None
        try:
            message = read_handshake_message(data) if looks_like_handshake(data[:3]) else None
            if message is not None:
                hello = parse_client_hello(message)
                state.first_len = len(message)
        except DecodeError as exc:
            logger.debug("%s: no ClientHello: %s", flow.uid, exc)
            hello = None
            d.full = True
        if hello is None:
            if d.full or not looks_like_handshake(data[:3]):
                state.client_done = True
                d.hello.clear()
            return
        state.client, state.client_ts, state.client_done = hello, ts, True
        d.hello.clear()
        flow.service = "tls"
        if hello.server_name:
            flow.add_meta("sni", hello.server_name)
        for protocol in hello.alpn:
            flow.add_meta_item("alpn", protocol)
        prints = fingerprints(hello, "t")
        flow.add_meta("ja4", prints.ja4)
        flow.add_meta("ja3", prints.ja3_hash)

    def _read_server(self, flow: Flow, state: _TlsState, ts: float) -> None:
        d = state.resp
        data = bytes(d.hello)
        try:
            hello = server_hello_from_records(data) if looks_like_handshake(data[:3]) else None
        except DecodeError as exc:
            logger.debug("%s: no ServerHello: %s", flow.uid, exc)
            hello = None
            d.full = True
        if hello is None:
            if d.full or not looks_like_handshake(data[:3]):
                state.server_done = True
                d.hello.clear()
            return
        state.server, state.server_ts, state.server_done = hello, ts, True
        d.hello.clear()
        flow.service = "tls"
        flow.add_meta("tls_version", tls_version_name(hello.version))

    def _emit(self, flow: Flow, state: _TlsState) -> None:
        state.emitted = True
        client, server = state.client, state.server
        self.ctx.emit(
            TlsRecord.of_handshake(
                flow,
                state.client_ts if client is not None else state.server_ts,
                client,
                server,
                retry=state.retry,
                transport="t",
                established=state.established,
                hello_retry=server.hello_retry_request if server else False,
            )
        )


__all__ = ["TlsAnalyzer", "TlsOptions", "TlsRecord"]
