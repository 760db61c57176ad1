"""Tests for the framings that carry a TCP direction's bytes: RFC 2228 ADAT tokens and RFC 6455
WebSocket frames (`dronewatch.analyzers._envelope`)."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers._envelope import (
    WS_BINARY,
    WS_CLOSE,
    WS_CONTINUATION,
    WS_PING,
    WS_TEXT,
    AdatTokens,
    WebSocketFrames,
    adat_start,
    names_websocket,
)


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"", rsv: int = 0
) -> bytes:
    """One WebSocket frame as RFC 6455 5.2 lays it out (the shortest length form)."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, (0x80 if mask else 0) | n])
    elif n < 1 << 16:
        head = bytes([first, (0x80 if mask else 0) | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, (0x80 if mask else 0) | 127]) + n.to_bytes(8, "big")
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + payload


def feed_in(reader: WebSocketFrames | AdatTokens, data: bytes, cuts: list[int]) -> bytes | None:
    """`data` fed in segments cut at `cuts`; what the reader gives, or None once it gave up."""
    out = bytearray()
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        got = reader.feed(data[a:b])
        if got is None:
            return None
        out += got
    return bytes(out)


def test_frames_masked_and_not_every_length_form() -> None:
    """Data frames of each length form (7-bit, 16-bit, 64-bit), masked (a client's) or not,
    give their payload in order; a ping, a pong and a close between them give nothing."""
    big = os.urandom(70_000)
    stream = frame(WS_BINARY, b"abc", mask=b"\x01\x02\x03\x04")
    stream += frame(WS_PING, b"ping?", mask=b"\x09\x09\x09\x09")
    stream += frame(WS_BINARY, big[:300], fin=False)
    stream += frame(WS_CONTINUATION, big[300:], mask=b"\xff\x00\xff\x00")
    stream += frame(WS_TEXT, b"{}")
    stream += frame(WS_CLOSE, b"\x03\xe8")
    assert WebSocketFrames().feed(stream) == b"abc" + big + b"{}"


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    masks=st.lists(st.binary(min_size=4, max_size=4) | st.just(b""), min_size=6, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_fuzz_frames_cut_anywhere(
    payloads: list[bytes], masks: list[bytes], cuts: list[int]
) -> None:
    """However the frames are cut over segments (a header cut anywhere too), the payload is the
    data frames' bytes, in order."""
    stream = b"".join(frame(WS_BINARY, p, mask=m) for p, m in zip(payloads, masks, strict=False))
    assert feed_in(WebSocketFrames(), stream, cuts) == b"".join(payloads)


@pytest.mark.parametrize(
    "bad",
    [
        frame(WS_BINARY, b"x", rsv=0b100),  # permessage-deflate: a compressed payload
        frame(0x3, b"x"),  # a reserved opcode
        b"GET / HTTP/1.1\r\n",  # not frames at all
    ],
)
def test_frames_that_cannot_be_followed(bad: bytes) -> None:
    """A compressed frame, a reserved opcode, or bytes that are not frames: given up, for
    good."""
    reader = WebSocketFrames()
    assert reader.feed(frame(WS_BINARY, b"ok") + bad) is None
    assert reader.feed(frame(WS_BINARY, b"later")) is None  # for good


def test_upgrade_names_websocket() -> None:
    """An Upgrade header (a list of protocols, any case) naming WebSocket is told from others."""
    assert names_websocket({"upgrade": "websocket"})
    assert names_websocket({"upgrade": "h2c, WebSocket"})
    assert not names_websocket({"upgrade": "h2c"})
    assert not names_websocket({"connection": "upgrade"})


def test_adat_tokens_lines_cut_anywhere() -> None:
    """The client's ADAT commands and the server's 335/235 replies give their decoded tokens,
    lines cut anywhere; lines without a token give nothing; a token that is not base64, or a
    line that outgrows the limit, stops the reading."""
    one, two = os.urandom(500), os.urandom(40)
    client = (
        b"ADAT " + base64.b64encode(one) + b"\r\nPBSZ 0\r\nADAT " + base64.b64encode(two) + b"\r\n"
    )
    for cut in range(0, len(client), 97):
        assert feed_in(AdatTokens(True, 4096), client, [cut, cut + 3]) == one + two
    server = b"334 ADAT must follow\r\n335 ADAT=" + base64.b64encode(one) + b"\r\n"
    server += b"235 ADAT=" + base64.b64encode(two) + b"\r\n"
    assert AdatTokens(False, 4096).feed(server) == one + two
    bad = AdatTokens(True, 4096)
    assert bad.feed(b"ADAT not*base64\r\n") is None
    assert bad.feed(b"ADAT " + base64.b64encode(one) + b"\r\n") is None  # for good
    assert AdatTokens(True, 100).feed(b"ADAT " + b"A" * 200) is None


def test_adat_start() -> None:
    """Where the exchange's first token line begins, after the plaintext before it."""
    assert adat_start(b"AUTH GSSAPI\r\nADAT FgMB", True) == 13
    assert adat_start(b"ADAT FgMB", True) == 0
    assert adat_start(b"334 ok\r\n335 ADAT=FgMB", False) == 8
    assert adat_start(b"USER ADAT here\r\n", True) == -1
    assert adat_start(b"ADAT FgMB", False) == -1
