"""IP fragment reassembly: whole datagrams from fragments in any order, overlaps, bounds."""

from __future__ import annotations

import struct

from dronewatch.capture.base import RawPacket
from dronewatch.capture.decode import Decoder
from dronewatch.capture.files import FileSource
from dronewatch.capture.fragments import FragmentOptions, FragmentReassembler
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.judge.flowlog import FlowRecord
from tests.factories import ip
from tests.pcaps import THIRD_PARTY, capture

SRC, DST = ip("10.0.0.1"), ip("10.0.0.2")


def udp_datagram(payload: bytes, sport: int = 5000, dport: int = 53) -> bytes:
    """A UDP header and payload (checksum 0: not checked)."""
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4_fragment(body: bytes, offset: int, more: bool, ident: int = 77) -> bytes:
    """An IPv4 packet carrying `body` at byte `offset` (a multiple of 8) of datagram `ident`."""
    flags = (0x2000 if more else 0) | (offset // 8)
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, flags, 64, 17, 0, SRC, DST
    )
    return header + body


def ipv6_fragment(body: bytes, offset: int, more: bool, ident: int = 99) -> bytes:
    """An IPv6 packet with a Fragment header carrying `body` at `offset` of UDP datagram
    `ident`."""
    frag = struct.pack("!BBHI", 17, 0, offset | (1 if more else 0), ident)
    header = struct.pack(
        "!IHBB16s16s", 0x60000000, 8 + len(body), 44, 64, ip("2001:db8::1"), ip("2001:db8::2")
    )
    return header + frag + body


def raw(data: bytes, ts: float = 1.0, frame: int = 1) -> RawPacket:
    """A raw-IP frame."""
    return RawPacket(ts, 101, data, len(data), 0, frame)


def test_ipv4_fragments_in_any_order_make_one_packet() -> None:
    """Three IPv4 fragments, the last first, decode as one UDP packet once the third comes."""
    datagram = udp_datagram(b"x" * 40)
    parts = [datagram[0:16], datagram[16:32], datagram[32:]]
    decoder = Decoder()
    got = [
        decoder.decode(raw(ipv4_fragment(parts[2], 32, False))),
        decoder.decode(raw(ipv4_fragment(parts[0], 0, True))),
        decoder.decode(raw(ipv4_fragment(parts[1], 16, True))),
    ]
    assert got[:2] == [None, None]
    pkt = got[2]
    assert pkt is not None and (pkt.sport, pkt.dport) == (5000, 53)
    assert pkt.payload == b"x" * 40 and pkt.ip_len == 20 + len(datagram)
    assert decoder.stats.fragments == 3 and decoder.fragments.reassembled == 1


def test_overlapping_fragment_keeps_the_first_bytes() -> None:
    """A fragment rewriting bytes already received changes nothing (first copy wins)."""
    datagram = udp_datagram(b"a" * 24)
    r = FragmentReassembler()
    assert r.add(1.0, ipv4_fragment(datagram[:16], 0, True), 0) is None
    assert r.add(1.0, ipv4_fragment(b"B" * 16, 8, True), 0) is None  # overlaps 8..16
    whole = r.add(1.0, ipv4_fragment(datagram[24:], 24, False), 0)
    assert whole is not None
    assert whole[20:] == datagram[:16] + b"B" * 8 + datagram[24:]
    assert whole[6:8] == b"\x00\x00"  # no longer a fragment


def test_ipv6_fragments_make_one_packet() -> None:
    """IPv6 fragments (Fragment header) decode as one packet of the next header's protocol."""
    datagram = udp_datagram(b"y" * 30, sport=53, dport=40000)
    decoder = Decoder()
    assert decoder.decode(raw(ipv6_fragment(datagram[:24], 0, True))) is None
    pkt = decoder.decode(raw(ipv6_fragment(datagram[24:], 24, False)))
    assert pkt is not None and pkt.ip_version == 6 and pkt.proto == 17
    assert pkt.payload == b"y" * 30


def test_incomplete_datagram_times_out_and_bounds_hold() -> None:
    """A datagram missing a fragment is dropped after the timeout; too many pending datagrams
    drop the oldest; a fragment past 65,535 bytes drops its datagram."""
    r = FragmentReassembler(FragmentOptions(max_datagrams=2, timeout_s=5.0))
    assert r.add(1.0, ipv4_fragment(b"a" * 8, 0, True, ident=1), 0) is None
    assert r.add(7.0, ipv4_fragment(b"b" * 8, 0, True, ident=2), 0) is None
    assert r.dropped == 1  # ident 1 timed out
    r.add(7.0, ipv4_fragment(b"c" * 8, 0, True, ident=3), 0)
    r.add(7.0, ipv4_fragment(b"d" * 8, 0, True, ident=4), 0)
    assert r.dropped == 2  # ident 2 went: two pending at most
    assert r.add(7.0, ipv4_fragment(b"e" * 16, 65528, False, ident=5), 0) is None
    assert r.dropped == 3


def test_fragmented_dns_response_over_ipv6_is_read() -> None:
    """Zeek's ipv6-fragmented-dns.pcap: the TXT answer comes in three IPv6 fragments; reassembled,
    it is one response packet that answers its query (before, the answer was lost)."""
    flows: list[FlowRecord] = []
    answered: list[object] = []
    run_source(
        FileSource(str(capture(THIRD_PARTY / "zeek" / "ipv6-fragmented-dns.pcap"))),
        lambda r: (flows if isinstance(r, FlowRecord) else answered).append(r),
        AnalysisConfig(),
    )
    (flow,) = [f for f in flows if f.orig_p == 51851]
    assert (flow.orig_pkts, flow.resp_pkts) == (2, 1)
    assert flow.resp_payload_bytes == 3230
    dns = [r for r in answered if getattr(r, "log", "") == "dns"]
    assert any(getattr(r, "answered", False) and getattr(r, "trans_id", 0) for r in dns)
