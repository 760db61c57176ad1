"""TLS over TCP: read the ClientHello and ServerHello of every flow into tls.jsonl records.

The hellos are plaintext, so the server name, ALPN offer, versions and the JA3/JA4 client
fingerprints are visible without decrypting anything. A hello may be cut over several TCP
segments that arrive out of order or twice; each direction is buffered by sequence number,
within a fixed budget, until the hello can be read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from dronewatch.analyzers._tls_hello import (
    ClientHello,
    ServerHello,
    client_hello_from_records,
    fingerprints,
    looks_like_handshake,
    server_hello_from_records,
    tls_cipher_name,
    tls_version_name,
)
from dronewatch.core.flow import IP_PROTO_TCP, TCP_ACK, TCP_SYN, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

_SEQ_MOD = 1 << 32
# RFC 8446 5.1 content types other than handshake: change_cipher_spec, alert, application_data.
_OTHER_RECORD_TYPES = (20, 21, 23)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """Tunables of the TLS analyzer."""

    max_buffer_bytes: int = 64 * 1024
    """Most payload bytes kept per direction while a hello is incomplete."""
    max_segments: int = 64
    """Most distinct TCP segments kept per direction."""
    probe_segments: int = 4
    """Segments kept, when the stream start is unknown (no SYN seen), before giving up on a
    direction whose lowest-sequence bytes do not start a TLS handshake record."""


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
    established: bool = False
    """A ServerHello was seen (the server answered the handshake)."""
    hello_retry: bool = False
    """The server answered with a TLS 1.3 HelloRetryRequest."""


def _seq_offset(seq: int, base: int) -> int:
    """Signed distance from `base` to `seq` in 32-bit sequence space."""
    diff = (seq - base) % _SEQ_MOD
    return diff - _SEQ_MOD if diff >= _SEQ_MOD // 2 else diff


class _Stream:
    """The payload of one direction of a TCP flow, kept by sequence number."""

    __slots__ = ("base", "known_start", "segments", "size", "added", "full")

    def __init__(self) -> None:
        self.base: int | None = None
        """Sequence number offsets count from."""
        self.known_start = False
        """`base` is the first payload byte of the stream (its SYN was seen)."""
        self.segments: dict[int, bytes] = {}
        """Offset from `base` to the bytes of the segment there."""
        self.size = 0
        self.added = 0
        """Payload packets offered to the stream."""
        self.full = False
        """Data was refused for lack of room."""

    def anchor(self, first_seq: int) -> None:
        """Fix the stream start at `first_seq` (the SYN's sequence number plus one)."""
        if self.base is None:
            self.base = first_seq
            self.known_start = True

    def add(self, seq: int, data: bytes, options: TlsOptions) -> None:
        """Keep a segment; retransmitted and overlapping copies are tolerated."""
        self.added += 1
        if self.base is None:
            self.base = seq
        offset = _seq_offset(seq, self.base)
        if self.known_start and offset < 0:  # starts before the stream: keep the new part
            data = data[-offset:]
            offset = 0
        if not data or abs(offset) > options.max_buffer_bytes:
            self.full = self.full or bool(data)
            return
        previous = self.segments.get(offset, b"")
        if len(previous) >= len(data):  # a retransmission of bytes already held
            return
        grow = len(data) - len(previous)
        if self.size + grow > options.max_buffer_bytes or (
            not previous and len(self.segments) >= options.max_segments
        ):
            self.full = True
            return
        self.segments[offset] = data
        self.size += grow

    def contiguous(self) -> bytes:
        """The bytes from the stream start (or the lowest offset held) up to the first hole."""
        if not self.segments:
            return b""
        start = 0 if self.known_start else min(self.segments)
        out = bytearray()
        end = start
        for offset in sorted(self.segments):
            if offset > end:
                break
            segment = self.segments[offset]
            if offset + len(segment) > end:
                out += segment[end - offset :]
                end = offset + len(segment)
        return bytes(out)

    def clear(self) -> None:
        self.segments.clear()
        self.size = 0


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
    )

    def __init__(self) -> None:
        self.orig = _Stream()
        self.resp = _Stream()
        self.client: ClientHello | None = None
        self.server: ServerHello | None = None
        self.client_ts = 0.0
        self.server_ts = 0.0
        self.client_done = False
        """Stop looking at the originator: hello read, or not TLS."""
        self.server_done = False
        """Stop looking at the responder: hello read, or not TLS."""
        self.emitted = False


_DONE = _TlsState()
_DONE.emitted = True
"""The state of every flow whose hellos are written (or that is not TLS): nothing more to do."""


class TlsAnalyzer:
    """Decode TLS ClientHello/ServerHello pairs on any TCP port into tls.jsonl records."""

    name = "tls"

    def __init__(self, ctx: Context, options: TlsOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or TlsOptions()
        self._state: dict[str, _TlsState] = {}  # keyed by flow.uid, dropped in flow_end
        self._syn: dict[str, int] = {}
        """Where a flow's stream starts, kept until its first payload (most flows never carry a
        handshake, so their state is made only when bytes come): the sequence number after a
        SYN, or minus one less the number after a SYN-ACK (the responder's stream)."""

    def flow_start(self, flow: Flow, pkt: Packet) -> None:
        """Remember where a byte stream starts when the flow opens with a SYN (or SYN-ACK)."""
        if flow.proto != IP_PROTO_TCP or not pkt.tcp_flags & TCP_SYN:
            return
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        syn_ack = bool(pkt.tcp_flags & TCP_ACK)
        if from_orig == syn_ack:  # a SYN comes from the originator, a SYN-ACK from the responder
            return
        seq = (pkt.tcp_seq + 1) % _SEQ_MOD
        self._syn[flow.uid] = -1 - seq if syn_ack else seq

    def wants(self, flow: Flow) -> bool:
        """TLS runs over TCP (QUIC has its own analyzer)."""
        return flow.proto == IP_PROTO_TCP

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Buffer handshake bytes by direction and read the hellos once they are complete."""
        if flow.proto != IP_PROTO_TCP or not pkt.payload:
            return
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        state = self._state.get(flow.uid)
        if state is None:
            syn = self._syn.pop(flow.uid, None)
            if syn is None:
                if flow.service and flow.service not in ("tls", "http"):
                    flow.decline(self.name)  # another protocol (HTTP CONNECT may precede TLS)
                    return
                # Responder bytes before any originator bytes only matter if they look like TLS.
                if not from_orig and not looks_like_handshake(pkt.payload[:3]):
                    return
            state = self._state[flow.uid] = _TlsState()
            if syn is not None:
                # The stream start is known: every byte counts, whatever comes first.
                if syn < 0:
                    state.resp.anchor(-1 - syn)
                else:
                    state.orig.anchor(syn)
        if state.emitted:
            return
        # Data on a SYN (TCP Fast Open) starts one past the SYN's sequence number.
        seq = pkt.tcp_seq + 1 if pkt.tcp_flags & TCP_SYN else pkt.tcp_seq
        if from_orig and not state.client_done:
            state.orig.add(seq % _SEQ_MOD, pkt.payload, self.options)
            self._read_client(flow, state, pkt.ts)
        elif not from_orig and not state.server_done:
            state.resp.add(seq % _SEQ_MOD, pkt.payload, self.options)
            self._read_server(flow, state, pkt.ts)
        if state.client_done and state.client is None and not state.server_done:
            # The originator does not speak TLS: stop looking at the flow.
            state.server_done = True
            state.resp.clear()
        if state.client_done and state.server_done:
            if state.client or state.server:
                self._emit(flow, state)
            # The hellos and buffers go now; one shared placeholder says the flow is done.
            self._state[flow.uid] = _DONE
            flow.decline(self.name)

    def flow_end(self, flow: Flow) -> None:
        """Write the record of a handshake seen only in part, and drop the flow's state."""
        self._syn.pop(flow.uid, None)
        state = self._state.pop(flow.uid, None)
        if state is not None and not state.emitted and (state.client or state.server):
            self._emit(flow, state)

    def _hello_bytes(self, stream: _Stream) -> bytes | None:
        """The stream's leading bytes if they may be TLS; None to give up on the direction."""
        data = stream.contiguous()
        if looks_like_handshake(data[:3]):
            return data
        if stream.known_start or stream.added >= self.options.probe_segments:
            return None
        if len(data) >= 3 and data[0] in _OTHER_RECORD_TYPES and data[1] == 3 and data[2] <= 4:
            return None  # a TLS record, but not a handshake (an alert, say): no hello to read
        return b""  # the real first segment may still arrive

    def _read_client(self, flow: Flow, state: _TlsState, ts: float) -> None:
        data = self._hello_bytes(state.orig)
        try:
            hello = client_hello_from_records(data) if data else None
        except DecodeError as exc:
            logger.debug("%s: no ClientHello: %s", flow.uid, exc)
            data = None
            hello = None
        if hello is None:
            if data is None or state.orig.full:
                state.client_done = True
                state.orig.clear()
            return
        state.client, state.client_ts, state.client_done = hello, ts, True
        state.orig.clear()
        flow.service = "tls"
        if hello.server_name:
            flow.add_meta("sni", hello.server_name)
        for protocol in hello.alpn:
            flow.add_meta_item("alpn", protocol)
        prints = fingerprints(hello, "t")
        flow.add_meta("ja4", prints.ja4)
        flow.add_meta("ja3", prints.ja3_hash)

    def _read_server(self, flow: Flow, state: _TlsState, ts: float) -> None:
        data = self._hello_bytes(state.resp)
        try:
            hello = server_hello_from_records(data) if data else None
        except DecodeError as exc:
            logger.debug("%s: no ServerHello: %s", flow.uid, exc)
            data = None
            hello = None
        if hello is None:
            if data is None or state.resp.full:
                state.server_done = True
                state.resp.clear()
            return
        state.server, state.server_ts, state.server_done = hello, ts, True
        state.resp.clear()
        flow.service = "tls"
        flow.add_meta("tls_version", tls_version_name(hello.version))

    def _emit(self, flow: Flow, state: _TlsState) -> None:
        state.emitted = True
        client, server = state.client, state.server
        prints = fingerprints(client, "t") if client else None
        self.ctx.emit(
            TlsRecord(
                ts=state.client_ts if client is not None else state.server_ts,
                **conn(flow),
                server_name=client.server_name if client else None,
                alpn=client.alpn if client else (),
                version=tls_version_name(server.version) if server else None,
                client_versions=tuple(tls_version_name(v) for v in client.versions)
                if client
                else (),
                cipher=tls_cipher_name(server.cipher_suite) if server else None,
                ja3=prints.ja3 if prints else None,
                ja3_hash=prints.ja3_hash if prints else None,
                ja4=prints.ja4 if prints else None,
                established=server is not None,
                hello_retry=server.hello_retry_request if server else False,
            )
        )


__all__ = ["TlsAnalyzer", "TlsOptions", "TlsRecord"]
