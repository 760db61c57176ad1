"""Coverage gaps: the parts of a window that no capture report covers."""

from __future__ import annotations

from dronewatch.api.store import coverage_gaps


def test_contiguous_reports_leave_no_gap() -> None:
    assert coverage_gaps([(0, 10), (10, 20), (20, 30)], 0, 30) == []


def test_hole_between_reports_and_at_the_ends() -> None:
    spans = [(5.0, 10.0), (20.0, 25.0)]
    assert coverage_gaps(spans, 0, 40) == [[0, 5.0], [10.0, 20.0], [25.0, 40]]


def test_overlapping_and_unsorted_spans_merge() -> None:
    assert coverage_gaps([(8, 30), (0, 10)], 0, 30) == []


def test_holes_within_the_slack_are_not_gaps() -> None:
    """Reports a fraction of a second apart are one coverage."""
    assert coverage_gaps([(0, 10), (10.4, 20)], 0, 20) == []
