"""DTLS over UDP: read the ClientHello and ServerHello of every flow into tls.jsonl records.

DTLS (RFC 6347 for 1.0 and 1.2, RFC 9147 for 1.3) is TLS for datagrams: WebRTC sessions
(a drone app's live stream to a browser or a cloud relay), VPNs and CoAP secure their UDP with
it. Its hellos are as plaintext as TLS's, so the server name, ALPN offer, versions, the chosen
cipher and the JA3/JA4 fingerprints (JA4 with the `d` prefix) are read as the TLS analyzer reads
them, and written as the same `tls` record, with a `DTLSv1.2`-style version.

The record layer differs: each record has a 13-byte header (content type, version, epoch,
sequence number, length: RFC 6347 4.1), several may share a datagram, and a handshake message
has a 12-byte header (type, length, message_seq, fragment_offset, fragment_length: RFC 6347
4.2.2) so that it can be cut into fragments over several records, which are put together here
by offset. DTLS 1.3 protects every record after the ServerHello under its unified header (first
bits `001`, RFC 9147 4); such a record says its sender has switched to encrypted records.

Either end may be the client (in WebRTC the ICE roles decide): the client is the sender of the
ClientHello. The handshake is `established`, as Zeek's ssl.log says it, when both sides have
switched to encrypted records and one more record comes. A flow starts being read at its first
datagram that begins with a plaintext handshake record (RFC 7983 5: STUN, RTP and other
datagrams of the same flow come before and between).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dronewatch.analyzers._tls_hello import (
    TLS_HANDSHAKE_CLIENT_HELLO,
    TLS_HANDSHAKE_SERVER_HELLO,
    ClientHello,
    ServerHello,
    fingerprints,
    parse_client_hello,
    parse_server_hello,
    tls_version_name,
)
from dronewatch.analyzers.tls import TlsRecord
from dronewatch.core.flow import IP_PROTO_UDP, Flow, Packet
from dronewatch.core.hooks import Context
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

DTLS_RECORD_HEADER = 13
"""Content type, version, epoch, sequence number and length (RFC 6347 4.1)."""
DTLS_HANDSHAKE_HEADER = 12
"""Type, length, message_seq, fragment_offset and fragment_length (RFC 6347 4.2.2)."""
DTLS_VERSIONS = frozenset((0xFEFF, 0xFEFD, 0xFEFC))
"""Record-layer versions: DTLS 1.0, 1.2 and 1.3 (a 1.3 record says 0xfefd, RFC 9147 4)."""

CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23
CONTENT_ACK = 26
"""DTLS 1.3's ACK records (RFC 9147 7)."""
CONTENT_TLS12_CID = 25
"""A DTLS 1.2 record with a connection ID (RFC 9146): encrypted, of a length not framed here."""
_PLAIN_TYPES = frozenset(
    (CONTENT_CHANGE_CIPHER_SPEC, CONTENT_ALERT, CONTENT_HANDSHAKE, CONTENT_APPLICATION_DATA)
)
MAX_FRAGMENTS = 64
"""Fragments kept of one handshake message; a message cut finer is not read (a hello is sent in
one to a few, RFC 6347 4.2.3, and each fragment added costs a pass over those kept)."""
_UNIFIED_MASK, _UNIFIED_BITS = 0xE0, 0x20
"""DTLS 1.3's unified header: the first three bits `001` (RFC 9147 4)."""


@dataclass(frozen=True, slots=True)
class DtlsOptions:
    """Tunables of the DTLS analyzer."""

    max_handshake_bytes: int = 64 * 1024
    """Most bytes of one handshake message put together from its fragments; a hello announced
    longer is not read."""
    max_records: int = 64
    """Records read after both hellos while waiting for the handshake to end."""


@dataclass(frozen=True, slots=True)
class DtlsRecordHeader:
    """One plaintext-framed DTLS record (RFC 6347 4.1)."""

    content_type: int
    version: int
    epoch: int
    fragment: bytes


def dtls_records(datagram: bytes) -> tuple[list[DtlsRecordHeader], int]:
    """The 13-byte-header records at the start of a datagram, and how many DTLS 1.3 records
    with the unified header (RFC 9147 4) follow them (each such record, and a DTLS 1.2 record
    with a connection ID, is encrypted and ends the reading: its length may not be framed).

    Raises `DecodeError` when a record is cut or the bytes are not DTLS records."""
    out: list[DtlsRecordHeader] = []
    pos = 0
    while pos < len(datagram):
        first = datagram[pos]
        if first & _UNIFIED_MASK == _UNIFIED_BITS or first == CONTENT_TLS12_CID:
            return out, 1
        if len(datagram) - pos < DTLS_RECORD_HEADER:
            raise DecodeError(f"dtls: record header cut at offset {pos}")
        version = datagram[pos + 1] << 8 | datagram[pos + 2]
        if first not in _PLAIN_TYPES and first != CONTENT_ACK or version not in DTLS_VERSIONS:
            raise DecodeError(f"dtls: content type {first}, version 0x{version:04x}")
        epoch = datagram[pos + 3] << 8 | datagram[pos + 4]
        length = datagram[pos + 11] << 8 | datagram[pos + 12]
        end = pos + DTLS_RECORD_HEADER + length
        if end > len(datagram):
            raise DecodeError(f"dtls: record of {length} bytes runs past the datagram")
        out.append(DtlsRecordHeader(first, version, epoch, datagram[pos + 13 : end]))
        pos = end
    return out, 0


def may_precede_handshake(first: int) -> bool:
    """Whether a datagram with this first byte may come before a DTLS handshake on its flow.

    DTLS shares a flow with STUN, ZRTP, TURN channels, QUIC and RTP by the first byte (RFC 7983,
    updated by RFC 9443): 0-3 STUN, 16-19 ZRTP, 20-63 DTLS, 64-79 TURN channel data, 80-127 and
    192-255 QUIC, 128-191 RTP and RTCP. Before a handshake come ICE's STUN checks (WebRTC), DTLS
    records (a handshake whose start the capture missed), or data relayed in a TURN channel;
    ZRTP keys media without DTLS, and RTP is keyed by a handshake already done (DTLS-SRTP)."""
    return first <= 3 or 20 <= first <= 79


def starts_handshake(datagram: bytes) -> bool:
    """Whether a datagram begins with a plaintext DTLS handshake record (epoch 0) carrying the
    start of a ClientHello, a ServerHello or a HelloVerifyRequest."""
    return (
        len(datagram) >= DTLS_RECORD_HEADER + DTLS_HANDSHAKE_HEADER
        and datagram[0] == CONTENT_HANDSHAKE
        and (datagram[1] << 8 | datagram[2]) in DTLS_VERSIONS
        and datagram[3:5] == b"\x00\x00"
        and datagram[13] in (TLS_HANDSHAKE_CLIENT_HELLO, TLS_HANDSHAKE_SERVER_HELLO, 3)
        and datagram[19:22] == b"\x00\x00\x00"  # the first fragment of its message
    )


class _Message:
    """One handshake message, put together from its fragments by offset."""

    __slots__ = ("msg_type", "length", "chunks")

    def __init__(self, msg_type: int, length: int) -> None:
        self.msg_type = msg_type
        self.length = length
        self.chunks: dict[int, bytes] = {}

    def add(self, offset: int, data: bytes) -> bytes | None:
        """Add a fragment; the whole message, with TLS's 4-byte header, once it is complete.
        Raises `DecodeError` past `MAX_FRAGMENTS` fragments."""
        if offset not in self.chunks and len(self.chunks) >= MAX_FRAGMENTS:
            raise DecodeError(f"dtls: handshake message in more than {MAX_FRAGMENTS} fragments")
        if len(self.chunks.get(offset, b"")) < len(data):
            self.chunks[offset] = data
        body = bytearray()
        for start in sorted(self.chunks):
            if start > len(body):
                return None
            chunk = self.chunks[start]
            body += chunk[len(body) - start :]
        if len(body) < self.length:
            return None
        head = bytes([self.msg_type]) + self.length.to_bytes(3, "big")
        return head + bytes(body[: self.length])


class _Side:
    """One endpoint of a flow: its handshake messages and whether it has switched to
    encrypted records."""

    __slots__ = ("messages", "done", "encrypted")

    def __init__(self) -> None:
        self.messages: dict[int, _Message] = {}
        """Messages being put together, by message_seq."""
        self.done: set[int] = set()
        """message_seq of the messages read (retransmissions are passed over)."""
        self.encrypted = False


class _DtlsState:
    """What the analyzer knows about one UDP flow that carries DTLS."""

    __slots__ = (
        "sides",
        "client_key",
        "client",
        "retry",
        "server",
        "hello_retry",
        "ts",
        "records",
        "established",
        "emitted",
    )

    def __init__(self) -> None:
        self.sides: dict[tuple[bytes, int], _Side] = {}
        self.client_key: tuple[bytes, int] | None = None
        """(address, port) of the client, once its ClientHello is read."""
        self.client: ClientHello | None = None
        self.retry: ClientHello | None = None
        """The ClientHello sent in answer to a HelloRetryRequest (DTLS 1.3)."""
        self.server: ServerHello | None = None
        self.hello_retry = False
        self.ts = 0.0
        self.records = 0
        self.established = False
        self.emitted = False


class DtlsAnalyzer:
    """Decode DTLS ClientHello/ServerHello pairs on any UDP port into tls.jsonl records."""

    name = "dtls"
    wants_ports: frozenset[int] = frozenset()
    """The ports `wants` reads (`WantsHook`)."""

    def __init__(self, ctx: Context, options: DtlsOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or DtlsOptions()
        self._state: dict[str, _DtlsState] = {}  # keyed by flow.uid, dropped in flow_end

    def wants(self, flow: Flow) -> bool:
        """DTLS runs over UDP."""
        return flow.proto == IP_PROTO_UDP

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Read the datagram's records: the hellos, then each side's switch to encrypted records
        until the handshake is over."""
        if flow.proto != IP_PROTO_UDP or not pkt.payload:
            return
        state = self._state.get(flow.uid)
        if state is None:
            if flow.service and flow.service != "dtls":
                flow.decline(self.name)  # another protocol was recognised on it
                return
            if not starts_handshake(pkt.payload):
                if not may_precede_handshake(pkt.payload[0]):
                    flow.decline(self.name)
                return  # STUN, a DTLS record of a handshake out of view, TURN channel data
            state = self._state[flow.uid] = _DtlsState()
        if state.emitted:
            return
        try:
            records, protected = dtls_records(pkt.payload)
        except DecodeError as exc:
            logger.debug("%s: not DTLS records: %s", flow.uid, exc)
            records, protected = [], 0
        key = (pkt.src, pkt.sport)
        side = state.sides.setdefault(key, _Side())
        other = next((s for k, s in state.sides.items() if k != key), None)
        for record in records:
            self._record(flow, state, key, side, other, record, pkt.ts)
        if protected:
            self._switch(state, side, other)
        if state.established or state.records > self.options.max_records:
            self._finish(flow, state)
        else:
            self._wait_or_read(flow, state, key, other)

    def _wait_or_read(
        self,
        flow: Flow,
        state: _DtlsState,
        key: tuple[bytes, int],
        other: _Side | None,
    ) -> None:
        """Say whether the analyzer waits (`Flow.wait`): the client's ClientHello is read and
        its server has sent nothing, so only a ServerHello (or a HelloVerifyRequest) lets it
        read on: it waits for it from the server's end, and the engine stops a flow whose
        server never comes into view after its bound (`EngineOptions.stall_packets`). The
        client's datagrams meanwhile (its hello resent, a flight it sends early) count; once
        any datagram came from the other end it never waits again."""
        client = state.client_key
        if state.client is None or client is None or other is not None or key != client:
            flow.stop_waiting(self.name)
            return
        server_end = "resp" if client == (flow.orig_h, flow.orig_p) else "orig"
        flow.wait(self.name, "ServerHello", server_end)

    def flow_end(self, flow: Flow) -> None:
        """Write the record of a handshake seen only in part, and drop the flow's state."""
        state = self._state.pop(flow.uid, None)
        if state is not None and not state.emitted and (state.client or state.server):
            self._emit(flow, state)

    def _switch(self, state: _DtlsState, side: _Side, other: _Side | None) -> None:
        """A record of `side` came that is encrypted, or that switches it to encryption: the
        handshake is over when the other side switched before it (Zeek's rule, as for TLS)."""
        if state.client is not None or state.server is not None:
            state.records += 1
        if side.encrypted and other is not None and other.encrypted:
            state.established = True
        side.encrypted = True

    def _record(
        self,
        flow: Flow,
        state: _DtlsState,
        key: tuple[bytes, int],
        side: _Side,
        other: _Side | None,
        record: DtlsRecordHeader,
        ts: float,
    ) -> None:
        if record.content_type in (CONTENT_CHANGE_CIPHER_SPEC, CONTENT_APPLICATION_DATA) or (
            record.epoch > 0
        ):
            self._switch(state, side, other)  # a ChangeCipherSpec, or a record protected by it
            return
        if record.content_type != CONTENT_HANDSHAKE:
            return
        data = record.fragment
        while len(data) >= DTLS_HANDSHAKE_HEADER:
            msg_type = data[0]
            length = int.from_bytes(data[1:4], "big")
            seq = data[4] << 8 | data[5]
            offset = int.from_bytes(data[6:9], "big")
            frag_len = int.from_bytes(data[9:12], "big")
            fragment = data[12 : 12 + frag_len]
            data = data[12 + frag_len :]
            if len(fragment) != frag_len or offset + frag_len > length:
                return  # not a well-formed fragment: the record's other bytes are not read
            if msg_type not in (TLS_HANDSHAKE_CLIENT_HELLO, TLS_HANDSHAKE_SERVER_HELLO):
                continue
            if seq in side.done or length > self.options.max_handshake_bytes:
                continue
            message = side.messages.setdefault(seq, _Message(msg_type, length))
            if message.msg_type != msg_type or message.length != length:
                continue
            try:
                whole = message.add(offset, fragment)
            except DecodeError as exc:
                logger.debug("%s: %s", flow.uid, exc)
                del side.messages[seq]
                side.done.add(seq)  # not read: its later fragments are passed over
                continue
            if whole is None:
                continue
            del side.messages[seq]
            side.done.add(seq)
            self._hello(flow, state, key, whole, ts)

    def _hello(
        self, flow: Flow, state: _DtlsState, key: tuple[bytes, int], message: bytes, ts: float
    ) -> None:
        try:
            if message[0] == TLS_HANDSHAKE_CLIENT_HELLO:
                hello = parse_client_hello(message, dtls=True)
                if state.client is None:
                    state.client, state.client_key, state.ts = hello, key, ts
                    self._publish(flow, hello)
                elif state.hello_retry and state.retry is None and key == state.client_key:
                    state.retry = hello
            else:
                server = parse_server_hello(message)
                if server.hello_retry_request:
                    state.hello_retry = True
                if state.server is None or state.server.hello_retry_request:
                    state.server = server
                    if state.client is None:
                        state.ts = ts
                    if not server.hello_retry_request:
                        flow.add_meta("tls_version", tls_version_name(server.version))
                flow.service = "dtls"
        except DecodeError as exc:
            logger.debug("%s: DTLS hello does not parse: %s", flow.uid, exc)

    @staticmethod
    def _publish(flow: Flow, hello: ClientHello) -> None:
        flow.service = "dtls"
        if hello.server_name:
            flow.add_meta("sni", hello.server_name)
        for protocol in hello.alpn:
            flow.add_meta_item("alpn", protocol)
        prints = fingerprints(hello, "d")
        flow.add_meta("ja4", prints.ja4)
        flow.add_meta("ja3", prints.ja3_hash)

    def _finish(self, flow: Flow, state: _DtlsState) -> None:
        if state.client or state.server:
            self._emit(flow, state)
        state.emitted = True
        state.sides.clear()
        flow.decline(self.name)

    def _emit(self, flow: Flow, state: _DtlsState) -> None:
        state.emitted = True
        self.ctx.emit(
            TlsRecord.of_handshake(
                flow,
                state.ts,
                state.client,
                state.server,
                retry=state.retry,
                transport="d",
                established=state.established,
                hello_retry=state.hello_retry,
            )
        )


__all__ = [
    "DtlsAnalyzer",
    "DtlsOptions",
    "MAX_FRAGMENTS",
    "DtlsRecordHeader",
    "dtls_records",
    "starts_handshake",
]
