"""JA4 against FoxIO's published outputs and written specification.

Every TLS and QUIC ClientHello in FoxIO's sample captures copied here
(pcaps/third_party/foxio-ja4/) gets the JA4 that FoxIO's tools publish for it (their Python and
Rust test expectations, copied with their source commit into data/foxio_ja4.json), except where
that output disagrees with FoxIO's written specification (technical_details/JA4.md): there the
specification's value, kept next to the published one in the data, is what dronewatch writes.
The rest checks the specification's rules that the captures do not exercise.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from dronewatch.analyzers._tls_hello import ja4, parse_client_hello
from dronewatch.analyzers.quic import QuicRecord
from dronewatch.analyzers.tls import TlsRecord
from dronewatch.capture.files import FileSource
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import run_source
from tests.pcaps import THIRD_PARTY, all_captures, capture
from tests.unit.analyzers.test_tls_hello import alpn_ext, client_hello_msg, ext, u16s, vec

DATA = Path(__file__).parent / "data" / "foxio_ja4.json"
FOXIO = THIRD_PARTY / "foxio-ja4"

Key = tuple[str, str, int, str, int]
"""(transport, client address, client port, server address, server port)."""


@functools.cache
def published() -> dict[str, Any]:
    """FoxIO's published JA4 of every ClientHello, by capture (data/foxio_ja4.json)."""
    captures: dict[str, Any] = json.loads(capture(DATA).read_text())["captures"]
    return captures


def hellos(name: str) -> list[dict[str, Any]]:
    """The published ClientHellos of one capture."""
    found: list[dict[str, Any]] = published()[name]["client_hellos"]
    return found


def key(hello: dict[str, Any]) -> Key:
    """The connection a published ClientHello belongs to."""
    return (hello["transport"], hello["src"], hello["src_port"], hello["dst"], hello["dst_port"])


@functools.cache
def fingerprinted(name: str) -> dict[tuple[Key, int], str]:
    """The JA4 values dronewatch writes for one capture, run as `dronewatch analyze` runs it:
    (connection, 1) for the ja4 of tls and quic records, (connection, 2) for a tls record's
    retry_ja4 (the ClientHello after a HelloRetryRequest)."""
    records: list[Record] = []
    run_source(FileSource(str(capture(FOXIO / name))), records.append)
    out: dict[tuple[Key, int], str] = {}
    for rec in records:
        if isinstance(rec, TlsRecord | QuicRecord):
            conn: Key = (
                "tcp" if isinstance(rec, TlsRecord) else "udp",
                rec.orig_h,
                rec.orig_p,
                rec.resp_h,
                rec.resp_p,
            )
            assert (conn, 1) not in out, f"two records for {conn}"
            if rec.ja4 is not None:
                out[conn, 1] = rec.ja4
            if isinstance(rec, TlsRecord) and rec.retry_ja4 is not None:
                out[conn, 2] = rec.retry_ja4
    return out


CAPTURES = sorted(published())


def test_the_data_names_every_copied_capture_and_its_bytes() -> None:
    """Each copied capture has its published values, and is the file they were published for."""
    assert [p.name for p in all_captures(FOXIO)] == CAPTURES
    for name in CAPTURES:
        digest = hashlib.sha256(capture(FOXIO / name).read_bytes()).hexdigest()
        assert digest == published()[name]["sha256"], name


@pytest.mark.parametrize("name", CAPTURES)
def test_every_client_hello_has_the_published_ja4(name: str) -> None:
    """Every ClientHello FoxIO publishes a JA4 for gets that JA4 (or, where the published value
    departs from the specification, the specification's), and no other ClientHello gets one."""
    got = fingerprinted(name)
    want: dict[tuple[Key, int], str] = {}
    for hello in hellos(name):
        # "spec_ja4" marks a published value that disagrees with FoxIO's written specification
        # (a non-ASCII first ALPN, see docs/zeek-differences.md): the specification wins.
        want[key(hello), hello["hello"]] = hello.get("spec_ja4", hello["ja4"])
    assert got == want


def test_agreement_with_the_published_outputs() -> None:
    """106 ClientHellos in 14 captures: 105 equal FoxIO's published JA4; the one that does not
    is the documented non-ASCII ALPN, where the specification's value is written instead."""
    total = agree = 0
    departures = []
    for name in CAPTURES:
        got = fingerprinted(name)
        for hello in hellos(name):
            total += 1
            value = got.get((key(hello), hello["hello"]))
            if value == hello["ja4"]:
                agree += 1
            else:
                departures.append((name, hello["src_port"], value, hello.get("spec_ja4")))
    assert (agree, total) == (105, 106)
    spec = "t13d1516bd_8daaf6152771_e5627efa2ab1"
    assert departures == [("tls-non-ascii-alpn.pcapng", 50112, spec, spec)]


def test_second_client_hellos_are_the_ones_after_a_hello_retry_request() -> None:
    """FoxIO's Python tool lists a second ClientHello on five connections of tls-sni.pcapng
    (the server's HelloRetryRequest is not in the capture): each is a tls record's retry_ja4."""
    seconds = [h for h in hellos("tls-sni.pcapng") if h["hello"] == 2]
    assert [h["src_port"] for h in seconds] == [50159, 50165, 50166, 50168, 50169]
    got = fingerprinted("tls-sni.pcapng")
    for hello in seconds:
        assert got[key(hello), 2] == "t13d1515h2_8daaf6152771_f37e75b10bcc"
        assert got[key(hello), 1] == "t13d1516h2_8daaf6152771_e5627efa2ab1"


# --- rules of the specification the captures do not exercise ---


@pytest.mark.parametrize(
    ("alpn", "expected"),
    [
        (b"\xab", "ab"),
        (b"\x20", "20"),
        (b"\xab\xcd", "ad"),
        (b"\x20\x61", "21"),
        (b"\x30\xab", "3b"),
        (b"\x61\x20", "60"),
        (b"\x30\x31\xab\xcd", "3d"),
        (b"\x30\xab\xcd\x31", "01"),
        (b"\xba\xad", "bd"),  # the first ALPN of tls-non-ascii-alpn.pcapng
        (b"h2", "h2"),
        (b"http/1.1", "h1"),
        (b"x", "xx"),  # a single character is both the first and the last
        (b"", "00"),
    ],
)
def test_alpn_examples_of_the_specification(alpn: bytes, expected: str) -> None:
    """The specification's examples of a first ALPN value: an end that is not an ASCII letter or
    digit gives the first and last characters of the value's hex form."""
    hello = parse_client_hello(client_hello_msg([0x1301], [alpn_ext(alpn, b"h2")]))
    assert ja4(hello)[8:10] == expected


def test_no_alpn_extension_or_no_value_is_00() -> None:
    """No ALPN extension, or one with no value, gives "00"."""
    without = parse_client_hello(client_hello_msg([0x1301], [ext(0x000A, vec(2, u16s([29])))]))
    empty = parse_client_hello(client_hello_msg([0x1301], [ext(0x0010, vec(2, b""))]))
    assert ja4(without)[8:10] == ja4(empty)[8:10] == "00"


def test_counts_stop_at_99() -> None:
    """More than 99 ciphers or extensions are counted as 99 (GREASE not counted); the hashes
    still take every value."""
    ciphers = [0x0A0A, *range(0x0100, 0x0100 + 120)]
    extensions = [ext(0x1A1A), *(ext(0xFE00 + i) for i in range(100))]
    hello = parse_client_hello(client_hello_msg(ciphers, extensions))
    assert ja4(hello).startswith("t12i9999")
    listed = ",".join(f"{c:04x}" for c in range(0x0100, 0x0100 + 120))
    assert ja4(hello).split("_")[1] == hashlib.sha256(listed.encode()).hexdigest()[:12]


def test_version_is_the_highest_supported_version_without_grease() -> None:
    """supported_versions decides the version (its highest non-GREASE value), not the hello's
    legacy version; without it the legacy version does."""
    versions = ext(0x002B, vec(1, u16s([0x7A7A, 0x0302, 0x0304, 0x0303])))
    assert ja4(parse_client_hello(client_hello_msg([0x1301], [versions])))[1:3] == "13"
    assert ja4(parse_client_hello(client_hello_msg([0x1301], [], version=0x0302)))[1:3] == "11"
    unknown = ext(0x002B, vec(1, u16s([0x0305])))
    assert ja4(parse_client_hello(client_hello_msg([0x1301], [unknown])))[1:3] == "00"


def test_sni_and_alpn_are_counted_but_not_hashed() -> None:
    """SNI and ALPN count among the extensions but are left out of the extension hash, so only
    the hash of a hello with nothing else is all zeros."""
    sni = ext(0x0000, vec(2, b"\x00" + vec(2, b"a.example")))
    hello = parse_client_hello(client_hello_msg([0x1301], [sni, alpn_ext(b"h2")]))
    assert ja4(hello) == "t12d0102h2_" + hashlib.sha256(b"1301").hexdigest()[:12] + "_000000000000"


def test_signature_algorithms_keep_their_order_without_grease() -> None:
    """Signature algorithms follow the sorted extensions in the order sent, GREASE left out."""
    signatures = ext(0x000D, vec(2, u16s([0x0804, 0x0A0A, 0x0403, 0x0401])))
    hello = parse_client_hello(client_hello_msg([0x1301], [ext(0x0017), signatures]))
    part_c = hashlib.sha256(b"000d,0017_0804,0403,0401").hexdigest()[:12]
    assert ja4(hello).endswith("_" + part_c)


@pytest.mark.parametrize("transport", ["t", "q", "d"])
def test_transport_letter(transport: str) -> None:
    """TLS over TCP is "t", QUIC "q", DTLS "d"."""
    assert ja4(parse_client_hello(client_hello_msg([0x1301], [])), transport)[0] == transport
