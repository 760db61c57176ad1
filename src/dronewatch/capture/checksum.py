"""Internet checksums (RFC 1071) of IPv4 headers and TCP, UDP and ICMP messages, and what a
wrong one is taken for.

A receiver drops a packet whose checksum is wrong, so its bytes never reached anyone: with
checking on (`--checksums auto` or `verify`), such a packet is counted
(`DecodeStats.bad_checksums`) and, for TCP and UDP, marked with a `C`/`c` letter in its flow's
history at the 1st, 10th, 100th... one of a direction, as Zeek writes it; nothing else of it is
read. In a tunnel every IPv4 header is checked, the innermost transport, and the UDP checksum of
a VXLAN or Geneve datagram (`tunnel_ok`), whose packet inside is dropped with it. A packet cut
by the snap length cannot be checked and is taken as it is.

A capture taken on the sending host itself sees its packets before the network card fills
their checksums in (checksum offload). Such a checksum holds what the sender's stack left for
the card: the sum of the pseudo-header, with the segment's length, or without it for a segment
the card is also to cut (TCP segmentation offload: Linux `CHECKSUM_PARTIAL`, and the same on
Windows and macOS), or 0 (an IPv4 header left to the card). In mode `auto` (the default) those
values are taken as unfilled, not wrong: the packet did leave the device. Mode `verify` takes
every wrong checksum for a bad one, as Zeek does by default (and an IPv4 total length of 0, which
only a segment cut by the card has); `ignore` checks none (Zeek's `-C`).

`ignore` is the default: a monitor of what leaves a device must not lose a packet to a checksum
an anonymiser rewrote without fixing, or one a capture tool left out, and a packet its receiver
dropped is at worst counted once too often (TCP sends its bytes again). Checking is for a capture
whose corruption should count (a lossy mirror, a crafted trace) and for comparing with Zeek.

The C walk (`fastpath/_fastpath.c`, `checksum_ok`) keeps the packets it finds wrong for the
decoder, which decides here; `tests/unit/capture/test_checksum.py` holds the two together.
"""

from __future__ import annotations

import struct

CHECKSUM_MODES = ("ignore", "auto", "verify")
"""What `--checksums` accepts; `ignore` is the default."""

IGNORE, AUTO, VERIFY = 0, 1, 2
"""The modes as the decoder and the C walk hold them."""
MODE_CODES = {"ignore": IGNORE, "auto": AUTO, "verify": VERIFY}

_LEN_PROTO = struct.Struct("!HH")


def ones_sum(data: bytes) -> int:
    """The 16-bit one's complement sum of `data` (RFC 1071), an odd last byte padded with a
    zero. Computed as the big-endian number the bytes make, modulo 0xFFFF (2**16 is 1 modulo
    0xFFFF), with 0xFFFF for a non-zero multiple (the sum of bytes that are not all zero is
    never 0 in one's complement)."""
    if len(data) & 1:
        data += b"\0"
    n = int.from_bytes(data, "big")
    if n == 0:
        return 0
    r = n % 0xFFFF
    return r if r else 0xFFFF


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """The pseudo-header a TCP or UDP checksum covers (RFC 9293 3.1, RFC 768; RFC 8200 8.1 for
    IPv6: the same fields, the length in 32 bits)."""
    if len(src) == 4:
        return src + dst + _LEN_PROTO.pack(proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def header_ok(header: bytes, mode: int) -> bool:
    """Whether an IPv4 header's checksum is right, or (mode `auto`) left at 0 for the card."""
    if ones_sum(header) == 0xFFFF:
        return True
    return mode == AUTO and header[10:12] == b"\0\0"


def segment_ok(
    src: bytes, dst: bytes, proto: int, segment: bytes, field_at: int, mode: int
) -> bool:
    """Whether the checksum of a TCP (6), UDP (17), ICMP (1) or ICMPv6 (58) message is right, or
    (mode `auto`) one a sender left for its card. `segment`: the transport header and its
    payload, whole; `field_at`: where its checksum field lies in it. A UDP checksum of 0 over
    IPv4 means none was computed (RFC 768)."""
    field = segment[field_at : field_at + 2]
    if proto == 17 and field == b"\0\0" and len(src) == 4:
        return True
    if proto == 1:
        return ones_sum(segment) == 0xFFFF  # no pseudo-header, and never offloaded
    if ones_sum(pseudo_header(src, dst, proto, len(segment)) + segment) == 0xFFFF:
        return True
    if mode != AUTO:
        return False
    value = int.from_bytes(field, "big")
    return (
        value == 0
        or value == ones_sum(pseudo_header(src, dst, proto, len(segment)))
        or value == ones_sum(pseudo_header(src, dst, proto, 0))
    )


def tunnel_ok(src: bytes, dst: bytes, datagram: bytes, mode: int) -> bool:
    """Whether the UDP datagram of a tunnel (VXLAN, Geneve: `datagram` is its header and
    payload, whole) is taken as right. A checksum of 0 means none was computed, over IPv6 too:
    VXLAN is sent so (RFC 7348 5), and a tunnel may send zero UDP checksums over IPv6 (RFC 6935,
    RFC 8926 3.3); Zeek takes a VXLAN one so. Any other value is checked as a UDP checksum is
    (`segment_ok`); a wrong one was dropped by the decapsulating receiver, so nothing inside
    the datagram was delivered."""
    if datagram[6:8] == b"\0\0":
        return True
    return segment_ok(src, dst, 17, datagram, 6, mode)
