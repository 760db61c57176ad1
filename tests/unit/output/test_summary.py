"""The analyze summary says when inspection was incomplete because an analyzer failed."""

from __future__ import annotations

import io

import pytest

from dronewatch.analyzers.dns import DnsAnalyzer
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import STRICT_ANALYZERS_ENV
from dronewatch.core.flow import Flow
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.judge.policy import Policy
from dronewatch.output.summary import SummaryCollector
from tests.pcaps import PCAPS

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
