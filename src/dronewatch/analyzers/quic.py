"""QUIC: decrypt the Initial packets of both ends and read the TLS hellos into quic.jsonl.

Initial packets are encrypted, but with keys anyone can derive from the Destination Connection
ID the client chose (RFC 9001 section 5.2, RFC 9369 section 3.3 for version 2), so the server
name, ALPN offer and JA4 fingerprint of the client's ClientHello, and the TLS version and cipher
suite of the server's ServerHello, are visible to a passive observer. Only the first few Initial
packets of each end are decrypted.

A client's long-header packet of a version the analyzer has no keys for (a draft, a vendor's
own version, a future one), sent to one of QUIC's ports, is logged with what the
version-independent header shows (RFC 8999 5.1: version and connection IDs), as Zeek logs it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import ClassVar

from dronewatch.analyzers._tls_hello import (
    TLS_HANDSHAKE_CLIENT_HELLO,
    TLS_HANDSHAKE_SERVER_HELLO,
    ClientHello,
    ServerHello,
    fingerprints,
    parse_client_hello,
    parse_server_hello,
    tls_cipher_name,
    tls_version_name,
)
from dronewatch.core.flow import IP_PROTO_UDP, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

QUIC_VERSION_1 = 0x00000001
QUIC_VERSION_2 = 0x6B3343CF

# RFC 9001 5.2 and RFC 9369 3.3.1.
QUIC_V1_INITIAL_SALT = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
QUIC_V2_INITIAL_SALT = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")

QUIC_FRAME_PADDING = 0x00
QUIC_FRAME_PING = 0x01
QUIC_FRAME_ACK = 0x02
QUIC_FRAME_ACK_ECN = 0x03
QUIC_FRAME_CRYPTO = 0x06

QUIC_MAX_CID = 20
"""Longest connection ID in versions 1 and 2 (RFC 9000 17.2)."""

QUIC_FIXED_BIT = 0x40
_OPENING_BITS = 0x80 | QUIC_FIXED_BIT
"""The bits of a client's first packet on a connection: a long header with the fixed bit set."""
"""The second bit of the first byte, 1 in every packet of versions 1 and 2 (RFC 9000 17.2) and
of their drafts; required of a packet of an unknown version before it is taken for QUIC."""
QUIC_VERSION_NEGOTIATION = 0x00000000
"""Version field of a Version Negotiation packet (RFC 8999 6), sent by servers."""


@dataclass(frozen=True, slots=True)
class _VersionParams:
    salt: bytes
    initial_type: int
    """Long Header type bits of an Initial packet."""
    retry_type: int
    labels: tuple[bytes, bytes, bytes]
    """HKDF labels for the packet key, IV and header-protection key."""
    name: str


_VERSIONS = {
    QUIC_VERSION_1: _VersionParams(
        QUIC_V1_INITIAL_SALT, 0b00, 0b11, (b"quic key", b"quic iv", b"quic hp"), "1"
    ),
    # RFC 9369 3.2: every Long Header type moved; Initial is 0b01, Retry 0b00.
    QUIC_VERSION_2: _VersionParams(
        QUIC_V2_INITIAL_SALT, 0b01, 0b00, (b"quicv2 key", b"quicv2 iv", b"quicv2 hp"), "2"
    ),
}


@dataclass(frozen=True, slots=True)
class QuicOptions:
    """Tunables of the QUIC analyzer."""

    max_initial_packets: int = 8
    """Initial packets per flow to try to decrypt before giving up; and datagrams read before a
    client's first Initial of a version with keys (after long headers of other versions, or
    from the server alone: that Initial out of view), past which the flow is given up; and
    datagrams of the server read for its ServerHello."""
    max_crypto_bytes: int = 64 * 1024
    """Highest CRYPTO stream offset kept while reassembling a hello."""
    ports: tuple[int, ...] = (443, 853, 784)
    """UDP server ports where a client's long-header packet of a version the analyzer cannot
    decrypt is logged with its version and connection IDs (HTTP/3, DNS over QUIC, as Zeek's
    QUIC ports); on other ports only versions 1 and 2 are taken for QUIC."""


@dataclass(frozen=True, slots=True)
class QuicRecord(ConnRecord):
    """The TLS handshake of a QUIC connection: the ClientHello, read from the client's Initial
    packets, and what the server chose in its ServerHello, read from the server's.

    `ts` is the time of the first client Initial packet that decrypted. The record is written
    once the server's ServerHello is read, or its Initials were given up (not in view, not
    decrypting), or when the flow ends.
    """

    log: ClassVar[str] = "quic"
    version: str
    """QUIC version: `1`, `2`, or the hex value of a version the analyzer cannot decrypt
    (`0x10010000`; then only `dcid` and `scid` are known)."""
    dcid: str
    """Destination Connection ID of the client's first Initial packet, hex."""
    scid: str = ""
    """Source Connection ID the client chose, hex."""
    server_name: str | None = None
    """Host name from the ClientHello server_name extension (SNI)."""
    alpn: tuple[str, ...] = ()
    """Application protocols the client offered (`h3`)."""
    ja4: str | None = None
    """FoxIO JA4 fingerprint of the ClientHello, with the `q` prefix."""
    server_scid: str = ""
    """Source Connection ID the server chose, hex, from its first Initial that decrypted."""
    tls_version: str | None = None
    """TLS version the server chose in its ServerHello (`TLSv1.3`); None when no ServerHello
    was read (the server's Initials not in view)."""
    cipher: str | None = None
    """Cipher suite the server chose in its ServerHello: IANA name when known, else hex."""


@dataclass(frozen=True, slots=True)
class InitialKeys:
    """Packet protection keys for one direction of the Initial packets."""

    key: bytes
    iv: bytes
    hp: bytes


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    # `cryptography` is imported where an Initial is first decrypted, not with the analyzer: a
    # capture without QUIC (a drone's Wi-Fi link) never needs it, and it is 20 ms of start-up.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    # RFC 8446 7.1 HkdfLabel: uint16 length, opaque label<7..255>, opaque context<0..255>.
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(secret)


def client_initial_keys(dcid: bytes, version: int) -> InitialKeys:
    """Keys protecting the client's Initial packets, derived from the client-chosen DCID."""
    return _initial_keys(dcid, version, b"client in")


def server_initial_keys(dcid: bytes, version: int) -> InitialKeys:
    """Keys protecting the server's Initial packets, derived from the same client-chosen DCID
    (RFC 9001 5.2: `server in`)."""
    return _initial_keys(dcid, version, b"server in")


def _initial_keys(dcid: bytes, version: int, side: bytes) -> InitialKeys:
    params = _VERSIONS.get(version)
    if params is None:
        raise DecodeError(f"quic: no Initial keys for version 0x{version:08x}")
    # HKDF-Extract is HMAC with the salt as key (RFC 5869 2.2).
    initial_secret = hmac.new(params.salt, dcid, hashlib.sha256).digest()
    secret = _expand_label(initial_secret, side, 32)
    key_label, iv_label, hp_label = params.labels
    return InitialKeys(
        key=_expand_label(secret, key_label, 16),
        iv=_expand_label(secret, iv_label, 12),
        hp=_expand_label(secret, hp_label, 16),
    )


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A QUIC variable-length integer (RFC 9000 16) at `pos`, and the position after it."""
    if pos >= len(data):
        raise DecodeError("quic: truncated variable-length integer")
    size = 1 << (data[pos] >> 6)
    if pos + size > len(data):
        raise DecodeError("quic: truncated variable-length integer")
    value = int.from_bytes(data[pos : pos + size], "big") & ((1 << (8 * size - 2)) - 1)
    return value, pos + size


@dataclass(frozen=True, slots=True)
class LongHeader:
    """The parts of a Long Header packet read before removing header protection."""

    version: int
    packet_type: int
    """The two type bits as sent; their meaning depends on the version."""
    dcid: bytes
    scid: bytes
    token: bytes
    pn_offset: int
    """Offset of the protected packet number from the start of the datagram."""
    end: int
    """Offset just past this packet in the datagram (coalesced packets follow)."""
    is_initial: bool


def parse_long_header(datagram: bytes, pos: int = 0) -> LongHeader:
    """Read the Long Header packet of QUIC version 1 or 2 that starts at `pos`."""
    if len(datagram) - pos < 7 or not datagram[pos] & 0x80:
        raise DecodeError("quic: not a long header packet")
    first = datagram[pos]
    version = int.from_bytes(datagram[pos + 1 : pos + 5], "big")
    params = _VERSIONS.get(version)
    if params is None:
        raise DecodeError(f"quic: unsupported version 0x{version:08x}")
    cursor = pos + 5
    dcid_len = datagram[cursor]
    if dcid_len > QUIC_MAX_CID:
        raise DecodeError(f"quic: destination connection ID of {dcid_len} bytes")
    dcid = datagram[cursor + 1 : cursor + 1 + dcid_len]
    cursor += 1 + dcid_len
    if cursor >= len(datagram) or len(dcid) != dcid_len:
        raise DecodeError("quic: truncated connection IDs")
    scid_len = datagram[cursor]
    if scid_len > QUIC_MAX_CID:
        raise DecodeError(f"quic: source connection ID of {scid_len} bytes")
    scid = datagram[cursor + 1 : cursor + 1 + scid_len]
    cursor += 1 + scid_len
    if len(scid) != scid_len:
        raise DecodeError("quic: truncated connection IDs")
    packet_type = (first >> 4) & 0x03
    if packet_type == params.retry_type:  # no Length field: a Retry fills the datagram
        return LongHeader(version, packet_type, dcid, scid, b"", cursor, len(datagram), False)
    token = b""
    is_initial = packet_type == params.initial_type
    if is_initial:
        token_len, cursor = _varint(datagram, cursor)
        token = datagram[cursor : cursor + token_len]
        if len(token) != token_len:
            raise DecodeError("quic: truncated token")
        cursor += token_len
    length, cursor = _varint(datagram, cursor)
    if cursor + length > len(datagram):
        raise DecodeError(f"quic: packet length {length} runs past the datagram")
    return LongHeader(version, packet_type, dcid, scid, token, cursor, cursor + length, is_initial)


def decrypt_initial(
    datagram: bytes, header: LongHeader, keys: InitialKeys, pos: int = 0
) -> tuple[int, bytes]:
    """Remove header protection and decrypt an Initial packet; returns (packet number, frames).

    `pos` is where the packet starts in `datagram`. The packet number is the truncated one, which
    is the real one for the first packets of a connection.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    pn_offset, end = header.pn_offset, header.end
    # RFC 9001 5.4.2: the sample starts 4 bytes after the packet number field starts.
    sample = datagram[pn_offset + 4 : pn_offset + 20]
    if len(sample) != 16 or pn_offset + 20 > end:
        raise DecodeError("quic: packet too short to sample for header protection")
    encryptor = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = encryptor.update(sample) + encryptor.finalize()
    first = datagram[pos] ^ (mask[0] & 0x0F)  # long header: the low 4 bits are protected
    pn_len = (first & 0x03) + 1
    protected = datagram[pn_offset : pn_offset + pn_len]
    pn_bytes = bytes(b ^ m for b, m in zip(protected, mask[1 : 1 + pn_len], strict=True))
    packet_number = int.from_bytes(pn_bytes, "big")
    aad = bytes([first]) + datagram[pos + 1 : pn_offset] + pn_bytes
    nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(12, "big")
    ciphertext = datagram[pn_offset + pn_len : end]  # at least 16 bytes: the sample check
    try:
        return packet_number, AESGCM(keys.key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise DecodeError("quic: Initial packet does not authenticate") from None


def crypto_frames(payload: bytes) -> list[tuple[int, bytes]]:
    """The (offset, data) of each CRYPTO frame, reading PADDING, PING and ACK frames past.

    Reading stops at the first other frame type; frames after it are not looked at.
    """
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(payload):
        frame_type, after = _varint(payload, pos)
        if frame_type == QUIC_FRAME_PADDING:
            # Client Initials are padded to 1200 bytes: skip the whole run of zeros at once.
            pos = len(payload) - len(payload[after:].lstrip(b"\x00"))
        elif frame_type == QUIC_FRAME_PING:
            pos = after
        elif frame_type in (QUIC_FRAME_ACK, QUIC_FRAME_ACK_ECN):
            # RFC 9000 19.3: largest, delay, range count, first range, then gap/length pairs.
            _, pos = _varint(payload, after)
            _, pos = _varint(payload, pos)
            ranges, pos = _varint(payload, pos)
            _, pos = _varint(payload, pos)
            if ranges > len(payload):
                raise DecodeError(f"quic: ACK frame with {ranges} ranges")
            for _ in range(2 * ranges + (3 if frame_type == QUIC_FRAME_ACK_ECN else 0)):
                _, pos = _varint(payload, pos)
        elif frame_type == QUIC_FRAME_CRYPTO:
            offset, pos = _varint(payload, after)
            length, pos = _varint(payload, pos)
            data = payload[pos : pos + length]
            if len(data) != length:
                raise DecodeError("quic: CRYPTO frame runs past the packet")
            found.append((offset, data))
            pos += length
        else:
            break
    return found


class _CryptoStream:
    """The Initial CRYPTO stream, reassembled by offset."""

    __slots__ = ("chunks", "limit")

    def __init__(self, limit: int) -> None:
        self.chunks: dict[int, bytes] = {}
        self.limit = limit

    def add(self, offset: int, data: bytes) -> None:
        if not data or offset + len(data) > self.limit:
            return
        if len(self.chunks.get(offset, b"")) < len(data):
            self.chunks[offset] = data

    def contiguous(self) -> bytes:
        out = bytearray()
        for offset in sorted(self.chunks):
            if offset > len(out):
                break
            chunk = self.chunks[offset]
            if offset + len(chunk) > len(out):
                out += chunk[len(out) - offset :]
        return bytes(out)

    def client_hello(self) -> ClientHello | None:
        """The ClientHello at the start of the stream, once all of it is there."""
        data = self.contiguous()
        if len(data) < 4:
            return None
        needed = self._needed(data, 0)
        if len(data) < needed:
            if data[0] != TLS_HANDSHAKE_CLIENT_HELLO:
                raise DecodeError(f"quic: CRYPTO stream starts with handshake type {data[0]}")
            return None
        return parse_client_hello(data[:needed])

    def server_hello(self) -> ServerHello | None:
        """The server's ServerHello, once all of it is there: the first message of its Initial
        stream, or the one after a HelloRetryRequest (RFC 8446 4.1.4; QUIC carries both, and
        the client's second ClientHello, in Initial packets, RFC 9001 4.1.4)."""
        data = self.contiguous()
        pos = 0
        while len(data) - pos >= 4:
            if data[pos] != TLS_HANDSHAKE_SERVER_HELLO:
                raise DecodeError(f"quic: server's CRYPTO stream holds handshake type {data[pos]}")
            needed = self._needed(data, pos)
            if len(data) - pos < needed:
                return None
            hello = parse_server_hello(data[pos : pos + needed])
            if not hello.hello_retry_request:
                return hello
            pos += needed
        return None

    def _needed(self, data: bytes, pos: int) -> int:
        """Bytes of the handshake message at `pos`, its header included."""
        needed = 4 + int.from_bytes(data[pos + 1 : pos + 4], "big")
        if pos + needed > self.limit:
            raise DecodeError(f"quic: handshake message of {needed} bytes")
        return needed


class _QuicState:
    """What the analyzer knows about one UDP flow that carries QUIC."""

    __slots__ = (
        "version",
        "dcid",
        "scid",
        "dcids",
        "keys",
        "crypto",
        "tried",
        "ts",
        "decrypted",
        "done",
        "hello",
        "server_crypto",
        "server_seen",
        "server_scid",
        "server_hello",
        "server_done",
        "retried",
        "emitted",
    )

    def __init__(self, limit: int) -> None:
        self.version = 0
        self.dcid = b""
        """DCID whose keys decrypted the first Initial packet."""
        self.scid = b""
        self.dcids: dict[bytes, None] = {}
        """Every DCID whose keys decrypted a client Initial, in order (a Retry adds one): the
        server's Initials are protected with keys from one of them."""
        self.keys: dict[tuple[bytes, int, bool], InitialKeys] = {}
        """Keys derived so far, by (DCID, version, whether the server's)."""
        self.crypto = _CryptoStream(limit)
        self.tried = 0
        """Initial packets we tried to decrypt."""
        self.ts = 0.0
        """Time of the first Initial packet that decrypted."""
        self.decrypted = False
        self.done = False
        """The client's side is read: its ClientHello, or given up."""
        self.hello: ClientHello | None = None
        self.server_crypto = _CryptoStream(limit)
        self.server_seen = 0
        """Datagrams of the server read for its ServerHello."""
        self.server_scid = b""
        self.server_hello: ServerHello | None = None
        self.server_done = False
        """The server's side is read: its ServerHello, or given up."""
        self.retried = False
        """This attempt follows a Retry (a client takes one Retry per connection)."""
        self.emitted = False

    def keys_for(self, dcid: bytes, version: int, server: bool = False) -> InitialKeys:
        keys = self.keys.get((dcid, version, server))
        if keys is None:
            derive = server_initial_keys if server else client_initial_keys
            keys = self.keys[(dcid, version, server)] = derive(dcid, version)
        return keys


def parse_invariant_header(datagram: bytes) -> tuple[int, bytes, bytes]:
    """Version, destination and source connection IDs of a long-header packet of any version,
    from the fields every version keeps (RFC 8999 5.1: connection IDs of up to 255 bytes)."""
    if len(datagram) < 7 or not datagram[0] & 0x80:
        raise DecodeError("quic: not a long header packet")
    version = int.from_bytes(datagram[1:5], "big")
    dcid_len = datagram[5]
    dcid = datagram[6 : 6 + dcid_len]
    if len(dcid) != dcid_len or 6 + dcid_len >= len(datagram):
        raise DecodeError("quic: truncated connection IDs")
    scid_len = datagram[6 + dcid_len]
    scid = datagram[7 + dcid_len : 7 + dcid_len + scid_len]
    if len(scid) != scid_len:
        raise DecodeError("quic: truncated connection IDs")
    return version, bytes(dcid), bytes(scid)


def _is_quic_long_header(payload: bytes) -> bool:
    return (
        len(payload) >= 7
        and bool(payload[0] & 0x80)
        and int.from_bytes(payload[1:5], "big") in _VERSIONS
    )


class QuicAnalyzer:
    """Decrypt QUIC v1/v2 client Initial packets and log the ClientHello into quic.jsonl (of
    other versions, on QUIC's ports, what the long header shows)."""

    name = "quic"
    wants_ports: frozenset[int] = frozenset()
    """The ports `wants` reads (`WantsHook`)."""

    def __init__(self, ctx: Context, options: QuicOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or QuicOptions()
        self._state: dict[str, _QuicState] = {}  # keyed by flow.uid, dropped in flow_end
        self._before: dict[str, int] = {}
        """Datagrams read of each flow before its first Initial of a version with keys."""

    def wants(self, flow: Flow) -> bool:
        """QUIC runs over UDP."""
        return flow.proto == IP_PROTO_UDP

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Decrypt the client's Initial packets until the ClientHello is complete, and the
        server's until its ServerHello is."""
        if flow.proto != IP_PROTO_UDP or not pkt.payload:
            return
        state = self._state.get(flow.uid)
        if pkt.src != flow.orig_h or pkt.sport != flow.orig_p:
            # Before the client's Initial, the server speaking says that Initial is out of view.
            if state is None:
                self._wait_for_initial(flow)
            elif not state.server_done:
                self._server_datagram(flow, state, pkt)
            return
        if state is None and flow.service and flow.service != "quic":
            flow.decline(self.name)  # another protocol was recognised on it
            return
        if state is None:
            if not _is_quic_long_header(pkt.payload):
                if pkt.payload[0] & _OPENING_BITS != _OPENING_BITS:
                    # A client opens a QUIC connection with long-header packets whose fixed bit
                    # is set (RFC 9000 17.2; the short header of 17.3 only once the handshake is
                    # done, the fixed bit greased only after the server allowed it, RFC 9287):
                    # its Initial is out of view, or this is no QUIC. A long header of a version
                    # without Initial keys may be followed by one of a version negotiated.
                    flow.decline(self.name)
                elif flow.resp_p in self.options.ports:
                    self._unhandled_version(flow, pkt)
                else:
                    self._wait_for_initial(flow)
                return
            state = self._state[flow.uid] = _QuicState(self.options.max_crypto_bytes)
            self._before.pop(flow.uid, None)
        if state.done:
            return
        hello: ClientHello | None = None
        try:
            hello = self._datagram(state, pkt)
        except DecodeError as exc:
            logger.debug("%s: no QUIC ClientHello: %s", flow.uid, exc)
            state.done = True
        if hello is not None:
            state.done = True
            state.hello = hello
            self._publish(flow, state)
        elif state.tried >= self.options.max_initial_packets:
            state.done = True
        if state.done:
            state.crypto.chunks.clear()
            if not state.decrypted:
                state.server_done = True  # no client Initial decrypted: nothing to log
            self._settle(flow, state)

    def _settle(self, flow: Flow, state: _QuicState) -> None:
        """Once both sides are read, log the handshake and let the flow go; with the client's
        side read, wait for the server's Initial (a flow seen one way stops being inspected
        after the engine's `stall_packets`, and its record is written when it ends)."""
        if not state.done:
            return
        if state.server_done:
            if state.decrypted and not state.emitted:
                self._emit(flow, state)
            flow.decline(self.name)
        else:
            flow.wait(self.name, "the server's Initial", "resp")

    def _server_datagram(self, flow: Flow, state: _QuicState, pkt: Packet) -> None:
        """Walk the coalesced packets of a server datagram; the CRYPTO data of its Initial
        packets goes to the server's stream, until its ServerHello is there. Up to
        `max_initial_packets` datagrams are read (a Retry, Handshake and 1-RTT packets carry
        no ServerHello)."""
        state.server_seen += 1
        datagram = pkt.payload
        pos = 0
        try:
            while pos < len(datagram):
                try:
                    header = parse_long_header(datagram, pos)
                except DecodeError:
                    break  # short header packet, padding or junk: nothing more to read
                if header.is_initial:
                    self._server_initial(state, header, datagram, pos)
                elif header.packet_type == _VERSIONS[header.version].retry_type:
                    self._retry(flow, state, header)
                    return
                pos = header.end
            hello = state.server_crypto.server_hello()
        except DecodeError as exc:
            logger.debug("%s: no QUIC ServerHello: %s", flow.uid, exc)
            hello = None
            state.server_done = True
        if hello is not None:
            state.server_hello = hello
            state.server_done = True
        elif state.server_seen >= self.options.max_initial_packets:
            state.server_done = True
        if state.server_done:
            state.server_crypto.chunks.clear()
            self._settle(flow, state)

    def _retry(self, flow: Flow, state: _QuicState, header: LongHeader) -> None:
        """A Retry ends the handshake attempt (RFC 9000 17.2.5): its record is written, with no
        server side, and the client's next Initials, sent toward the Retry's source CID and
        protected, as the server's are, with keys from it (RFC 9001 5.2), are a new attempt
        of their own record (as Zeek logs them)."""
        if state.server_seen > 1 or state.retried or not state.decrypted:
            # A Retry is the server's first packet, and one per connection (RFC 9000 17.2.5.2):
            # a client drops another, and so does the analyzer.
            return
        if not state.emitted:
            self._emit(flow, state)
        again = self._state[flow.uid] = _QuicState(self.options.max_crypto_bytes)
        again.dcids[header.scid] = None
        again.retried = True
        flow.stop_waiting(self.name)

    def _server_initial(
        self, state: _QuicState, header: LongHeader, datagram: bytes, pos: int
    ) -> None:
        """Decrypt a server Initial with the keys of the DCIDs the client used, the newest first
        (after a Retry both ends take the keys of the client's new DCID, RFC 9001 5.2)."""
        if header.version != state.version:
            return  # a version the client did not open with (its keys would be other ones)
        for dcid in reversed(state.dcids):
            try:
                _, frames = decrypt_initial(
                    datagram, header, state.keys_for(dcid, header.version, True), pos
                )
            except DecodeError:
                continue
            break
        else:
            logger.debug("quic server Initial at offset %d does not decrypt", pos)
            return
        if not state.server_scid:
            state.server_scid = header.scid
        for offset, data in crypto_frames(frames):
            state.server_crypto.add(offset, data)

    def _wait_for_initial(self, flow: Flow) -> None:
        """Count a datagram that leaves the flow without a client Initial of a version with keys
        (a long header of another version, which a version negotiation may follow; the server
        speaking); the `max_initial_packets`-th gives the flow up: that Initial is not coming
        into view (Zeek's analyzer stops at such a flow's first packet)."""
        seen = self._before.get(flow.uid, 0) + 1
        if seen >= self.options.max_initial_packets:
            del self._before[flow.uid]
            flow.decline(self.name)
        else:
            self._before[flow.uid] = seen

    def flow_end(self, flow: Flow) -> None:
        """Log a connection whose ClientHello was never complete, and drop the flow's state."""
        self._before.pop(flow.uid, None)
        state = self._state.pop(flow.uid, None)
        if state is not None and state.decrypted and not state.emitted:
            self._emit(flow, state)

    def _unhandled_version(self, flow: Flow, pkt: Packet) -> None:
        """Log a client's long-header packet of a version without Initial keys: its version and
        connection IDs, once per flow. The flow's service is left as it is (nothing confirms
        QUIC), as Zeek leaves it."""
        try:
            version, dcid, scid = parse_invariant_header(pkt.payload)
        except DecodeError:
            return
        if version == QUIC_VERSION_NEGOTIATION:
            return  # a server's packet (`packet` declined one without the fixed bit already)
        state = self._state[flow.uid] = _QuicState(0)
        state.done = state.server_done = state.emitted = True
        flow.decline(self.name)
        self.ctx.emit(
            QuicRecord(
                ts=pkt.ts,
                **conn(flow),
                version=f"0x{version:08x}",
                dcid=dcid.hex(),
                scid=scid.hex(),
            )
        )

    def _datagram(self, state: _QuicState, pkt: Packet) -> ClientHello | None:
        """Walk the coalesced packets of one datagram; CRYPTO data goes to the flow's stream."""
        datagram = pkt.payload
        pos = 0
        while pos < len(datagram) and state.tried < self.options.max_initial_packets:
            try:
                header = parse_long_header(datagram, pos)
            except DecodeError:
                break  # short header packet, padding or junk: nothing more to read
            if header.is_initial:
                state.tried += 1
                self._initial(state, header, datagram, pos, pkt.ts)
            pos = header.end
        return state.crypto.client_hello()

    def _initial(
        self, state: _QuicState, header: LongHeader, datagram: bytes, pos: int, ts: float
    ) -> None:
        # Keys come from the DCID of the client's first Initial (RFC 9001 5.2), which later
        # packets no longer carry; after a Retry they come from the packet's own DCID.
        candidates = [state.dcid, header.dcid] if state.decrypted else [header.dcid]
        for dcid in dict.fromkeys(candidates):
            try:
                keys = state.keys_for(dcid, header.version)
                _, frames = decrypt_initial(datagram, header, keys, pos)
            except DecodeError:
                continue
            break
        else:
            logger.debug("quic Initial at offset %d does not decrypt", pos)
            return
        if not state.decrypted:
            state.decrypted, state.ts = True, ts
            state.version, state.dcid, state.scid = header.version, dcid, header.scid
        state.dcids[dcid] = None
        for offset, data in crypto_frames(frames):
            state.crypto.add(offset, data)

    def _publish(self, flow: Flow, state: _QuicState) -> None:
        """What the ClientHello tells the flow, as soon as it is read (the record waits for
        the server's side)."""
        hello = state.hello
        assert hello is not None
        flow.service = "quic"
        flow.add_meta("quic_version", _VERSIONS[state.version].name)
        if hello.server_name:
            flow.add_meta("quic_sni", hello.server_name)
            flow.add_meta("sni", hello.server_name)
        for protocol in hello.alpn:
            flow.add_meta_item("quic_alpn", protocol)
        flow.add_meta("ja4", fingerprints(hello, "q").ja4)

    def _emit(self, flow: Flow, state: _QuicState) -> None:
        state.emitted = True
        hello, server = state.hello, state.server_hello
        self.ctx.emit(
            QuicRecord(
                ts=state.ts,
                **conn(flow),
                version=_VERSIONS[state.version].name,
                dcid=state.dcid.hex(),
                scid=state.scid.hex(),
                server_name=hello.server_name if hello else None,
                alpn=hello.alpn if hello else (),
                ja4=fingerprints(hello, "q").ja4 if hello else None,
                server_scid=state.server_scid.hex(),
                tls_version=tls_version_name(server.version) if server else None,
                cipher=tls_cipher_name(server.cipher_suite) if server else None,
            )
        )


__all__ = [
    "InitialKeys",
    "LongHeader",
    "QuicAnalyzer",
    "QuicOptions",
    "QuicRecord",
    "client_initial_keys",
    "crypto_frames",
    "decrypt_initial",
    "parse_invariant_header",
    "parse_long_header",
    "server_initial_keys",
]
