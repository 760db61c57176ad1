"""A run's capture record: analyzer failures counted on both paths, and analyzer options applied."""

from __future__ import annotations

import logging
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dronewatch.analyzers import AnalyzerOptions
from dronewatch.analyzers.dns import DnsAnalyzer, DnsRecord
from dronewatch.analyzers.tello import TelloAnalyzer
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import STRICT_ANALYZERS_ENV, Engine, EngineOptions
from dronewatch.core.flow import Flow, Packet
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, CaptureRecord, RunResult, run_source
from dronewatch.judge.flowlog import FlowRecord
from dronewatch.judge.monitor import VerdictRecord
from dronewatch.judge.policy import Policy, with_devices
from dronewatch.judge.verdict import CLEAN, INCOMPLETE
from tests.pcaps import PCAPS
from tests.unit.capture.captures import pcap_bytes

DNS_PCAP = PCAPS / "lab" / "dns.pcap"


def run(
    path: Path, bulk: bool, config: AnalysisConfig | None = None
) -> tuple[RunResult, list[Record]]:
    records: list[Record] = []
    config = replace(config or AnalysisConfig(), bulk=bulk)
    return run_source(FileSource(str(path)), records.append, config), records


def _broken_flow_end(self: DnsAnalyzer, flow: Flow) -> None:
    raise RuntimeError("dns analyzer bug")


@pytest.mark.parametrize("bulk", [False, True], ids=["per_packet", "bulk"])
def test_failing_flow_end_is_counted_logged_once_and_the_run_goes_on(
    bulk: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An analyzer raising in flow_end is counted in the capture record, logged once with the
    first flow's uid, and every other record is still written."""
    clean_result, clean = run(DNS_PCAP, bulk)
    assert clean_result.capture.analyzer_errors is None
    assert "analyzer_errors" not in clean_result.capture.to_dict()
    monkeypatch.delenv(STRICT_ANALYZERS_ENV)
    monkeypatch.setattr(DnsAnalyzer, "flow_end", _broken_flow_end)
    with caplog.at_level(logging.ERROR, logger="dronewatch.core.engine"):
        result, records = run(DNS_PCAP, bulk)
    flows = [r for r in records if isinstance(r, FlowRecord)]
    assert result.capture.analyzer_errors == {"dns.flow_end": len(flows)} and flows
    assert result.capture.to_dict()["analyzer_errors"] == {"dns.flow_end": len(flows)}
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1
    assert logged[0].startswith(f"analyzer dns failed in flow_end on flow {flows[0].uid};")
    assert caplog.records[0].exc_info is not None
    # The monitor (after dns) still writes every flow; the answered queries are still written.
    assert flows == [r for r in clean if isinstance(r, FlowRecord)]
    assert [r for r in records if isinstance(r, DnsRecord)] == [
        r for r in clean if isinstance(r, DnsRecord)
    ]
    assert [r for r in records if isinstance(r, CaptureRecord)] == [result.capture]


@pytest.mark.parametrize("bulk", [False, True], ids=["per_packet", "bulk"])
def test_strict_mode_raises_out_of_the_run(bulk: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """With DRONEWATCH_STRICT_ANALYZERS set, the analyzer's exception ends the run."""
    monkeypatch.setenv(STRICT_ANALYZERS_ENV, "1")
    monkeypatch.setattr(DnsAnalyzer, "flow_end", _broken_flow_end)
    with pytest.raises(RuntimeError, match="dns analyzer bug"):
        run(DNS_PCAP, bulk)


def _always(self: TelloAnalyzer, flow: Flow) -> bool:
    return True


def _follow_and_fail(self: TelloAnalyzer, flow: Flow, pkt: Packet) -> None:
    flow.follow(self.name)
    raise RuntimeError("tello analyzer bug")


def _datagrams(tmp_path: Path, n: int) -> Path:
    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    frames = [
        (
            1000.0 + i * 0.01,
            raw(eth / IP(src="10.77.0.2", dst="10.77.0.1") / UDP(sport=50000, dport=7000) / b"d"),
        )
        for i in range(n)
    ]
    path = tmp_path / "followed.pcap"
    path.write_bytes(pcap_bytes(frames))
    return path


def test_follower_failures_on_the_c_path_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower that raises on the datagrams the C walk hands it (`Engine.to_followers`) is
    counted exactly as on the per-packet path; strict mode raises through the walk."""
    path = _datagrams(tmp_path, 40)
    monkeypatch.delenv(STRICT_ANALYZERS_ENV)
    monkeypatch.setattr(TelloAnalyzer, "wants", _always)
    monkeypatch.setattr(TelloAnalyzer, "packet", _follow_and_fail)
    handed: list[str] = []
    to_followers = Engine.to_followers

    def spy(self: Engine, flow: Flow, pkt: Packet) -> None:
        handed.append(flow.uid)
        to_followers(self, flow, pkt)

    monkeypatch.setattr(Engine, "to_followers", spy)
    config = AnalysisConfig(engine=EngineOptions(inspect_packets=1))
    ref, _ = run(path, False, config)
    handed.clear()
    bulk, _ = run(path, True, config)
    assert len(handed) == 39  # every datagram after the first went through the C walk's follow
    assert bulk.capture.analyzer_errors == ref.capture.analyzer_errors == {"tello.packet": 40}
    monkeypatch.setenv(STRICT_ANALYZERS_ENV, "1")
    with pytest.raises(RuntimeError, match="tello analyzer bug"):
        run(path, True, config)


@pytest.mark.parametrize("bulk", [False, True], ids=["per_packet", "bulk"])
def test_analyzer_options_reach_the_analyzers(bulk: bool) -> None:
    """`AnalysisConfig.analyzers` is what the analyzers run with: dns.max_answers=1 keeps one
    answer where the capture has two."""
    _, default = run(DNS_PCAP, bulk)
    options = AnalyzerOptions(dns=replace(AnalyzerOptions().dns, max_answers=1))
    _, limited = run(DNS_PCAP, bulk, AnalysisConfig(analyzers=options))
    answers = {r.query: r.answers for r in default if isinstance(r, DnsRecord)}
    capped = {r.query: r.answers for r in limited if isinstance(r, DnsRecord)}
    assert answers["mydjiflight.dji.com"] == ("mydjiflight.dji.com.cdn.example", "198.51.100.13")
    assert capped["mydjiflight.dji.com"] == ("mydjiflight.dji.com.cdn.example",)
    assert capped.keys() == answers.keys()


_ETH = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00"


def _ipv4(src: bytes, dst: bytes, proto: int, transport: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(transport), 0, 0, 64, proto, 0, src, dst
    )
    return _ETH + header + transport


def flood_capture(tmp_path: Path, syns: int) -> Path:
    """The device under test (192.168.1.3) talking to its drone on the local network, while
    `syns` distinct SYNs with spoofed public sources cross the mirror to public servers."""
    device, drone = bytes((192, 168, 1, 3)), bytes((192, 168, 1, 20))
    frames = []
    for i in range(syns):
        ts = 1_700_000_000.0 + i * 1e-4
        if i % 100 == 0:
            udp = struct.pack("!HHHH", 4000, 8889, 9, 0) + b"c"
            frames.append((ts, _ipv4(device, drone, 17, udp)))
        src = bytes((45, i >> 16 & 0xFF, i >> 8 & 0xFF, i & 0xFF))
        syn = struct.pack("!HHIIBBHHH", 1024 + i % 60000, 443, i * 7919, 0, 0x50, 0x02, 1024, 0, 0)
        frames.append((ts, _ipv4(src, bytes((198, 51, 100, 7)), 6, syn)))
    path = tmp_path / "flood.pcap"
    path.write_bytes(pcap_bytes(frames))
    return path


def test_a_flood_past_the_flow_cap_is_counted_in_the_capture_and_limits_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5,000 distinct SYNs into a 1,000-flow table, on both paths (the same records): the table
    never holds more than its cap, the flows it evicted are counted in the capture record (as
    many as the flow records that say so), and the device's verdict, clean under the default
    cap, is incomplete and says how many flows were evicted."""
    path = flood_capture(tmp_path, 5_000)
    most = [0]
    process = Engine.process

    def counted(self: Engine, pkt: Packet) -> None:
        process(self, pkt)
        most[0] = max(most[0], len(self.flows))

    monkeypatch.setattr(Engine, "process", counted)
    policy = with_devices(Policy(), ["192.168.1.3"]).with_ldm(True)
    result, records = run(path, True, AnalysisConfig(policy=policy))
    [verdict] = [r for r in records if isinstance(r, VerdictRecord)]
    assert result.capture.evicted_flows is None and verdict.verdict == CLEAN
    assert most[0] > 5_000
    most[0] = 0
    capped = AnalysisConfig(policy=policy, engine=EngineOptions(max_flows=1_000))
    runs = [run(path, bulk, capped) for bulk in (False, True)]
    assert runs[0][1] == runs[1][1]
    result, records = runs[1]
    assert most[0] == 1_000
    evicted = result.capture.evicted_flows
    flows = [r for r in records if isinstance(r, FlowRecord)]
    assert evicted == sum(r.end_reason == "evicted" for r in flows) >= 4_000
    assert result.capture.to_dict()["evicted_flows"] == evicted
    [verdict] = [r for r in records if isinstance(r, VerdictRecord)]
    assert verdict.verdict == INCOMPLETE
    assert f"{evicted:,} flows evicted from a full flow table" in verdict.msg
