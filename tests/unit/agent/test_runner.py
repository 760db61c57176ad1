"""The agent's coverage records carry the analyzer failures of their interval."""

from __future__ import annotations

from dataclasses import dataclass, field

from dronewatch.agent.runner import _Coverage
from dronewatch.capture.base import SourceStats
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import Pipeline


@dataclass
class _Live:
    """The part of a LiveSource that coverage reads."""

    stats: SourceStats = field(default_factory=lambda: SourceStats(name="eth0", format="live"))

    def drops_so_far(self) -> int:
        return 0


def test_interval_records_count_the_failures_since_the_last_one() -> None:
    """Each coverage record has the analyzer failures of its interval only, None when there
    were none, and the final record the rest of the run's."""
    records: list[Record] = []
    pipe = Pipeline(records.append)
    source = _Live()
    coverage = _Coverage("eth0")
    pipe.engine.failures.counts["dns.packet"] += 2
    first = coverage.interval(source, pipe)
    second = coverage.interval(source, pipe)
    pipe.engine.failures.counts["tls.flow_end"] += 1
    pipe.engine.failures.counts["dns.packet"] += 1
    final = pipe.finish(source.stats)
    last = coverage.interval(source, None, final=final.capture)
    assert first.analyzer_errors == {"dns.packet": 2}
    assert second.analyzer_errors is None
    assert final.capture.analyzer_errors == {"dns.packet": 3, "tls.flow_end": 1}
    assert last.analyzer_errors == {"dns.packet": 1, "tls.flow_end": 1}
