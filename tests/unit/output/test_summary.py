"""The analyze summary says when inspection was incomplete because an analyzer failed, or when
a full flow table evicted flows, and stays bounded under a flood of spoofed sources."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from dronewatch.analyzers.dns import DnsAnalyzer
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import STRICT_ANALYZERS_ENV, EngineOptions
from dronewatch.core.flow import Flow
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.judge import verdict as v
from dronewatch.judge.alert import Alert
from dronewatch.judge.flowlog import FlowRecord
from dronewatch.judge.monitor import VerdictRecord
from dronewatch.judge.policy import Policy
from dronewatch.output.summary import _SEV, MAX_IPS, SummaryCollector, _bytes
from tests.golden.test_golden import config as golden_config
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
        "  INSPECTION INCOMPLETE: analyzers failed (dns.flow_end 1); their records and facts "
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


def test_a_site_of_devices_prints_a_page_and_counts_the_rest() -> None:
    """Past `--devices` and `--alerts`, the summary lists the devices that sent most, the most
    severe alerts and the verdicts that need attention first, and counts the rest; it keeps
    only what it will list of the alerts and verdicts (a site's mirror port has thousands)."""
    seen: list[Record] = []
    run_source(FileSource(str(VIOLATION)), seen.append, golden_config(ldm=True))
    flow = next(r for r in seen if isinstance(r, FlowRecord))
    alert = next(r for r in seen if isinstance(r, Alert))
    verdict = next(r for r in seen if isinstance(r, VerdictRecord))
    collector = SummaryCollector(max_devices=5, max_alerts=3)
    for i in range(30):  # device i sent 100 * i bytes, from its own MAC
        mac = f"02:00:00:00:00:{i:02x}"
        collector.add(replace(flow, orig_h=f"10.0.0.{i}", orig_mac=mac, orig_bytes=100 * i))
    alerts = [
        replace(
            alert,
            severity=("low", "critical", "medium", "high")[i % 4],
            device_ip=f"10.0.0.{i % 30}",
        )
        for i in range(400)
    ]
    verdicts = [
        replace(
            verdict,
            device_ip=f"10.0.1.{i}",
            verdict=v.VIOLATION if i == 250 else v.NOT_APPLICABLE if i % 2 else v.CLEAN,
        )
        for i in range(300)
    ]
    for record in (*alerts, *verdicts):
        collector.add(record)
    assert len(collector.alerts) <= 4 * 3 + 64 and len(collector.verdicts) <= 4 * 5 + 64
    out = io.StringIO()
    collector.render(out)
    lines = out.getvalue().splitlines()

    devices = [ln.split()[1] for ln in lines if ln.startswith("Device ")]
    assert devices == ["10.0.0.29", "10.0.0.28", "10.0.0.27", "10.0.0.26", "10.0.0.25"]
    rest = sum(100 * i for i in range(25))
    assert f"... and 25 more devices (25 flows, {_bytes(rest)} out): --devices N lists more; " in (
        "\n".join(lines)
    )

    start = lines.index("Alerts (400):")
    rows = lines[start + 2 : start + 5]
    severe = sorted(alerts, key=lambda a: (-_SEV[a.severity], a.device_ip))[:3]
    assert [row.split()[:2] for row in rows] == [["critical", a.device_ip] for a in severe]
    assert lines[start + 5].startswith("  ... and 397 more alerts: --alerts N lists more")

    start = lines.index("Verdicts:")
    listed = [ln.split(":")[0].strip() for ln in lines[start + 1 : start + 6]]
    assert listed == ["10.0.1.250", "10.0.1.0", "10.0.1.2", "10.0.1.4", "10.0.1.6"]
    assert lines[start + 6].startswith(
        "  ... and 295 more verdicts (145 clean, 150 not applicable): --devices N lists more"
    )
