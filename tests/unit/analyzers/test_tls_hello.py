"""Tests for the TLS hello decoder and the JA3/JA4 fingerprints."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from dronewatch.analyzers import _tls_hello
from dronewatch.analyzers._tls_hello import (
    ClientHello,
    client_hello_from_records,
    fingerprints,
    is_grease,
    ja3_hash,
    ja3_string,
    ja4,
    looks_like_handshake,
    parse_client_hello,
    parse_server_hello,
    read_handshake_message,
    server_hello_from_records,
    tls_cipher_name,
    tls_version_name,
)
from dronewatch.exceptions import DecodeError

# --- real handshakes from the stdlib ssl module (OpenSSL), driven through memory BIOs ---


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed EC certificate and key for `drone.example`, written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "drone.example")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _pump(obj: ssl.SSLObject, outgoing: ssl.MemoryBIO) -> bytes:
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def real_handshake(
    certdir: Path,
    *,
    server_hostname: str | None = "drone.example",
    alpn: list[str] | None = None,
    server_alpn: list[str] | None = None,
    max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> tuple[bytes, bytes]:
    """Record-layer bytes of a real ClientHello and of the server's first flight."""
    cert, key = certdir / "cert.pem", certdir / "key.pem"
    if not cert.exists():
        make_certificate(certdir)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        client_ctx.set_alpn_protocols(alpn)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.maximum_version = max_version
    if server_alpn:
        server_ctx.set_alpn_protocols(server_alpn)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client_hello = _pump(client, c_out)
    s_in.write(client_hello)
    server_flight = _pump(server, s_out)
    return client_hello, server_flight


@pytest.fixture(scope="module")
def certdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a throw-away server certificate."""
    directory = tmp_path_factory.mktemp("tls")
    make_certificate(directory)
    return directory


# --- hand-built hellos ---


def vec(width: int, body: bytes) -> bytes:
    """A TLS vector: `width`-byte length, then the body."""
    return len(body).to_bytes(width, "big") + body


def u16s(values: list[int]) -> bytes:
    """16-bit values, big-endian, back to back."""
    return b"".join(v.to_bytes(2, "big") for v in values)


def ext(ext_type: int, body: bytes = b"") -> bytes:
    """One extension: type, then its body as a 16-bit vector."""
    return ext_type.to_bytes(2, "big") + vec(2, body)


def sni_ext(name: str) -> bytes:
    """A server_name extension with one host_name."""
    return ext(0x0000, vec(2, b"\x00" + vec(2, name.encode())))


def alpn_ext(*ids: bytes) -> bytes:
    """An ALPN extension offering `ids`."""
    return ext(0x0010, vec(2, b"".join(vec(1, i) for i in ids)))


def client_hello_msg(
    ciphers: list[int], extensions: list[bytes] | None, version: int = 0x0303
) -> bytes:
    """A ClientHello handshake message; `extensions=None` leaves the block out entirely."""
    body = version.to_bytes(2, "big") + bytes(range(32)) + vec(1, b"") + vec(2, u16s(ciphers))
    body += vec(1, b"\x00")
    if extensions is not None:
        body += vec(2, b"".join(extensions))
    return b"\x01" + vec(3, body)


def server_hello_msg(cipher: int, extensions: list[bytes], random: bytes = bytes(32)) -> bytes:
    """A ServerHello handshake message."""
    body = b"\x03\x03" + random + vec(1, b"") + cipher.to_bytes(2, "big") + b"\x00"
    body += vec(2, b"".join(extensions))
    return b"\x02" + vec(3, body)


def record(message: bytes, version: int = 0x0301) -> bytes:
    """A plaintext handshake record carrying `message`."""
    return b"\x16" + version.to_bytes(2, "big") + vec(2, message)


# The FoxIO JA4 specification's worked example (technical_details/JA4.md): ciphers, extensions
# and signature algorithms in the order the client sent them, and the published fingerprint.
SPEC_CIPHERS = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013]
SPEC_CIPHERS += [0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
SPEC_EXTENSIONS = [0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D, 0x0005]
SPEC_EXTENSIONS += [0x0023, 0x0012, 0x002B, 0xFF01, 0x000B, 0x000A, 0x0015]
SPEC_SIGNATURES = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
SPEC_JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"


def spec_hello(grease: bool = False) -> bytes:
    """A ClientHello carrying exactly the JA4 specification example's values."""
    bodies = {
        0x0000: vec(2, b"\x00" + vec(2, b"example.org")),
        0x0010: vec(2, vec(1, b"h2") + vec(1, b"http/1.1")),
        0x000D: vec(2, u16s(SPEC_SIGNATURES)),
        0x002B: vec(1, u16s([0x0304, 0x0303])),
        0x000A: vec(2, u16s([0x001D, 0x0017, 0x0018])),
        0x000B: vec(1, b"\x00"),
    }
    extensions = [ext(t, bodies.get(t, b"")) for t in SPEC_EXTENSIONS]
    ciphers = list(SPEC_CIPHERS)
    if grease:
        extensions.insert(0, ext(0x2A2A))
        extensions.append(ext(0xFAFA, b"\x00"))
        ciphers.insert(0, 0x8A8A)
    return client_hello_msg(ciphers, extensions)


# --- real bytes ---


def test_real_client_hello_fields(certdir: Path) -> None:
    """A ClientHello from OpenSSL decodes to its SNI, ALPN offer, versions and suites."""
    client_records, _ = real_handshake(certdir, alpn=["h2", "http/1.1"])
    hello = client_hello_from_records(client_records)
    assert hello is not None
    assert hello.server_name == "drone.example"
    assert hello.alpn == ("h2", "http/1.1")
    assert 0x0304 in hello.supported_versions
    assert hello.max_version == 0x0304
    assert 0x1301 in hello.cipher_suites
    assert {0x0000, 0x0010, 0x002B, 0x000D, 0x000A} <= set(hello.extensions)
    assert 0x001D in hello.supported_groups
    assert hello.signature_algorithms and 0x0804 in hello.signature_algorithms


def test_real_client_hello_fingerprints(certdir: Path) -> None:
    """JA3 and JA4 of a real ClientHello agree with the fields it carries."""
    client_records, _ = real_handshake(certdir, alpn=["h2"])
    hello = client_hello_from_records(client_records)
    assert hello is not None
    text = ja3_string(hello)
    version, ciphers, extensions, groups, _ = text.split(",")
    assert version == "771"
    assert ciphers.split("-")[0] == str(hello.cipher_suites[0])
    assert extensions.split("-") == [str(e) for e in hello.extensions]
    assert "29" in groups.split("-")
    assert ja3_hash(hello) == hashlib.md5(text.encode()).hexdigest()
    fingerprint = ja4(hello)
    count_c, count_e = len(hello.cipher_suites), len(hello.extensions)
    assert fingerprint.startswith(f"t13d{count_c:02d}{count_e:02d}h2_")
    assert len(fingerprint) == len("t13d1516h2_8daaf6152771_e5627efa2ab1")


def test_real_client_hello_without_sni(certdir: Path) -> None:
    """A client that sends no server_name gets `i` in its JA4 and no server_name."""
    client_records, _ = real_handshake(certdir, server_hostname=None)
    hello = client_hello_from_records(client_records)
    assert hello is not None
    assert hello.server_name is None
    assert 0x0000 not in hello.extensions
    assert ja4(hello)[3] == "i"
    assert ja4(hello)[8:10] == "00"


def test_real_server_hello_tls13(certdir: Path) -> None:
    """A TLS 1.3 ServerHello reports 1.3 from supported_versions, not its legacy 1.2."""
    _, server_records = real_handshake(certdir)
    hello = server_hello_from_records(server_records)
    assert hello is not None
    assert hello.legacy_version == 0x0303
    assert hello.selected_version == 0x0304
    assert tls_version_name(hello.version) == "TLSv1.3"
    assert tls_cipher_name(hello.cipher_suite).startswith("TLS_")
    assert hello.cipher_suite in (0x1301, 0x1302, 0x1303)
    assert not hello.hello_retry_request


def test_real_server_hello_tls12_with_alpn(certdir: Path) -> None:
    """A TLS 1.2 ServerHello carries its version in legacy_version and the chosen ALPN."""
    _, server_records = real_handshake(
        certdir, alpn=["h2"], server_alpn=["h2"], max_version=ssl.TLSVersion.TLSv1_2
    )
    hello = server_hello_from_records(server_records)
    assert hello is not None
    assert hello.selected_version is None
    assert tls_version_name(hello.version) == "TLSv1.2"
    assert hello.alpn == "h2"
    assert tls_cipher_name(hello.cipher_suite).startswith("TLS_ECDHE_ECDSA_WITH_")


def test_server_hello_is_not_a_client_hello(certdir: Path) -> None:
    """Each parser refuses the other hello's handshake type."""
    client_records, server_records = real_handshake(certdir)
    with pytest.raises(DecodeError):
        client_hello_from_records(server_records)
    with pytest.raises(DecodeError):
        server_hello_from_records(client_records)


def test_every_truncation_of_a_real_hello_is_a_decode_error(certdir: Path) -> None:
    """A ClientHello message cut anywhere raises DecodeError, never anything else."""
    client_records, _ = real_handshake(certdir)
    message = read_handshake_message(client_records)
    assert message is not None
    parse_client_hello(message)
    for cut in range(len(message)):
        with pytest.raises(DecodeError):
            parse_client_hello(message[:cut])


# --- JA4 and JA3 against values worked out independently ---


def test_ja4_matches_the_specification_example() -> None:
    """The JA4 spec's example hello gives the fingerprint the spec publishes."""
    hello = parse_client_hello(spec_hello())
    assert ja4(hello) == SPEC_JA4


def test_ja4_example_hashes_are_the_published_strings() -> None:
    """The spec's sorted cipher and extension strings hash to the values the spec prints."""
    ciphers = "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
    exts = "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"
    sigs = "0403,0804,0401,0503,0805,0501,0806,0601"
    assert hashlib.sha256(ciphers.encode()).hexdigest()[:12] == "8daaf6152771"
    assert hashlib.sha256(f"{exts}_{sigs}".encode()).hexdigest()[:12] == "e5627efa2ab1"
    assert hashlib.sha256(exts.encode()).hexdigest()[:12] == "6d807ffa2a79"


def test_grease_is_ignored_everywhere() -> None:
    """Adding GREASE ciphers, extensions, groups and versions changes neither JA3 nor JA4."""
    plain = parse_client_hello(spec_hello())
    greased = parse_client_hello(spec_hello(grease=True))
    assert greased.cipher_suites[0] == 0x8A8A
    assert ja4(greased) == ja4(plain) == SPEC_JA4
    assert ja3_string(greased) == ja3_string(plain)


def test_small_hello_by_hand() -> None:
    """JA3 and JA4 of a small hand-built hello equal the values computed by hand."""
    message = client_hello_msg(
        [0x0A0A, 0x1301, 0xC02B, 0x002F],
        [
            ext(0x1A1A),
            sni_ext("drone.example"),
            ext(0x000A, vec(2, u16s([0x2A2A, 0x001D, 0x0017]))),
            ext(0x000B, vec(1, b"\x00")),
            alpn_ext(b"mqtt"),
            ext(0x000D, vec(2, u16s([0x0403, 0x3A3A, 0x0804]))),
            ext(0x002B, vec(1, u16s([0x4A4A, 0x0304, 0x0303]))),
        ],
    )
    hello = parse_client_hello(message)
    # JA3: version, ciphers, extensions, groups, point formats; decimal, GREASE dropped.
    expected_ja3 = "771,4865-49195-47,0-10-11-16-13-43,29-23,0"
    assert ja3_string(hello) == expected_ja3
    assert ja3_hash(hello) == hashlib.md5(expected_ja3.encode()).hexdigest()
    # JA4: 3 ciphers, 6 extensions, ALPN "mqtt" -> "mt"; SNI and ALPN left out of part c.
    part_b = hashlib.sha256(b"002f,1301,c02b").hexdigest()[:12]
    part_c = hashlib.sha256(b"000a,000b,000d,002b_0403,0804").hexdigest()[:12]
    assert ja4(hello) == f"t13d0306mt_{part_b}_{part_c}"
    assert ja4(hello, "q").startswith("q13d0306mt_")


def test_ja4_without_signature_algorithms_has_no_underscore() -> None:
    """With no signature algorithms the extension list is hashed without a trailing `_`."""
    hello = parse_client_hello(client_hello_msg([0x002F], [ext(0x000A, vec(2, u16s([0x17])))]))
    part_c = hashlib.sha256(b"000a").hexdigest()[:12]
    part_b = hashlib.sha256(b"002f").hexdigest()[:12]
    assert ja4(hello) == f"t12i010100_{part_b}_{part_c}"


def test_ja4_with_no_ciphers_or_extensions() -> None:
    """Empty cipher and extension lists give all-zero hash parts."""
    hello = parse_client_hello(client_hello_msg([], None, version=0x0301))
    assert hello.extensions == ()
    assert ja4(hello) == "t10i000000_000000000000_000000000000"
    assert ja3_string(hello) == "769,,,,"


@pytest.mark.parametrize(
    ("alpn", "expected"),
    [
        (b"h2", "h2"),
        (b"http/1.1", "h1"),
        (b"h", "hh"),
        (b"\xab\x01", "a1"),
        (b"h\x00", "60"),
        (b"", "00"),
    ],
)
def test_ja4_alpn_characters(alpn: bytes, expected: str) -> None:
    """First/last ALPN characters, with hex digits when either end is not alphanumeric."""
    hello = parse_client_hello(client_hello_msg([0x1301], [alpn_ext(alpn)]))
    assert ja4(hello)[8:10] == expected


def test_version_and_cipher_names() -> None:
    """Known code points get names (TLS 1.3 drafts by number, every IANA suite); unknown ones
    are shown in hex."""
    assert tls_version_name(0x0303) == "TLSv1.2"
    assert tls_version_name(0x7F1C) == "TLSv1.3-draft28"
    assert tls_version_name(0x7E01) == "0x7e01"
    assert tls_cipher_name(0xC02F) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert tls_cipher_name(0x0004) == "TLS_RSA_WITH_RC4_128_MD5"
    assert tls_cipher_name(0x1234) == "0x1234"
    assert [v for v in (0x0A0A, 0xFAFA, 0x1A2A, 0x0303) if is_grease(v)] == [0x0A0A, 0xFAFA]


def test_hello_retry_request_is_recognised() -> None:
    """A ServerHello with the special HelloRetryRequest random is flagged as one."""
    hrr_random = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
    message = server_hello_msg(0x1302, [ext(0x002B, b"\x03\x04")], random=hrr_random)
    hello = parse_server_hello(message)
    assert hello.hello_retry_request
    assert hello.version == 0x0304 and hello.cipher_suite == 0x1302


def test_malformed_extension_body_is_a_decode_error() -> None:
    """An extension whose inner length disagrees with its outer length is refused."""
    bad = ext(0x002B, b"\x04\x03\x04")  # claims 4 bytes of versions, carries 2
    with pytest.raises(DecodeError):
        parse_client_hello(client_hello_msg([0x1301], [bad]))
    trailing = client_hello_msg([0x1301], [ext(0x000B, b"\x01\x00\x00")])
    with pytest.raises(DecodeError):
        parse_client_hello(trailing)


def test_odd_length_lists_and_empty_server_name() -> None:
    """Odd-length cipher lists and long session ids are refused; an empty SNI means no name."""
    body = b"\x03\x03" + bytes(32) + b"\x00" + vec(2, b"\x13\x01\x13") + b"\x01\x00"
    with pytest.raises(DecodeError):
        parse_client_hello(b"\x01" + vec(3, body))
    long_session = b"\x03\x03" + bytes(32) + vec(1, bytes(33)) + vec(2, b"\x13\x01") + b"\x01\x00"
    with pytest.raises(DecodeError):
        parse_client_hello(b"\x01" + vec(3, long_session))
    hello = parse_client_hello(client_hello_msg([0x1301], [ext(0x0000)]))
    assert hello.server_name is None and hello.extensions == (0x0000,)
    assert ja4(hello)[3] == "d"  # the extension is there, even if empty


def test_bad_server_hellos() -> None:
    """A ServerHello with an oversized session id or two ALPN answers is refused."""
    body = b"\x03\x03" + bytes(32) + vec(1, bytes(33)) + b"\x13\x01\x00"
    with pytest.raises(DecodeError):
        parse_server_hello(b"\x02" + vec(3, body))
    with pytest.raises(DecodeError):
        parse_server_hello(server_hello_msg(0x1301, [alpn_ext(b"h2", b"h3")]))


# --- the record layer ---


def test_hello_split_over_two_records_and_truncated_input() -> None:
    """A ClientHello fragmented over two records reassembles; any shorter input is incomplete."""
    message = spec_hello()
    data = record(message[:50]) + record(message[50:])
    assert read_handshake_message(data) == message
    hello = client_hello_from_records(data)
    assert isinstance(hello, ClientHello) and ja4(hello) == SPEC_JA4
    for cut in range(len(data)):
        assert client_hello_from_records(data[:cut]) is None


def test_records_after_the_hello_are_not_judged() -> None:
    """Bytes after a complete hello (the next record) do not affect decoding."""
    data = record(spec_hello()) + b"\x17\x03\x03\x00\x05junk!"
    hello = client_hello_from_records(data)
    assert hello is not None and hello.server_name == "example.org"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: drone.example\r\n\r\n",
        b"\x17\x03\x03\x00\x10" + bytes(16),  # application data
        b"\x16\x02\x00\x00\x10",  # not SSLv3/TLS
        b"\x16\x03\x01\x00\x00",  # empty record
        b"\x16\x03\x01\x50\x00\x01",  # record longer than TLS allows
    ],
)
def test_record_layer_refuses_what_is_not_a_handshake(data: bytes) -> None:
    """Non-handshake or malformed records raise DecodeError."""
    with pytest.raises(DecodeError):
        read_handshake_message(data)


def test_record_layer_waits_for_a_partial_record() -> None:
    """A record whose header and first bytes are plausible is incomplete, not an error."""
    assert read_handshake_message(b"\x16\x03\x01\x00\x05\x01\x00") is None
    assert read_handshake_message(b"\x16\x03") is None


def test_record_layer_refuses_huge_or_interleaved_handshakes() -> None:
    """A message longer than the limit, or cut by a non-handshake record, is refused."""
    data = b"\x16\x03\x01\x00\x04\x01\x01\x00\x00"  # 64 KiB body announced
    with pytest.raises(DecodeError):
        read_handshake_message(data)
    with pytest.raises(DecodeError):
        read_handshake_message(record(b"\x01\x00\x00\x10") + b"\x15\x03\x03\x00\x02\x02\x28")


def test_looks_like_handshake_prefixes() -> None:
    """Prefix check accepts partial TLS record headers and refuses other first bytes."""
    assert looks_like_handshake(b"")
    assert looks_like_handshake(b"\x16")
    assert looks_like_handshake(b"\x16\x03\x04")
    assert not looks_like_handshake(b"\x16\x03\x05")
    assert not looks_like_handshake(b"G")


# --- fuzzing ---


@given(st.binary(max_size=600))
def test_fuzz_decoders_raise_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes into every decoder give a result or DecodeError, nothing else."""
    for decode in (parse_client_hello, parse_server_hello, read_handshake_message):
        try:
            decode(data)
        except DecodeError:
            pass


@given(
    st.binary(max_size=400),
    st.sampled_from([b"\x01", b"\x02", b"\x16\x03\x01", b"\x16\x03\x03\x01\x00\x01"]),
)
def test_fuzz_plausible_prefixes(data: bytes, prefix: bytes) -> None:
    """Bytes behind a plausible handshake prefix still only raise DecodeError."""
    for decode in (parse_client_hello, parse_server_hello, client_hello_from_records):
        try:
            decode(prefix + data)
        except DecodeError:
            pass


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_fuzz_mutated_spec_hello(position: int, value: int) -> None:
    """A real-shaped hello with one byte changed decodes or raises DecodeError, nothing else."""
    message = bytearray(spec_hello(grease=True))
    message[position % len(message)] = value
    try:
        hello = parse_client_hello(bytes(message))
    except DecodeError:
        return
    assert ja4(hello).count("_") == 2
    ja3_hash(hello)


U16S = st.lists(st.sampled_from([0x0A0A, 0x1301, 0x1302, 0xC02B, 0x0000, 0x0010, 0x002B, 0x000D]))


@given(
    base=st.builds(
        ClientHello,
        legacy_version=st.sampled_from([0x0301, 0x0303]),
        random=st.binary(min_size=32, max_size=32),
        session_id=st.binary(max_size=32),
        cipher_suites=U16S.map(tuple),
        compression_methods=st.just(b"\x00"),
        extensions=U16S.map(tuple),
        server_name=st.none() | st.just("drone.example"),
        alpn_ids=st.lists(st.sampled_from([b"h2", b"http/1.1", b"\x00q"]), max_size=2).map(tuple),
        supported_versions=st.lists(st.sampled_from([0x0304, 0x0303, 0x2A2A])).map(tuple),
        supported_groups=U16S.map(tuple),
        ec_point_formats=st.lists(st.integers(0, 2), max_size=2).map(tuple),
        signature_algorithms=U16S.map(tuple),
    ),
    field=st.sampled_from(
        [
            "legacy_version",
            "cipher_suites",
            "extensions",
            "alpn_ids",
            "supported_versions",
            "supported_groups",
            "ec_point_formats",
            "signature_algorithms",
            "random",
            "server_name",
        ]
    ),
    transport=st.sampled_from(["t", "q"]),
)
def test_fingerprints_are_computed_once_per_distinct_hello(
    base: ClientHello, field: str, transport: str
) -> None:
    """The memo gives what JA3 and JA4 compute, for a hello and for one that differs from it in
    any single field: a field left out of the memo's key would give the first hello's prints."""
    other = {
        "legacy_version": 0x0302,
        "cipher_suites": (*base.cipher_suites, 0x009C),
        "extensions": (*base.extensions, 0x0017),
        "alpn_ids": (b"h3",),
        "supported_versions": (0x0302,),
        "supported_groups": (*base.supported_groups, 0x0018),
        "ec_point_formats": (*base.ec_point_formats, 1),
        "signature_algorithms": (*base.signature_algorithms, 0x0804),
        "random": bytes(32),
        "server_name": "other.example",
    }[field]
    for hello in (base, dataclasses.replace(base, **{field: other})):
        prints = fingerprints(hello, transport)
        assert prints.ja3 == ja3_string(hello)
        assert prints.ja3_hash == ja3_hash(hello)
        assert prints.ja4 == ja4(hello, transport)


def test_fingerprint_memo_is_bounded() -> None:
    hello = parse_client_hello(spec_hello())
    for version in range(_tls_hello._MAX_FINGERPRINTS + 10):
        fingerprints(dataclasses.replace(hello, legacy_version=version))
    assert 0 < len(_tls_hello._FINGERPRINTS) <= _tls_hello._MAX_FINGERPRINTS
    assert fingerprints(hello).ja4 == SPEC_JA4
