"""Framings that carry another protocol's bytes inside one direction of a TCP stream.

- RFC 2228's security exchange on an FTP control channel: after `AUTH GSSAPI`, the client's
  `ADAT <base64>` commands and the server's `335 ADAT=<base64>` (more needed) and
  `235 ADAT=<base64>` (done) replies. GSI, GridFTP's security, sends its TLS handshake that way.
- RFC 6455 WebSocket frames after an HTTP/1.1 `Upgrade: websocket` answered by `101`: a tunnel
  (wstunnel, a browser's socket) may carry TLS in its binary frames.

Each envelope takes a direction's bytes as they come, in order, and gives the bytes it carries;
`None` once it cannot follow them (a token that is not base64, a compressed or unknown frame),
and from then on, for good. The reader of the carried bytes (the TLS or HTTP analyzer) bounds
what it keeps; an envelope keeps at most one line or one frame header.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping

WS_CONTINUATION, WS_TEXT, WS_BINARY = 0x0, 0x1, 0x2
WS_CLOSE, WS_PING, WS_PONG = 0x8, 0x9, 0xA
_WS_DATA = frozenset({WS_CONTINUATION, WS_TEXT, WS_BINARY})
_WS_CONTROL = frozenset({WS_CLOSE, WS_PING, WS_PONG})


def adat_start(seen: bytes, from_client: bool) -> int:
    """Where the first ADAT token's line starts in a direction's plaintext `seen`; -1 when none
    does. (A search for the literal first: every segment of a flow whose TLS has not started is
    looked at, most of them binary.)"""
    needle = b"ADAT " if from_client else b" ADAT="
    at = seen.find(needle)
    while at >= 0:
        start = at if from_client else at - 3  # a reply: `335 ADAT=` or `235 ADAT=`
        if (
            start >= 0
            and (start == 0 or seen[start - 1] == 0x0A)
            and (from_client or seen[start : start + 3] in (b"335", b"235"))
        ):
            return start
        at = seen.find(needle, at + 1)
    return -1


class AdatTokens:
    """The bytes of a direction's ADAT tokens, each decoded when its line ends (a line may be cut
    anywhere over segments). Lines without a token (a reply that carries none, a command after
    the exchange) give nothing."""

    __slots__ = ("from_client", "limit", "line", "lost")

    def __init__(self, from_client: bool, limit: int) -> None:
        self.from_client = from_client
        self.limit = limit
        """Longest line kept while its end is awaited."""
        self.line = bytearray()
        self.lost = False

    def feed(self, data: bytes) -> bytes | None:
        if self.lost:
            return None
        out = bytearray()
        buf = self.line
        buf += data
        while True:
            end = buf.find(b"\n")
            if end < 0:
                break
            line = bytes(buf[:end]).rstrip(b"\r")
            del buf[: end + 1]
            token: bytes | None = None
            if self.from_client and line.startswith(b"ADAT "):
                token = line[5:]
            elif not self.from_client and line[:9] in (b"335 ADAT=", b"235 ADAT="):
                token = line[9:]
            if token is None:
                continue
            try:
                out += binascii.a2b_base64(token, strict_mode=True)
            except (binascii.Error, ValueError):
                self._lose()
                return None
        if len(buf) > self.limit:
            self._lose()
            return None
        return bytes(out)

    def _lose(self) -> None:
        self.lost = True
        self.line.clear()


def names_websocket(headers: Mapping[str, str]) -> bool:
    """Whether an HTTP head's `Upgrade` header (by lower-case name, as the HTTP analyzer parses
    heads) names WebSocket: a request asking to switch (RFC 6455 4.1), or with status 101 the
    answer that switches (4.2.2). The header is a list of protocols (RFC 9110 7.8)."""
    return any(p.strip().lower() == "websocket" for p in headers.get("upgrade", "").split(","))


class WebSocketFrames:
    """The payload of a direction's data frames (RFC 6455 5.2: text, binary, continuation),
    unmasked; control frames (close, ping, pong) passed over. A frame with a reserved bit set
    (compressed by an extension, permessage-deflate) or of an unknown opcode cannot be
    followed."""

    __slots__ = ("head", "left", "mask", "at", "data", "lost")

    def __init__(self) -> None:
        self.head = bytearray()
        """A frame header cut short."""
        self.left = 0
        """Payload bytes of the current frame still to come."""
        self.mask = b""
        """The frame's masking key (a client's frames are masked), empty when unmasked."""
        self.at = 0
        """Payload bytes of the current frame read so far (where in the key the next one is)."""
        self.data = False
        """The current frame carries data (its payload is handed on)."""
        self.lost = False

    def feed(self, data: bytes) -> bytes | None:
        if self.lost:
            return None
        out = bytearray()
        pos, size = 0, len(data)
        while pos < size:
            if self.left:
                take = min(self.left, size - pos)
                if self.data:
                    out += self._unmask(data[pos : pos + take])
                self.left -= take
                self.at += take
                pos += take
                continue
            head = self.head
            had = len(head)
            head += data[pos : pos + 14 - had]  # up to the longest header
            need = _header_size(head)
            if len(head) < need:
                break  # every byte left is in `head`: the header ends in the next segment
            pos += need - had  # the bytes taken past the header are payload, read next
            first, second = head[0], head[1]
            opcode = first & 0x0F
            if first & 0x70 or (opcode not in _WS_DATA and opcode not in _WS_CONTROL):
                self.lost = True
                head.clear()
                return None
            length = second & 0x7F
            at = 2
            if length == 126:
                length, at = int.from_bytes(head[2:4], "big"), 4
            elif length == 127:
                length, at = int.from_bytes(head[2:10], "big"), 10
            self.mask = bytes(head[at : at + 4]) if second & 0x80 else b""
            self.left, self.at, self.data = length, 0, opcode in _WS_DATA
            head.clear()
        return bytes(out)

    def _unmask(self, chunk: bytes) -> bytes:
        if not self.mask:
            return chunk
        shift = self.at % 4
        key = (self.mask[shift:] + self.mask[:shift]) * (len(chunk) // 4 + 1)
        n = len(chunk)
        return (int.from_bytes(chunk, "big") ^ int.from_bytes(key[:n], "big")).to_bytes(n, "big")


def _header_size(head: bytes | bytearray) -> int:
    """Bytes of the frame header that begins `head` (2 to 14); 2 while its length byte is not
    there yet."""
    if len(head) < 2:
        return 2
    length = head[1] & 0x7F
    size = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    return size + (4 if head[1] & 0x80 else 0)
