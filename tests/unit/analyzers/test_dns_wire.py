"""The C reader of DNS messages (`_fastpath.dns_parse`) reads every message as the Python reader
does: the same objects, field by field, and the same error for a message that does not parse."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers import dns
from dronewatch.exceptions import DecodeError

pytestmark = pytest.mark.skipif(dns._c_parse is None, reason="the C extension is not built")

# Types the readers treat apart (addresses, target names, SRV, MX, DNAME) and some that only the
# renderer reads (SOA, TXT, RRSIG, NSEC, SSHFP, CAA, HTTPS, an unknown type).
TYPES = (1, 28, 2, 5, 12, 39, 33, 15, 6, 16, 46, 47, 44, 257, 65, 0xFF00)


def both(data: bytes, extra: bool, text: bool) -> tuple[object, object]:
    """What each reader makes of `data`: its message, or the error it raised (type and text)."""
    out = []
    for read in (
        lambda: dns._c_parse(data, extra, text),  # type: ignore[misc]
        lambda: dns._parse_message(data, extra=extra, text=text),
    ):
        try:
            out.append(read())
        except DecodeError as exc:
            out.append(("DecodeError", str(exc)))
    return out[0], out[1]


@st.composite
def names(draw: st.DrawFn, at: int, known: list[int]) -> bytes:
    """A name written at offset `at`: labels (any bytes, UTF-8 or not, now and then of a kind
    that does not exist), then the root, a compression pointer (mostly at a name written
    before, else anywhere: forwards, at itself, past the end), or nothing. Its offset joins
    `known`."""
    out = b""
    for label in draw(
        st.lists(
            st.binary(min_size=1, max_size=70)
            | st.text(min_size=1, max_size=20).map(lambda t: t.encode()[:63])
            | st.sampled_from((b"www", b"DJI", b"caf\xc3\xa9", b"a.b", b"\xe2\x82", b"\xff")),
            max_size=6,
        )
    ):
        kind = draw(st.sampled_from((0,) * 63 + (0x40,)))
        out += bytes([min(len(label), 63) | kind]) + label[:63]
    end = draw(st.sampled_from(("root", "pointer", "pointer", "none")))
    if end == "root":
        out += b"\0"
    elif end == "pointer":
        anywhere = not known or draw(st.sampled_from((False,) * 4 + (True,)))
        target = draw(st.integers(0, at + 40)) if anywhere else draw(st.sampled_from(known))
        out += struct.pack(">H", 0xC000 | target)
    known.append(at)
    return out


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A message of questions and records whose names point at each other, with record data of
    the right and the wrong size for its type; now and then cut short or with counts that lie."""
    qd, an, ns, ar = (draw(st.integers(0, 3)) for _ in range(4))
    flags = draw(st.sampled_from((0x0100, 0x8180, 0x8183, 0x2800, 0xA800)))
    known: list[int] = []
    body = b""
    for _ in range(qd):
        body += draw(names(12 + len(body), known))
        body += struct.pack(">HH", draw(st.sampled_from(TYPES)), 1)
    for _ in range(an + ns + ar):
        rtype = draw(st.sampled_from(TYPES))
        owner = draw(names(12 + len(body), known))
        if draw(st.sampled_from((True, True, True, False))):
            rdata = {1: 4, 28: 16}.get(rtype, 0) * b"\x01"
            if not rdata:
                rdata = draw(st.integers(0, 6)).to_bytes(2, "big") * 3
                rdata += draw(names(12 + len(body) + len(owner) + 10 + len(rdata), known))
        else:
            rdata = draw(st.binary(max_size=40))
        ttl = draw(st.integers(0, 2**32 - 1))
        body += owner + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata
    lie = st.sampled_from((0,) * 12 + (1, -1))
    counts = (max(0, n + draw(lie)) for n in (qd, an, ns, ar))
    header = struct.pack(">HHHHHH", draw(st.integers(0, 65535)), flags, *counts)
    data = header + body
    if draw(st.sampled_from((False,) * 7 + (True,))):
        return data[: draw(st.integers(0, len(data)))]
    return data


@settings(max_examples=600, deadline=None)
@given(messages(), st.booleans(), st.booleans())
def test_c_reader_reads_messages_as_python_does(data: bytes, extra: bool, text: bool) -> None:
    c, py = both(data, extra, text)
    assert c == py


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.booleans(), st.booleans())
def test_c_reader_reads_any_bytes_as_python_does(data: bytes, extra: bool, text: bool) -> None:
    c, py = both(data, extra, text)
    assert c == py


def test_pointer_chains_and_loops_end_alike() -> None:
    """A chain of pointers longer than the hop limit, and a pointer at itself, fail the same way
    in both readers; a name a pointer reaches through a short chain reads the same."""
    hops = 200
    chain = b"".join(struct.pack(">H", 0xC000 | (12 + 2 * (i + 1))) for i in range(hops))
    chain += b"\x03www\x00"
    long_chain = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + chain + b"\0\1\0\1"
    loop = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\0\1\0\1"
    for data in (long_chain, loop):
        c, py = both(data, False, True)
        assert c == py == ("DecodeError", "compression pointer loop")
    short = struct.pack(">HHHHHH", 1, 0, 2, 0, 0, 0) + b"\x03www\x00\0\1\0\1" + b"\xc0\x0c\0\1\0\1"
    c, py = both(short, False, True)
    assert c == py
    assert [q.name for q in c.questions] == ["www", "www"]  # type: ignore[attr-defined]
