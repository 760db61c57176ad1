"""The bulk path (the C walk and frame counters of `dronewatch.fastpath`) gives exactly the
per-packet path's records, alerts and coverage."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import ARP, IP, TCP, UDP, Dot1Q, Ether, IPv6, raw

from dronewatch.capture.files import FileSource
from dronewatch.core.engine import EngineOptions
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, RunResult, run_source
from dronewatch.fastpath import NO_C_ENV
from dronewatch.geoip.maxmind import MaxMindResolver
from dronewatch.judge.classify import Classifier
from dronewatch.judge.policy import Policy
from tests.pcaps import PCAPS, all_captures
from tests.unit.capture.captures import pcap_bytes

PHONE, CLOUD = "10.77.0.2", "203.0.113.7"
PHONE6, CLOUD6 = "2001:db8::2", "2001:db8:1::7"


def ETH() -> Ether:  # noqa: N802 - reads like the scapy layer it stands for
    return Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")


@functools.cache
def classifier() -> Classifier:
    return Classifier.load()


def config(bulk: bool, engine: EngineOptions | None = None) -> AnalysisConfig:
    return AnalysisConfig(
        policy=Policy().with_ldm(True),
        classifier=classifier(),
        resolver=MaxMindResolver.bundled(),
        engine=engine,
        bulk=bulk,
    )


def both(path: Path, engine: EngineOptions | None = None) -> tuple[RunResult, RunResult]:
    """Analyze `path` on both paths and assert they agree; return (per-packet, bulk) results."""
    got: dict[bool, list[Record]] = {False: [], True: []}
    results = {
        bulk: run_source(FileSource(str(path)), got[bulk].append, config(bulk, engine))
        for bulk in (False, True)
    }
    assert got[True] == got[False]
    assert results[True].alerts == results[False].alerts
    assert results[True].capture == results[False].capture
    assert results[False].bulk_packets == 0
    return results[False], results[True]


@pytest.mark.parametrize(
    "capture", [pytest.param(p, id=str(p.relative_to(PCAPS))) for p in all_captures()]
)
def test_every_capture_same_on_both_paths(capture: Path) -> None:
    both(capture)


def _tcp(
    ts: float, sport: int, flags: str, payload: bytes = b"", **kw: object
) -> tuple[float, bytes]:
    frame = ETH() / IP(src=PHONE, dst=CLOUD) / TCP(sport=sport, dport=443, flags=flags, **kw)
    return ts, raw(frame / payload if payload else frame)


def long_upload(start: float, sport: int, seconds: int) -> list[tuple[float, bytes]]:
    """A TCP upload lasting `seconds`: handshake, 10 data packets and ACKs a second, close."""
    back = ETH() / IP(src=CLOUD, dst=PHONE) / TCP(sport=443, dport=sport, flags="SA")
    frames = [_tcp(start, sport, "S"), (start + 0.01, raw(back)), _tcp(start + 0.02, sport, "A")]
    for i in range(seconds * 10):
        t = start + 0.1 + i * 0.1
        frames.append(_tcp(t, sport, "PA", b"x" * 1200, seq=1 + i * 1200))
        ack = ETH() / IP(src=CLOUD, dst=PHONE) / TCP(sport=443, dport=sport, flags="A")
        frames.append((t + 0.001, raw(ack)))
    end = start + 0.2 + seconds
    fin_back = ETH() / IP(src=CLOUD, dst=PHONE) / TCP(sport=443, dport=sport, flags="FA")
    return [*frames, _tcp(end, sport, "FA"), (end + 0.01, raw(fin_back))]


def test_long_flows_are_counted_in_bulk(tmp_path: Path) -> None:
    """Flows that outlive many sweeps go through the array path, with the same records."""
    frames = sorted(long_upload(1000.0, 40001, 60) + long_upload(1010.5, 40002, 45))
    path = tmp_path / "long.pcap"
    path.write_bytes(pcap_bytes(frames))
    ref, bulk = both(path)
    assert ref.capture.packets == len(frames)
    # All but the first inspected packets of each flow skip the per-packet path.
    assert bulk.bulk_packets > 0.8 * len(frames)
    assert [a.bytes_out for a in bulk.alerts] == [a.bytes_out for a in ref.alerts]


def test_damaged_file_same_on_both_paths(tmp_path: Path) -> None:
    """A file cut inside a record: same packets before the damage, same message."""
    frames = long_upload(1000.0, 40001, 5)
    data = pcap_bytes(frames)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: len(data) - 700])
    ref, bulk = both(path)
    assert ref.capture.errors and "file ends first" in ref.capture.errors[0]
    assert bulk.capture.errors == ref.capture.errors


# Random traffic: a few flows of each kind, packets at random gaps that cross the sweep, idle and
# active timeouts, with every TCP flag pattern, VLAN tags, non-IP frames and fragments.
FLOWS = [
    ("tcp", 4, False, 40001),
    ("tcp", 4, False, 40001),
    ("udp", 4, False, 9003),
    ("tcp", 4, True, 40002),
    ("tcp", 6, False, 40003),
    ("udp", 4, False, 9003),
    ("udp", 6, False, 50000),
    ("udp", 4, False, 53),
]
EVENTS = st.lists(
    st.tuples(
        st.integers(0, len(FLOWS) + 1),  # flow index; the last two: ARP, IPv4 fragment
        st.booleans(),  # from the phone
        st.sampled_from([0.0, 0.001, 0.001, 0.01, 0.3, 1.5, 4.0, 12.0]),  # gap before the packet
        # Mostly data and ACKs, so flows settle and the bulk path has work; handshakes, closes
        # and odd flag sets, many of them empty (the C walk adds an empty segment's letter).
        st.sampled_from(
            ["A", "PA", "PA", "PA", "A", "PA", "PA", "S", "SA", "FA", "R", "F", "SF", "", "RA"]
        ),
        st.sampled_from([0, 0, 1, 12, 40]),  # payload bytes
    ),
    min_size=1,
    max_size=150,
)


def frame(index: int, out: bool, flags: str, size: int) -> bytes:
    if index == len(FLOWS):
        return raw(ETH() / ARP(psrc=PHONE, pdst="10.77.0.1"))
    if index == len(FLOWS) + 1:  # a fragment other than the first
        return raw(ETH() / IP(src=PHONE, dst=CLOUD, frag=3, proto=17) / b"tail")
    proto, version, vlan, port = FLOWS[index]
    src, dst = (PHONE, CLOUD) if version == 4 else (PHONE6, CLOUD6)
    if not out:
        src, dst = dst, src
    l3 = IP(src=src, dst=dst) if version == 4 else IPv6(src=src, dst=dst)
    sport, dport = (port, 443) if out else (443, port)
    if proto == "udp":
        sport, dport = (port, port + 1) if out else (port + 1, port)
        l4 = UDP(sport=sport, dport=dport)
    else:
        l4 = TCP(sport=sport, dport=dport, flags=flags)
    eth = ETH() / Dot1Q(vlan=7) if vlan else ETH()
    return raw(eth / l3 / l4 / (b"p" * size))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=EVENTS, inspect=st.sampled_from([1, 2, 32]))
def test_random_traffic_same_on_both_paths(
    tmp_path: Path, events: list[tuple[int, bool, float, str, int]], inspect: int
) -> None:
    ts = 1_700_000_000.0
    frames = []
    for index, out, gap, flags, size in events:
        ts += gap
        frames.append((ts, frame(index, out, flags, size)))
    path = tmp_path / "random.pcap"
    path.write_bytes(pcap_bytes(frames))
    engine = EngineOptions(
        inspect_packets=inspect, udp_idle_s=10.0, tcp_idle_s=20.0, active_s=30.0, sweep_every_s=1.0
    )
    both(path, engine)


def test_flow_cut_by_active_timeout_within_a_segment(tmp_path: Path) -> None:
    """Packets counted in bulk reach their flow before a later packet of it ends the flow."""
    frames = [
        (1000.0 + i, raw(ETH() / IP(src=PHONE, dst=CLOUD) / UDP(sport=50000, dport=7000) / b"d"))
        for i in range(40)
    ]
    path = tmp_path / "active.pcap"
    path.write_bytes(pcap_bytes(frames))
    engine = EngineOptions(inspect_packets=1, active_s=30.0, udp_idle_s=100.0, sweep_every_s=500.0)
    ref, bulk = both(path, engine)
    assert bulk.bulk_packets > 30


def test_no_c_switch_runs_every_packet_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRONEWATCH_NO_C set: no packet is counted in bulk, and the records are the same."""
    path = PCAPS / "scenarios" / "dji_fly_ldm_on_violation.pcap"
    with_c: list[Record] = []
    assert run_source(FileSource(str(path)), with_c.append, config(True)).bulk_packets > 0
    monkeypatch.setenv(NO_C_ENV, "1")
    without: list[Record] = []
    assert run_source(FileSource(str(path)), without.append, config(True)).bulk_packets == 0
    assert without == with_c
