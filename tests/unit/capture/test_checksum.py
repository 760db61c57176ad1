"""Checksums (`dronewatch.capture.checksum`): the sum itself, what each `--checksums` mode drops,
on both paths (the C walk keeps for the decoder what it finds wrong), against Zeek's own
checksum traces (`pcaps/third_party/zeek/chksums/`, the `core.checksums` test's)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from dronewatch.capture.checksum import CHECKSUM_MODES, ones_sum, pseudo_header
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import EngineOptions
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, RunResult, run_source
from tests.pcaps import GOLDEN, THIRD_PARTY, capture
from tests.unit.capture.captures import pcap_bytes

ZEEK_CHKSUMS = THIRD_PARTY / "zeek" / "chksums"


def eth() -> Ether:
    """Both MACs given: scapy would otherwise ask the network for the destination's."""
    return Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")


def rfc1071(data: bytes) -> int:
    """The one's complement sum word by word, with end-around carries (RFC 1071 4.1)."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


@given(st.binary(max_size=300))
def test_ones_sum_is_rfc_1071s(data: bytes) -> None:
    assert ones_sum(data) == rfc1071(data)


def run(path: Path, checksums: str) -> tuple[RunResult, list[Record]]:
    """`path` analyzed with `--checksums checksums` on both paths, which must agree; the bulk
    path's result (with how many packets the C walk counted itself). Analyzers read a flow's
    first payload packet only, so the walk counts the rest."""
    got: dict[bool, list[Record]] = {False: [], True: []}
    results = {
        bulk: run_source(
            FileSource(str(path)),
            got[bulk].append,
            AnalysisConfig(bulk=bulk, checksums=checksums, engine=EngineOptions(inspect_packets=1)),
        )
        for bulk in (False, True)
    }
    assert got[True] == got[False]
    assert results[True].capture == results[False].capture
    return results[True], got[True]


def flows(records: list[Record]) -> list[dict[str, object]]:
    return [r.to_dict() for r in records if r.log == "flows"]


# ---- Zeek's traces: one packet each, its checksum right or wrong -------------------------------

ZEEK_BASELINES = GOLDEN / "zeek_baselines" / "chksums"

BAD_RUNS = {
    "core.checksums.bad.out": (
        "ip4-bad-chksum.pcap",
        "ip4-tcp-bad-chksum.pcap",
        "ip4-udp-bad-chksum.pcap",
        "ip4-icmp-bad-chksum.pcap",
        "ip6-route0-tcp-bad-chksum.pcap",
        "ip6-route0-udp-bad-chksum.pcap",
        "ip6-route0-icmp6-bad-chksum.pcap",
        "ip6-tcp-bad-chksum.pcap",
        "ip6-udp-bad-chksum.pcap",
        "ip6-icmp6-bad-chksum.pcap",
    ),
    "core.mobility-checksums.bad.out": (
        "ip6-hoa-tcp-bad-chksum.pcap",
        "ip6-hoa-udp-bad-chksum.pcap",
    ),
}
"""The traces Zeek's tests run, in their order, each adding its weird.log to the baseline; the
first line of `core.mobility-checksums` is a Mobility Header's, which dronewatch does not read."""


def bad_checksum_weirds(baseline: Path) -> list[dict[str, str]]:
    """The `bad_*_checksum` lines of concatenated weird.logs, in order."""
    out, names = [], []
    for line in capture(baseline).read_text().splitlines():
        if line.startswith("#fields"):
            names = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rec = dict(zip(names, line.split("\t"), strict=True))
            if rec["name"].startswith("bad_") and rec["name"] != "bad_MH_checksum":
                out.append(rec)
    return out


ZEEK_BAD = [
    (trace, weird)
    for log, traces in BAD_RUNS.items()
    for trace, weird in zip(traces, bad_checksum_weirds(ZEEK_BASELINES / log), strict=True)
]


@pytest.mark.parametrize(("trace", "weird"), ZEEK_BAD, ids=[t for t, _ in ZEEK_BAD])
@pytest.mark.parametrize("checksums", ["auto", "verify"])
def test_what_zeek_drops_is_dropped(trace: str, weird: dict[str, str], checksums: str) -> None:
    """Each packet Zeek drops with a `bad_IP_checksum`, `bad_TCP_checksum`, `bad_UDP_checksum`
    or `bad_ICMP_checksum` weird (`core.checksums`, `core.mobility-checksums`) is dropped in
    `verify` and `auto` (none of them holds an offloading sender's value), on both paths. A TCP
    or UDP one leaves the weird's connection with a `C` and nothing counted (OTH); an IP header
    or ICMP one leaves no flow. The IPv6 ones take their transport's addresses (the checksum's
    and the connection's, as Zeek names them) from a type 0 routing header (the final
    destination) and from a Home Address option (the source)."""
    result, records = run(capture(ZEEK_CHKSUMS / trace), checksums)
    assert result.capture.bad_checksums == 1
    got = flows(records)
    if weird["source"] not in ("TCP", "UDP"):
        assert got == []
        return
    assert [(f["history"], f["orig_pkts"], f["resp_pkts"], f["conn_state"]) for f in got] == [
        ("C", 0, 0, "OTH")
    ]
    ends = ("orig_h", "orig_p", "resp_h", "resp_p")
    assert [str(got[0][e]) for e in ends] == [weird[f"id.{e}"] for e in ends]


@pytest.mark.parametrize("trace", sorted(p.name for p in ZEEK_CHKSUMS.glob("*-chksum.pcap")))
def test_ignore_keeps_every_packet_and_good_ones_are_kept(trace: str) -> None:
    """`ignore` (the default, Zeek's `-C`) keeps every packet; a `*-good-chksum` trace loses
    none in any mode."""
    for checksums in CHECKSUM_MODES:
        result, records = run(capture(ZEEK_CHKSUMS / trace), checksums)
        if checksums == "ignore" or "-good-" in trace:
            assert result.capture.bad_checksums is None, checksums
            assert records and all("C" not in str(f.get("history", "")) for f in flows(records))


def test_a_capture_on_the_sending_host() -> None:
    """`localhost-bad-chksum.pcap`: an HTTP session captured on its client, whose six packets
    carry the pseudo-header sum its card was to complete. `auto` keeps them (the session as it
    was); `verify` drops them as Zeek does (the `core.checksums_ignore_nets` test's
    conn-failed.log: the client's SYN makes a flow of its own with `C`, the server's packets
    another, its client's letters `c`... turned round here, the server's port being a service
    port, which Zeek's bare run has none of)."""
    path = capture(ZEEK_CHKSUMS / "localhost-bad-chksum.pcap")
    kept, records = run(path, "auto")
    assert kept.capture.bad_checksums is None
    assert [(f["history"], f["orig_pkts"], f["resp_pkts"]) for f in flows(records)] == [
        ("ShADadFf", 6, 4)
    ]
    dropped, records = run(path, "verify")
    assert dropped.capture.bad_checksums == 6
    got = [(f["history"], f["orig_pkts"], f["resp_pkts"], f["conn_state"]) for f in flows(records)]
    assert got == [("C", 0, 0, "OTH"), ("^hCadf", 0, 4, "SHR")]


# ---- every kind of checksum, built ---------------------------------------------------------------

KINDS = ("right", "corrupt", "pseudo", "pseudo0", "zero")
"""The checksum field: right; right for other bytes (one payload byte changed after); the sum
of the pseudo-header with the segment's length, or without it (a sender's offload); 0."""


def with_checksum(frame: bytes, version: int, kind: str) -> bytes:
    """An Ethernet frame of one TCP segment or UDP datagram, its checksum made of `kind`."""
    data = bytearray(frame)
    l4_at = 14 + (20 if version == 4 else 40)
    number = data[14 + 9] if version == 4 else data[14 + 6]
    field = l4_at + (16 if number == 6 else 6)
    addrs = bytes(data[14 + 12 : 14 + 20] if version == 4 else data[14 + 8 : 14 + 40])
    half = len(addrs) // 2
    if kind == "corrupt":
        data[-1] ^= 0x5A
    elif kind in ("pseudo", "pseudo0"):
        length = len(data) - l4_at if kind == "pseudo" else 0
        pseudo = pseudo_header(addrs[:half], addrs[half:], number, length)
        data[field : field + 2] = ones_sum(pseudo).to_bytes(2, "big")
    elif kind == "zero":
        data[field : field + 2] = b"\0\0"
    return bytes(data)


def flow(version: int, proto: str, kind: str, n: int) -> list[bytes]:
    """A flow whose fourth data packet has a checksum of `kind`, the others right: a TCP
    connection (handshake, five segments) or five UDP datagrams. Its later packets are the C
    walk's to count, so the walk's checks are what keeps or hands over that one."""
    src, dst = ("10.9.0.2", "198.51.100.9") if version == 4 else ("2001:db8::2", "2001:db8:9::9")

    def ip(out: bool) -> IP | IPv6:
        a, b = (src, dst) if out else (dst, src)
        return IP(src=a, dst=b) if version == 4 else IPv6(src=a, dst=b)

    port = 40000 + n
    if proto == "udp":
        data = [raw(eth() / ip(True) / UDP(sport=port, dport=9000) / b"payload") for _ in range(5)]
    else:
        c, s = 1000, 5000
        data = [
            raw(eth() / ip(True) / TCP(sport=port, dport=443, flags="S", seq=c - 1)),
            raw(eth() / ip(False) / TCP(sport=443, dport=port, flags="SA", seq=s - 1, ack=c)),
            raw(eth() / ip(True) / TCP(sport=port, dport=443, flags="A", seq=c, ack=s)),
        ]
        for i in range(5):
            seg = TCP(sport=port, dport=443, flags="PA", seq=c + 7 * i, ack=s)
            data.append(raw(eth() / ip(True) / seg / b"payload"))
    data[-2] = with_checksum(data[-2], version, kind)
    return data


def kept_in(mode: str, version: int, proto: str, kind: str) -> bool:
    """Whether a packet of `kind` is kept in `mode`, as `capture.checksum` says."""
    if mode == "ignore" or kind == "right":
        return True
    if kind == "zero" and proto == "udp" and version == 4:
        return True  # no checksum computed (RFC 768)
    if kind == "corrupt":
        return False
    return mode == "auto"  # an offloading sender's value


CASES = [(v, p, k) for v in (4, 6) for p in ("tcp", "udp") for k in KINDS]


def run_cases(
    path: Path,
    cases: list[tuple[int, str, str]],
    make: Callable[[int, str, str, int], list[bytes]],
    checksums: str,
) -> tuple[RunResult, dict[object, dict[str, object]]]:
    """One flow per case (`make(version, what, kind, n)`), a second apart, written to `path` and
    analyzed on both paths (`run`); the flows' records by originator port. The walk must have
    counted packets of them itself, so its checks are held too."""
    frames = []
    for n, (v, what, k) in enumerate(cases):
        frames += [(1_700_000_000.0 + n + i / 100, f) for i, f in enumerate(make(v, what, k, n))]
    path.write_bytes(pcap_bytes(frames))
    result, records = run(path, checksums)
    assert result.bulk_packets > 0
    return result, {f["orig_p"]: f for f in flows(records)}


@pytest.mark.parametrize("checksums", CHECKSUM_MODES)
def test_every_kind_of_checksum(tmp_path: Path, checksums: str) -> None:
    """One flow per kind of checksum, IPv4 and IPv6, TCP and UDP: each mode keeps and drops
    what the module says, on both paths, and a dropped packet marks its flow."""
    result, by_port = run_cases(tmp_path / "kinds.pcap", CASES, flow, checksums)
    dropped = 0
    for n, (v, p, k) in enumerate(CASES):
        got = by_port[40000 + n]
        kept = kept_in(checksums, v, p, k)
        dropped += not kept
        assert got["orig_pkts"] == (7 if p == "tcp" else 5) - (not kept), (v, p, k)
        assert ("C" in str(got["history"])) is not kept, (v, p, k)
    assert (result.capture.bad_checksums or 0) == dropped
    assert dropped > 0 or checksums == "ignore"


@pytest.mark.parametrize("checksums", CHECKSUM_MODES)
def test_ipv4_header_checksums(tmp_path: Path, checksums: str) -> None:
    """An IPv4 header whose checksum is wrong is dropped before any flow sees it; one left at 0
    (a sender's offload) only in `verify`; so is, in `verify`, a segment with a total length of
    0 (one the sender's card was to cut)."""

    def datagram(sport: int) -> bytearray:
        return bytearray(raw(eth() / IP(src="10.9.0.2", dst="198.51.100.9") / UDP(sport=sport)))

    wrong, zero, tso = datagram(5001), datagram(5002), datagram(5003)
    wrong[14 + 10] ^= 0xFF
    zero[14 + 10 : 14 + 12] = b"\0\0"
    tso[14 + 2 : 14 + 4] = tso[14 + 10 : 14 + 12] = b"\0\0"  # total length 0, header summed anew
    tso[14 + 10 : 14 + 12] = (0xFFFF - ones_sum(bytes(tso[14:34]))).to_bytes(2, "big")
    frames = [(1.0, datagram(5000)), (2.0, wrong), (3.0, zero), (4.0, tso)]
    path = tmp_path / "headers.pcap"
    path.write_bytes(pcap_bytes(frames))
    result, records = run(path, checksums)
    ports = sorted(int(f["orig_p"]) for f in flows(records))  # type: ignore[call-overload]
    expected = {
        "ignore": [5000, 5001, 5002, 5003],
        "auto": [5000, 5002, 5003],
        "verify": [5000],
    }[checksums]
    assert ports == expected
    assert (result.capture.bad_checksums or 0) == 4 - len(expected)


# ---- a tunnel's own UDP checksum ---------------------------------------------------------------


def tunnelled(version: int, tunnel: str, kind: str, n: int) -> list[bytes]:
    """Five UDP datagrams of one inner flow, each in a VXLAN or Geneve datagram over IPv4 or
    IPv6; the fourth one's outer UDP checksum is of `kind` (`corrupt`: the field itself changed,
    so the inner datagram stays right), the others right."""
    outer_src, outer_dst = (
        ("192.0.2.1", "192.0.2.2") if version == 4 else ("2001:db8::1", "2001:db8::2")
    )
    outer = IP(src=outer_src, dst=outer_dst) if version == 4 else IPv6(src=outer_src, dst=outer_dst)
    head = VXLAN(vni=7) if tunnel == "vxlan" else GENEVE(vni=7, proto=0x6558)
    port = 4789 if tunnel == "vxlan" else 6081
    inner = Ether(src="02:00:00:00:00:04", dst="02:00:00:00:00:03") / IP(
        src="10.9.0.2", dst="198.51.100.9"
    )
    data = [
        raw(
            eth()
            / outer
            / UDP(sport=50000, dport=port)
            / head
            / inner
            / UDP(sport=41000 + n, dport=9000)
            / b"payload"
        )
        for _ in range(5)
    ]
    frame = bytearray(data[-2])
    field = 14 + (20 if version == 4 else 40) + 6
    if kind == "corrupt":
        frame[field] ^= 0x5A
    else:
        frame = bytearray(with_checksum(bytes(frame), version, kind))
    data[-2] = bytes(frame)
    return data


TUNNEL_CASES = [(v, t, k) for v in (4, 6) for t in ("vxlan", "geneve") for k in KINDS]


@pytest.mark.parametrize("checksums", CHECKSUM_MODES)
def test_a_tunnels_udp_checksum(tmp_path: Path, checksums: str) -> None:
    """A VXLAN or Geneve datagram whose own UDP checksum is wrong was dropped by the host that
    takes the tunnel apart, so the packet inside reached no one: `auto` and `verify` drop it (no
    flow counts it), as Zeek does; 0 means none was computed, over IPv6 too (RFC 6935); an
    offloading sender's value is kept in `auto`. Both paths agree, the walk counting the flows'
    later datagrams itself."""
    result, by_port = run_cases(tmp_path / "tunnels.pcap", TUNNEL_CASES, tunnelled, checksums)
    dropped = 0
    for n, (v, t, k) in enumerate(TUNNEL_CASES):
        kept = (
            checksums == "ignore"
            or k in ("right", "zero")
            or (checksums == "auto" and k in ("pseudo", "pseudo0"))
        )
        dropped += not kept
        got = by_port[41000 + n]
        assert got["orig_pkts"] == 5 - (not kept) and got["tunnel"] == t, (v, t, k)
        assert "C" not in str(got["history"]), (v, t, k)  # the inner datagram was never seen
    assert (result.capture.bad_checksums or 0) == dropped
    assert dropped > 0 or checksums == "ignore"
