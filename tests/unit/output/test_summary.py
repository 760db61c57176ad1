"""The analyze summary says when inspection was incomplete because an analyzer failed, or when
a full flow table evicted flows, and stays bounded under a flood of spoofed sources."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dronewatch.analyzers.dns import DnsAnalyzer
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import STRICT_ANALYZERS_ENV, EngineOptions
from dronewatch.core.flow import Flow
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.judge.policy import Policy
from dronewatch.output.summary import MAX_IPS, SummaryCollector
from tests.pcaps import PCAPS, THIRD_PARTY, capture
from tests.unit.core.test_pipeline import flood_capture

VIOLATION = PCAPS / "scenarios" / "dji_fly_ldm_on_violation.pcap"


def summary() -> str:
    collector = SummaryCollector()
    config = AnalysisConfig(policy=Policy().with_ldm(True))
    run_source(FileSource(str(VIOLATION)), collector.add, config)
    out = io.StringIO()
    collector.render(out)
    return out.getvalue()


def test_clean_run_says_nothing_about_analyzers() -> None:
    """Without failures the summary has no inspection warning."""
    text = summary()
    assert "Verdicts:" in text
    assert "INSPECTION INCOMPLETE" not in text and "inspection was incomplete" not in text


def test_failed_analyzer_is_shown_under_the_capture_and_the_verdicts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An analyzer's failures appear, counted by hook, on the capture line and under the
    verdicts, which may miss what it would have named."""
    monkeypatch.delenv(STRICT_ANALYZERS_ENV)

    def broken(self: DnsAnalyzer, flow: Flow) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(DnsAnalyzer, "flow_end", broken)
    lines = summary().splitlines()
    capture = lines.index(next(ln for ln in lines if ln.startswith("Capture ")))
    assert lines[capture + 1] == (
        "  INSPECTION INCOMPLETE: analyzers failed (dns.flow_end 3); their records and facts "
        "may be missing (the log has the first failure of each)"
    )
    verdicts = lines.index("Verdicts:")
    assert "inspection was incomplete: an analyzer failed" in "\n".join(lines[verdicts:])


def test_a_flood_is_shown_evicted_and_its_addresses_counted_not_listed(tmp_path: Path) -> None:
    """1,000 SYNs from spoofed sources behind one MAC into a 100-flow table: the capture line
    counts the evicted flows, and the MAC's device lists its first MAX_IPS addresses and counts
    the flows of the others."""
    collector = SummaryCollector()
    config = AnalysisConfig(engine=EngineOptions(max_flows=100))
    result = run_source(FileSource(str(flood_capture(tmp_path, 1_000))), collector.add, config)
    evicted = result.capture.evicted_flows
    assert evicted is not None and evicted >= 900
    [device] = collector.devices.values()
    assert len(device.ips) == MAX_IPS and device.unlisted_flows == 1_000 - (MAX_IPS - 1)
    out = io.StringIO()
    collector.render(out)
    lines = out.getvalue().splitlines()
    assert f", {evicted:,} flows evicted from a full flow table" in lines[0]
    [line] = [ln for ln in lines if ln.startswith("Device 192.168.1.3 ")]
    assert line.count("45.0.0.") == MAX_IPS - 1
    assert f", {1_000 - (MAX_IPS - 1):,} flows from addresses not listed)" in line


def test_content_gaps_are_shown_on_the_capture_line() -> None:
    """A capture whose TCP data was acknowledged but not captured (Zeek's miss_end_data.pcap)
    says how many flows had gaps and how many bytes; a capture without gaps says nothing."""
    collector = SummaryCollector()
    config = AnalysisConfig(policy=Policy().with_ldm(True))
    path = capture(THIRD_PARTY / "zeek" / "tcp" / "miss_end_data.pcap")
    run_source(FileSource(str(path)), collector.add, config)
    out = io.StringIO()
    collector.render(out)
    first = out.getvalue().splitlines()[0]
    assert first.endswith(", 1 TCP flows with content gaps (2.8KB acknowledged but not captured)")
    assert "content gaps" not in summary()
