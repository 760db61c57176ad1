"""Tests for the DNS record rendering and type table: each record type, from byte literals, as
Zeek's dns.log writes it among the answers (formats from Zeek's test baselines)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers._dns_rdata import DNS_TYPE_NAMES, NOT_LOGGED, render
from dronewatch.analyzers.dns import dns_type_name, parse_dns_message
from dronewatch.exceptions import DecodeError

# A response header (id 1, QR|AA, one question, `n` answers) and the question `upenn.edu A IN`,
# whose name sits at offset 12 (pointer 0xc00c), "edu" at offset 18 (pointer 0xc012).
QUESTION = b"\x05upenn\x03edu\x00" + struct.pack(">HH", 1, 1)


def message(*records: tuple[int, bytes], ttl: int = 300) -> bytes:
    """A response to QUESTION whose answers are (type, rdata) records owned by the question's
    name."""
    head = struct.pack(">HHHHHH", 1, 0x8400, 1, len(records), 0, 0)
    body = b"".join(
        b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata
        for rtype, rdata in records
    )
    return head + QUESTION + body


def texts(*records: tuple[int, bytes]) -> list[str | None]:
    """The rendering of each answer of `message(*records)`."""
    return [rr.text for rr in parse_dns_message(message(*records), text=True).answers]


def no_names(at: int) -> str:
    """A ReadName for data without names."""
    raise AssertionError(f"no name expected at {at}")


def test_addresses() -> None:
    """A and AAAA answers are their addresses; a wrong length gives nothing."""
    assert texts(
        (1, bytes([128, 91, 234, 142])),
        (28, bytes.fromhex("20010db8000000000000000000000040")),
        (1, b"\x01\x02\x03"),
    ) == ["128.91.234.142", "2001:db8::40", None]


def test_target_names_lower_case() -> None:
    """CNAME, NS, PTR, MX and SRV answers are their target names, lower case without the dot;
    SOA is its primary server's name; a name at the root is empty (Zeek logs no answer)."""
    cname = b"\x03WWW\x07edgekey\x03NET\x00"
    mx = b"\x00\x0a\x02mx\xc0\x0c"
    srv = b"\x00\x01\x00\x02\x01\xbb\x04sip1\xc0\x0c"
    soa = b"\x03ns1\xc0\x0c\x0ahostmaster\xc0\x0c" + struct.pack(">IIIII", 1, 2, 3, 4, 5)
    assert texts(
        (5, cname), (2, b"\x02NS\xc0\x12"), (12, b"\x00"), (15, mx), (33, srv), (6, soa)
    ) == [
        "www.edgekey.net",
        "ns.edu",
        "",
        "mx.upenn.edu",
        "sip1.upenn.edu",
        "ns1.upenn.edu",
    ]


def test_soa_cut_short_gives_nothing() -> None:
    """An SOA whose five numbers are missing is not rendered (Zeek does not log it)."""
    soa = b"\x03ns1\xc0\x0c\x0ahostmaster\xc0\x0c" + b"\x00" * 19
    assert texts((6, soa)) == [None]


def test_txt_and_spf_strings() -> None:
    """TXT and SPF answers: `TXT <len> <text>` for each string, joined by spaces; no strings is
    empty; a string running past the data is not rendered (dns-txt-multiple.pcap, dns-spf.pcap)."""
    two = b"\x05k=rsa\x03p=M"
    assert texts((16, two), (99, b"\x13v=spf1 mx -all test"), (16, b"\x09short")) == [
        "TXT 5 k=rsa TXT 3 p=M",
        "SPF 19 v=spf1 mx -all test",
        None,
    ]
    assert render(16, "x", b"\x00", 0, 1, no_names) == "TXT 0 "


def test_txt_bytes_that_are_not_utf8_are_escaped() -> None:
    """Bytes of a TXT string that are not UTF-8 are kept as \\xNN, the length counting bytes."""
    assert texts((16, b"\x03a\xffb")) == ["TXT 3 a\\xffb"]


def test_dnssec_records() -> None:
    """RRSIG, DNSKEY, DS, NSEC, NSEC3 and NSEC3PARAM as dnssec/*.pcap's baselines write them."""
    rrsig = struct.pack(">HBBIIIH", 48, 8, 2, 3600, 0, 0, 4242) + b"\xc0\x0c" + b"sig"
    rrsig_root = struct.pack(">HBBIIIH", 2, 8, 0, 3600, 0, 0, 1) + b"\x00" + b"sig"
    dnskey = struct.pack(">HBB", 257, 3, 5) + b"key"
    ds = struct.pack(">HBB", 1234, 5, 2) + b"digest"
    nsec = b"\x03www\xc0\x0c" + b"\x00\x01\x40"
    nsec3 = b"\x01\x00\x00\x0a\x00\x04hash" + b"\x00\x01\x40"
    nsec3param = b"\x01\x00\x00\x0a\x00"
    assert texts(
        (46, rrsig),
        (46, rrsig_root),
        (48, dnskey),
        (43, ds),
        (47, nsec),
        (50, nsec3),
        (51, nsec3param),
    ) == [
        "RRSIG 48 upenn.edu",
        "RRSIG 2 <Root>",
        "DNSKEY 5",
        "DS 5 2",
        "NSEC upenn.edu www.upenn.edu",
        "NSEC3",
        "NSEC3PARAM",
    ]


def test_dnssec_records_too_short() -> None:
    """DNSSEC data too short for its fixed fields is not rendered."""
    assert texts((46, b"\x00" * 18), (48, b"\x01\x01\x03"), (43, b"\x00\x01"), (51, b"\x01")) == [
        None,
        None,
        None,
        None,
    ]


def test_sshfp_loc_and_bind_signing() -> None:
    """SSHFP is its fingerprint in hex, LOC its size and precisions (16 bytes or nothing), and
    BIND's private type 65534 a fixed text (sshfp-trunc.pcap, loc-29-trunc.pcap, dns-binds.pcap)."""
    sshfp = b"\x01\x01" + bytes.fromhex("a6b95f9eba1104a7272a362e8bfbcbebd5726dcf")
    loc = bytes([0, 18, 21, 19]) + b"\x00" * 12
    assert texts((44, sshfp), (29, loc), (29, loc[:15]), (65534, b"\x08\x10\x92\x00\x01")) == [
        "SSHFP: a6b95f9eba1104a7272a362e8bfbcbebd5726dcf",
        "LOC:  18 21 19",
        None,
        "BIND9 signing signal",
    ]


def test_naptr() -> None:
    """NAPTR is `NAPTR <order> <preference> <flags> <services>` and its regexp and replacement
    when they are not empty; the replacement keeps its case."""
    sip = (
        struct.pack(">HH", 100, 10) + b"\x01S\x07SIP+D2U\x00\x04_sip\x04_udp\x07Example\x03com\x00"
    )
    e2u = struct.pack(">HH", 10, 1) + b"\x01u\x07E2U+sip\x10!^.*$!sip:a@b.c!\x00"
    assert texts((35, sip), (35, e2u), (35, sip[:9])) == [
        "NAPTR 100 10 S SIP+D2U _sip._udp.Example.com",
        "NAPTR 10 1 u E2U+sip !^.*$!sip:a@b.c!",
        None,
    ]


def test_wks_is_an_answer_without_text() -> None:
    """WKS is empty: Zeek counts it as an answer but writes nothing for it."""
    assert texts((11, b"\x0a\x00\x00\x01\x06\x00")) == [""]


@pytest.mark.parametrize("rtype", sorted(NOT_LOGGED))
def test_types_zeek_does_not_log(rtype: int) -> None:
    """HINFO, NB, OPT, SVCB, HTTPS, TKEY, TSIG and CAA give no answer at all."""
    assert texts((rtype, b"\x00\x01\x00")) == [None]


def test_other_types_are_unknown_and_empty_data_is_nothing() -> None:
    """A type not rendered (DNAME, TLSA, a private type) is `<unknown type=N>`; a record without
    data renders as nothing."""
    assert texts((39, b"\x00"), (52, b"\x03\x01\x01ab"), (65280, b"x"), (16, b"")) == [
        "<unknown type=39>",
        "<unknown type=52>",
        "<unknown type=65280>",
        None,
    ]


def test_bad_name_inside_the_data_is_not_rendered() -> None:
    """A name inside the data that does not parse (a forward pointer loop) leaves that record
    unrendered and the message readable."""
    rrsig = struct.pack(">HBBIIIH", 1, 8, 2, 3600, 0, 0, 1) + b"\xc0\xff"
    msg = parse_dns_message(message((46, rrsig), (1, b"\x01\x02\x03\x04")), text=True)
    assert [rr.text for rr in msg.answers] == [None, "1.2.3.4"]


def test_no_text_unless_asked() -> None:
    """Without `text`, records are not rendered (the mDNS analyzer and the agent do not pay)."""
    msg = parse_dns_message(message((16, b"\x02hi")))
    assert msg.answers[0].text is None


def test_type_table_is_the_iana_registry() -> None:
    """Every name is unique; the types Zeek's baselines name have their IANA names; values with
    no IANA name are TYPE<n> (RFC 3597)."""
    assert len(set(DNS_TYPE_NAMES.values())) == len(DNS_TYPE_NAMES)
    named = {11: "WKS", 30: "NXT", 44: "SSHFP", 51: "NSEC3PARAM", 249: "TKEY", 68: "BRID"}
    assert {code: dns_type_name(code) for code in named} == named
    assert dns_type_name(255) == "ANY"
    assert [dns_type_name(code) for code in (54, 65534, 0)] == ["TYPE54", "TYPE65534", "TYPE0"]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 65535), st.binary(max_size=80))
def test_fuzz_render_raises_only_decode_error(rtype: int, rdata: bytes) -> None:
    """Any type with any data renders to text or nothing, raising only DecodeError."""
    data = message((rtype, rdata))
    start = len(data) - len(rdata)
    try:
        text = render(rtype, "upenn.edu", data, start, len(data), lambda at: "n")
    except DecodeError:
        return
    assert text is None or isinstance(text, str)
