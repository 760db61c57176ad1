"""Decode TLS ClientHello and ServerHello messages and fingerprint the client (JA3, JA4).

A pure decoder shared by the TLS (over TCP) and QUIC analyzers: bytes in, frozen dataclasses out,
and `DecodeError` for anything that is not a well-formed hello. Layouts follow RFC 8446 section 4.1
(hello messages) and section 5.1 (record layer); the extension bodies follow RFC 6066 (server_name),
RFC 7301 (ALPN), RFC 8422 (supported_groups, ec_point_formats) and RFC 8446 section 4.2. A DTLS
ClientHello (RFC 6347 4.2.1, RFC 9147 5.3) differs by the cookie after the session id.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from dataclasses import dataclass

from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

TLS_CONTENT_HANDSHAKE = 22
TLS_HANDSHAKE_CLIENT_HELLO = 1
TLS_HANDSHAKE_SERVER_HELLO = 2

TLS_EXT_SERVER_NAME = 0x0000
TLS_EXT_SUPPORTED_GROUPS = 0x000A
TLS_EXT_EC_POINT_FORMATS = 0x000B
TLS_EXT_SIGNATURE_ALGORITHMS = 0x000D
TLS_EXT_ALPN = 0x0010
TLS_EXT_EARLY_DATA = 0x002A
TLS_EXT_SUPPORTED_VERSIONS = 0x002B

TLS_MAX_HELLO = 1 << 16
"""Largest hello (handshake header included) accepted from the record layer."""
TLS_MAX_RECORD = (1 << 14) + 2048
"""Largest record fragment accepted (RFC 8446 5.2 allows 2^14 + 256 for ciphertext)."""

# RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest.
TLS_HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

_VERSION_NAMES = {
    0x0002: "SSLv2",
    0x0300: "SSLv3",
    0x0301: "TLSv1.0",
    0x0302: "TLSv1.1",
    0x0303: "TLSv1.2",
    0x0304: "TLSv1.3",
    0xFEFF: "DTLSv1.0",
    0xFEFD: "DTLSv1.2",
    0xFEFC: "DTLSv1.3",
}

# JA4 section a, "TLS and DTLS version".
_JA4_VERSIONS = {
    0x0002: "s2",
    0x0300: "s3",
    0x0301: "10",
    0x0302: "11",
    0x0303: "12",
    0x0304: "13",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}

# A few common suites by their IANA registry names; anything else is shown as hex.
_CIPHER_NAMES = {
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    0x5600: "TLS_FALLBACK_SCSV",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}

_EMPTY_HASH = "000000000000"

_DTLS_ORDER = {0xFEFF: 0x0302, 0xFEFD: 0x0303, 0xFEFC: 0x0304}
"""DTLS versions count down (RFC 9147 5.3: 1.0 is 0xfeff, 1.2 0xfefd, 1.3 0xfefc); each ranks
as the TLS version it derives from (RFC 6347 1, RFC 9147 1): the highest offered is the newest."""


def _newest(version: int) -> int:
    return _DTLS_ORDER.get(version, version)


def is_grease(value: int) -> bool:
    """Whether a 16-bit code point is a GREASE value (RFC 8701: 0x0A0A, 0x1A1A ... 0xFAFA)."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


def tls_version_name(version: int) -> str:
    """`TLSv1.3`-style name of a protocol version (`TLSv1.3-draft23` for the drafts' 0x7fNN),
    or its hex value when unknown."""
    name = _VERSION_NAMES.get(version)
    if name is not None:
        return name
    if version >> 8 == 0x7F:
        return f"TLSv1.3-draft{version & 0xFF}"
    return f"0x{version:04x}"


def tls_cipher_name(suite: int) -> str:
    """IANA name of a cipher suite (the common ones from a table here, the rest from dpkt's
    copy of the IANA registry), or its hex value."""
    name = _CIPHER_NAMES.get(suite)
    if name is not None:
        return name
    import dpkt.ssl_ciphersuites  # the full registry, on the first suite not in the table

    known = dpkt.ssl_ciphersuites.BY_CODE.get(suite)
    if known is not None and str(known.name).startswith("TLS_"):
        return str(known.name)
    return f"0x{suite:04x}"


def _short(what: str, pos: int, n: int, have: int) -> DecodeError:
    return DecodeError(f"{what}: needs {n} bytes at offset {pos}, has {have}")


def _vector(data: bytes, pos: int, width: int, what: str) -> tuple[bytes, int]:
    """The vector at `pos` with a `width`-byte (1 or 2) length prefix, and the offset after it;
    every short read is a `DecodeError`."""
    end = len(data)
    if pos + width > end:
        raise _short(what, pos, width, end - pos)
    n = data[pos] if width == 1 else data[pos] << 8 | data[pos + 1]
    pos += width
    if pos + n > end:
        raise _short(what, pos, n, end - pos)
    return data[pos : pos + n], pos + n


def _whole_vector(data: bytes, width: int, what: str) -> bytes:
    """A vector that fills `data` exactly (an extension's body)."""
    value, pos = _vector(data, 0, width, what)
    if pos != len(data):
        raise DecodeError(f"{what}: {len(data) - pos} unexpected trailing bytes")
    return value


def _u16_list(data: bytes, what: str) -> tuple[int, ...]:
    if len(data) % 2:
        raise DecodeError(f"{what}: odd length {len(data)} for a list of 16-bit values")
    return struct.unpack(f">{len(data) // 2}H", data)


def _text(raw: bytes) -> str:
    # Host names and protocol ids are ASCII on the wire; keep anything else readable, not fatal.
    return raw.decode("ascii", "backslashreplace")


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The fields of a ClientHello that identify the client and its destination."""

    legacy_version: int
    """The `legacy_version` field (0x0303 for TLS 1.2 and 1.3 clients)."""
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    """Offered cipher suites in order, GREASE values included."""
    compression_methods: bytes
    extensions: tuple[int, ...]
    """Extension types in the order sent, GREASE values included."""
    server_name: str | None = None
    """The first host_name of the server_name extension (SNI)."""
    alpn_ids: tuple[bytes, ...] = ()
    """ALPN protocol ids as raw bytes, in preference order."""
    supported_versions: tuple[int, ...] = ()
    supported_groups: tuple[int, ...] = ()
    ec_point_formats: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()

    @property
    def alpn(self) -> tuple[str, ...]:
        """ALPN protocol ids as text (`h2`, `http/1.1`)."""
        return tuple(_text(p) for p in self.alpn_ids)

    @property
    def max_version(self) -> int:
        """Highest version offered: from supported_versions when present, else legacy_version;
        of DTLS versions the newest (0xfefc, DTLS 1.3, before 0xfefd, DTLS 1.2)."""
        offered = [v for v in self.supported_versions if not is_grease(v)]
        return max(offered, key=_newest) if offered else self.legacy_version

    @property
    def versions(self) -> tuple[int, ...]:
        """Versions the client offers, GREASE removed (legacy_version when there is no list)."""
        offered = tuple(v for v in self.supported_versions if not is_grease(v))
        return offered or (self.legacy_version,)


@dataclass(frozen=True, slots=True)
class ServerHello:
    """The fields of a ServerHello (or HelloRetryRequest) that say what was negotiated."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[int, ...] = ()
    selected_version: int | None = None
    """The supported_versions extension, present for TLS 1.3."""
    alpn: str | None = None
    """Protocol chosen by the server (in the ServerHello only before TLS 1.3)."""

    @property
    def version(self) -> int:
        """Negotiated version: supported_versions when present, else legacy_version."""
        return self.selected_version if self.selected_version is not None else self.legacy_version

    @property
    def hello_retry_request(self) -> bool:
        """Whether this is a TLS 1.3 HelloRetryRequest rather than a real ServerHello."""
        return self.random == TLS_HRR_RANDOM


def _handshake_body(data: bytes, expected_type: int, what: str) -> bytes:
    if len(data) < 4:
        raise _short(what, 0, 4, len(data))
    if data[0] != expected_type:
        raise DecodeError(f"{what}: handshake type {data[0]}, expected {expected_type}")
    n = int.from_bytes(data[1:4], "big")
    if 4 + n > len(data):
        raise _short(what, 4, n, len(data) - 4)
    # Bytes after the message (the next handshake message) are not ours to judge.
    return data[4 : 4 + n]


def _extensions(data: bytes, pos: int, what: str) -> list[tuple[int, bytes]]:
    """The (type, body) extensions that end a hello, from `pos` on."""
    if pos == len(data):  # extensions are optional before TLS 1.3
        return []
    block, after = _vector(data, pos, 2, what)
    if after != len(data):
        raise DecodeError(f"{what}: {len(data) - after} unexpected trailing bytes")
    out: list[tuple[int, bytes]] = []
    pos, end = 0, len(block)
    while pos < end:
        if end - pos < 4:
            raise _short(f"{what} extensions", pos, 4, end - pos)
        ext_type, length = _TYPE_LENGTH(block, pos)
        pos += 4
        if length > end - pos:
            raise _short(f"{what} extensions", pos, length, end - pos)
        out.append((ext_type, block[pos : pos + length]))
        pos += length
    return out


_TYPE_LENGTH = struct.Struct(">HH").unpack_from


def _hello_start(body: bytes, what: str) -> tuple[int, bytes, bytes, int]:
    """Version, random and session id that start both hellos, and the offset after them."""
    if len(body) < 35:
        raise _short(what, 0, 35, len(body))
    session_id, pos = _vector(body, 34, 1, what)
    if len(session_id) > 32:
        raise DecodeError(f"{what}: session id of {len(session_id)} bytes")
    return body[0] << 8 | body[1], body[2:34], session_id, pos


def _server_name(body: bytes) -> str | None:
    if not body:  # an empty server_name is legal (servers echo it that way)
        return None
    names, _ = _vector(body, 0, 2, "server_name")
    found: str | None = None
    pos = 0
    while pos < len(names):
        name_type = names[pos]
        name, pos = _vector(names, pos + 1, 2, "server_name list")
        if name_type == 0 and found is None:
            found = _text(name)
    return found


def _alpn_ids(body: bytes) -> tuple[bytes, ...]:
    ids = _whole_vector(body, 2, "alpn")
    out: list[bytes] = []
    pos = 0
    while pos < len(ids):
        protocol, pos = _vector(ids, pos, 1, "alpn list")
        out.append(protocol)
    return tuple(out)


def parse_client_hello(data: bytes, *, dtls: bool = False) -> ClientHello:
    """Decode a ClientHello handshake message (starting at its type byte, 0x01, with TLS's
    4-byte handshake header); with `dtls`, a DTLS one, whose cookie follows the session id."""
    what = "dtls client hello" if dtls else "client hello"
    body = _handshake_body(data, TLS_HANDSHAKE_CLIENT_HELLO, what)
    legacy_version, random, session_id, pos = _hello_start(body, what)
    if dtls:
        _, pos = _vector(body, pos, 1, what)  # cookie<0..2^8-1>
    ciphers, pos = _vector(body, pos, 2, what)
    cipher_suites = _u16_list(ciphers, "cipher suites")
    compression, pos = _vector(body, pos, 1, what)
    server_name: str | None = None
    alpn_ids: tuple[bytes, ...] = ()
    versions: tuple[int, ...] = ()
    groups: tuple[int, ...] = ()
    point_formats: tuple[int, ...] = ()
    signatures: tuple[int, ...] = ()
    types: list[int] = []
    seen: set[int] = set()
    # A repeated extension is illegal (RFC 8446 4.2); the first occurrence wins here.
    for ext_type, ext in _extensions(body, pos, what):
        types.append(ext_type)
        if ext_type in seen:
            continue
        seen.add(ext_type)
        if ext_type == TLS_EXT_SERVER_NAME:
            server_name = _server_name(ext)
        elif ext_type == TLS_EXT_ALPN:
            alpn_ids = _alpn_ids(ext)
        elif ext_type == TLS_EXT_SUPPORTED_VERSIONS:
            versions = _u16_list(_whole_vector(ext, 1, "supported_versions"), "supported_versions")
        elif ext_type == TLS_EXT_SUPPORTED_GROUPS:
            groups = _u16_list(_whole_vector(ext, 2, "supported_groups"), "supported_groups")
        elif ext_type == TLS_EXT_EC_POINT_FORMATS:
            point_formats = tuple(_whole_vector(ext, 1, "ec_point_formats"))
        elif ext_type == TLS_EXT_SIGNATURE_ALGORITHMS:
            signatures = _u16_list(
                _whole_vector(ext, 2, "signature_algorithms"), "signature_algorithms"
            )
    return ClientHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suites=cipher_suites,
        compression_methods=compression,
        extensions=tuple(types),
        server_name=server_name,
        alpn_ids=alpn_ids,
        supported_versions=versions,
        supported_groups=groups,
        ec_point_formats=point_formats,
        signature_algorithms=signatures,
    )


def parse_server_hello(data: bytes) -> ServerHello:
    """Decode a ServerHello handshake message (starting at its type byte, 0x02)."""
    what = "server hello"
    body = _handshake_body(data, TLS_HANDSHAKE_SERVER_HELLO, what)
    legacy_version, random, session_id, pos = _hello_start(body, what)
    if pos + 3 > len(body):
        raise _short(what, pos, 3, len(body) - pos)
    cipher_suite = body[pos] << 8 | body[pos + 1]
    compression = body[pos + 2]
    selected: int | None = None
    alpn: str | None = None
    types: list[int] = []
    for ext_type, ext in _extensions(body, pos + 3, what):
        types.append(ext_type)
        if ext_type == TLS_EXT_SUPPORTED_VERSIONS and selected is None:
            if len(ext) != 2:
                raise DecodeError(f"supported_versions: {len(ext)} bytes, expected 2")
            selected = ext[0] << 8 | ext[1]
        elif ext_type == TLS_EXT_ALPN and alpn is None:
            ids = _alpn_ids(ext)
            if len(ids) != 1:
                raise DecodeError(f"server hello: ALPN must name one protocol, names {len(ids)}")
            alpn = _text(ids[0])
    return ServerHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suite=cipher_suite,
        compression_method=compression,
        extensions=tuple(types),
        selected_version=selected,
        alpn=alpn,
    )


def under_way(data: bytes) -> bool:
    """Whether `data` starts with the header of a record a TLS session sends once its handshake
    is over (RFC 8446 5.1, RFC 5246 6.2.1): application data (23), an alert (21) or a
    ChangeCipherSpec (20), of version 3.1 to 3.4 (TLS 1.0 to 1.3's record layer; the 3.0 of
    SSL 3 left out, an old client's hello is one) and a length a record may have."""
    if len(data) < 5 or data[0] not in (20, 21, 23) or data[1] != 3 or not 1 <= data[2] <= 4:
        return False
    length = data[3] << 8 | data[4]
    return 0 < length <= TLS_MAX_RECORD


def looks_like_handshake(data: bytes) -> bool:
    """Whether `data` may start a TLS handshake record (0x16 0x03 0x00-0x04), from what is there."""
    if len(data) >= 1 and data[0] != TLS_CONTENT_HANDSHAKE:
        return False
    if len(data) >= 2 and data[1] != 3:
        return False
    return len(data) < 3 or data[2] <= 4


def read_handshake_message(data: bytes, limit: int = TLS_MAX_HELLO) -> bytes | None:
    """The first handshake message carried by the TLS records at the start of `data`.

    The message may span several records and `data` may end inside a record: returns None while
    more bytes are needed. Raises `DecodeError` when the bytes are not plaintext handshake records
    or the message would be longer than `limit`.
    """
    message = bytearray()
    needed: int | None = None
    pos = 0
    while needed is None or len(message) < needed:
        if len(data) - pos < 5:
            if not looks_like_handshake(data[pos : pos + 3]):
                raise DecodeError(f"tls record: non-handshake record at offset {pos}")
            return None
        if not looks_like_handshake(data[pos : pos + 3]):
            raise DecodeError(f"tls record: non-handshake record at offset {pos}")
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if length == 0 or length > TLS_MAX_RECORD:
            raise DecodeError(f"tls record: fragment length {length} at offset {pos}")
        message += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if needed is None and len(message) >= 4:
            needed = 4 + int.from_bytes(message[1:4], "big")
            if needed > limit:
                raise DecodeError(f"tls record: handshake message of {needed} bytes")
        if pos > len(data):  # the record itself is still incomplete
            break
    if needed is None or len(message) < needed:
        return None
    return bytes(message[:needed])


def client_hello_from_records(data: bytes) -> ClientHello | None:
    """Decode the ClientHello at the start of TLS record-layer bytes; None while incomplete."""
    message = read_handshake_message(data)
    return None if message is None else parse_client_hello(message)


def server_hello_from_records(data: bytes) -> ServerHello | None:
    """Decode the ServerHello at the start of TLS record-layer bytes; None while incomplete."""
    message = read_handshake_message(data)
    return None if message is None else parse_server_hello(message)


def ja3_string(hello: ClientHello) -> str:
    """JA3 text: version,ciphers,extensions,groups,point formats (decimal, GREASE removed)."""

    def join(values: tuple[int, ...]) -> str:
        return "-".join(str(v) for v in values if not is_grease(v))

    return ",".join(
        [
            str(hello.legacy_version),
            join(hello.cipher_suites),
            join(hello.extensions),
            join(hello.supported_groups),
            "-".join(str(v) for v in hello.ec_point_formats),
        ]
    )


def ja3_hash(hello: ClientHello) -> str:
    """MD5 of the JA3 text, as 32 hex digits."""
    return hashlib.md5(ja3_string(hello).encode(), usedforsecurity=False).hexdigest()


def _ja4_alpn(hello: ClientHello) -> str:
    if not hello.alpn_ids or not hello.alpn_ids[0]:
        return "00"
    first, last = hello.alpn_ids[0][0], hello.alpn_ids[0][-1]
    if bytes([first, last]).isalnum():  # ASCII letters and digits only
        return chr(first) + chr(last)
    # Either end not alphanumeric: first hex digit of the first byte, last of the last byte.
    return f"{first:02x}"[0] + f"{last:02x}"[1]


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ja4(hello: ClientHello, transport: str = "t") -> str:
    """FoxIO JA4 of a ClientHello; `transport` is `t` (TCP), `q` (QUIC) or `d` (DTLS)."""
    ciphers = [c for c in hello.cipher_suites if not is_grease(c)]
    extensions = [e for e in hello.extensions if not is_grease(e)]
    part_a = "{}{}{}{:02d}{:02d}{}".format(
        transport,
        _JA4_VERSIONS.get(hello.max_version, "00"),
        "d" if TLS_EXT_SERVER_NAME in extensions else "i",
        min(len(ciphers), 99),
        min(len(extensions), 99),
        _ja4_alpn(hello),
    )
    part_b = _sha12(",".join(sorted(f"{c:04x}" for c in ciphers))) if ciphers else _EMPTY_HASH
    hashed = sorted(f"{e:04x}" for e in extensions if e not in (TLS_EXT_SERVER_NAME, TLS_EXT_ALPN))
    signatures = [f"{s:04x}" for s in hello.signature_algorithms if not is_grease(s)]
    if not hashed:
        part_c = _EMPTY_HASH
    elif signatures:
        part_c = _sha12(",".join(hashed) + "_" + ",".join(signatures))
    else:
        part_c = _sha12(",".join(hashed))
    return f"{part_a}_{part_b}_{part_c}"


@dataclass(frozen=True, slots=True)
class Fingerprints:
    """The fingerprints of one ClientHello."""

    ja3: str
    """JA3 text (`ja3_string`)."""
    ja3_hash: str
    ja4: str


_FINGERPRINTS: dict[tuple[object, ...], Fingerprints] = {}
_MAX_FINGERPRINTS = 4096
"""Distinct hellos remembered; the memo starts anew past this many (it only saves work)."""


def fingerprints(hello: ClientHello, transport: str = "t") -> Fingerprints:
    """JA3, its hash and JA4 (`transport` as for `ja4`), computed once per distinct hello: an
    app's connections repeat the same hello but for random, session id, key shares and names,
    which no fingerprint reads. The memo's key is every field that one does read."""
    key = (
        transport,
        hello.legacy_version,
        hello.cipher_suites,
        hello.extensions,
        hello.supported_groups,
        hello.ec_point_formats,
        hello.signature_algorithms,
        hello.supported_versions,
        hello.alpn_ids[:1],
    )
    found = _FINGERPRINTS.get(key)
    if found is None:
        if len(_FINGERPRINTS) >= _MAX_FINGERPRINTS:
            _FINGERPRINTS.clear()
        text = ja3_string(hello)
        found = _FINGERPRINTS[key] = Fingerprints(
            ja3=text,
            ja3_hash=hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
            ja4=ja4(hello, transport),
        )
    return found


__all__ = [
    "ClientHello",
    "Fingerprints",
    "ServerHello",
    "client_hello_from_records",
    "fingerprints",
    "is_grease",
    "ja3_hash",
    "ja3_string",
    "ja4",
    "looks_like_handshake",
    "parse_client_hello",
    "parse_server_hello",
    "read_handshake_message",
    "server_hello_from_records",
    "tls_cipher_name",
    "tls_version_name",
]
