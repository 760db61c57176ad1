"""The timeline buckets of bytes leaving per category (web page and report)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dronewatch.output.timeline import (
    EgressSpan,
    activity_periods,
    bucket_step,
    build_timeline,
    merge_windows,
)


def test_flow_bytes_are_spread_over_its_duration() -> None:
    """A 40-second flow of 4,000 bytes puts 1,000 bytes in each of four 10-second buckets."""
    line = build_timeline([EgressSpan(100.0, 140.0, 4000, "livestream")], 100.0, 140.0, 4)
    assert line.step == 10.0 and line.times[:4] == (100.0, 110.0, 120.0, 130.0)
    assert line.series["livestream"][:4] == [1000, 1000, 1000, 1000]
    assert sum(line.series["livestream"]) == 4000


def test_instant_flow_lands_in_one_bucket_and_categories_are_ordered() -> None:
    """A flow with no duration counts whole in its bucket; the biggest category comes first."""
    line = build_timeline(
        [EgressSpan(105.0, 105.0, 10, "maps"), EgressSpan(101.0, 102.0, 500, "media_sync")],
        100.0,
        110.0,
        10,
    )
    assert list(line.series) == ["media_sync", "maps"]
    assert line.series["maps"][5] == 10 and sum(line.series["maps"]) == 10
    assert line.to_dict()["series"][0] == {
        "category": "media_sync",
        "bytes": line.series["media_sync"],
    }


def test_window_clips_a_flow() -> None:
    """Only the part of a flow inside the window counts."""
    line = build_timeline([EgressSpan(0.0, 100.0, 1000, "telemetry")], 50.0, 60.0, 10)
    assert sum(line.series["telemetry"]) == 100


def test_no_bytes_no_series() -> None:
    """Flows that sent nothing give no category."""
    assert build_timeline([EgressSpan(0.0, 1.0, 0, "maps")], 0.0, 1.0).series == {}


@pytest.mark.parametrize(
    ("span", "buckets", "step"),
    [(60.0, 60, 1.0), (61.0, 60, 2.0), (3600.0, 120, 30.0), (86400.0 * 400, 100, 7 * 86400.0)],
)
def test_bucket_step_is_readable(span: float, buckets: int, step: float) -> None:
    """The step is the smallest readable width that covers the span in the buckets asked."""
    assert bucket_step(span, buckets) == step


@given(
    st.lists(
        st.tuples(
            st.floats(0, 1000, allow_nan=False),
            st.floats(0, 500, allow_nan=False),
            st.integers(1, 10**9),
        ),
        min_size=1,
        max_size=20,
    ),
    st.integers(10, 300),
)
def test_every_byte_of_a_window_is_counted_once(
    flows: list[tuple[float, float, int]], buckets: int
) -> None:
    """Over a window that holds every flow, the buckets add up to the bytes sent."""
    spans = [EgressSpan(ts, ts + d, n, "other") for ts, d, n in flows]
    lo = min(s.ts for s in spans)
    hi = max(s.last_ts for s in spans)
    line = build_timeline(spans, lo, hi, buckets)
    total = sum(s.bytes_out for s in spans)
    assert abs(sum(line.series["other"]) - total) <= len(line.times)
    assert len(line.times) <= buckets + 2


def test_merge_windows_clips_and_joins() -> None:
    """Overlapping LDM-on windows merge; an open one runs to the end; those outside go."""
    windows = [(0.0, 20.0), (10.0, 30.0), (50.0, None), (-5.0, -1.0)]
    assert merge_windows(windows, 5.0, 60.0) == [[5.0, 30.0], [50.0, 60.0]]
    assert merge_windows([(float("-inf"), None)], 1.0, 2.0) == [[1.0, 2.0]]


def test_activity_periods_split_on_long_gaps() -> None:
    """Flows minutes apart form one period; a flow years later starts another."""
    spans = [
        EgressSpan(1000.0, 1010.0, 5, "maps"),
        EgressSpan(1100.0, 1200.0, 5, "maps"),
        EgressSpan(9e8, 9e8 + 4, 5, "maps"),
    ]
    assert activity_periods(spans, 300.0) == [[1000.0, 1200.0], [9e8, 9e8 + 4]]


@pytest.mark.parametrize(
    ("start", "end"), [(1e308, 1e308), (-1e308, 1e308), (0.0, 1.7e308), (1.7e9, 1e308)]
)
def test_times_near_the_largest_float_give_a_timeline(start: float, end: float) -> None:
    """Any finite window, even one whose bucket arithmetic overflows, gives a timeline (empty
    when no bucket can be counted) instead of raising OverflowError."""
    line = build_timeline([EgressSpan(start, end, 10, "other")], start, end)
    assert line.to_dict()["step"] > 0
    assert sum(sum(v) for v in line.series.values()) in (0, 10)
    assert bucket_step(float("inf"), 120) == float("inf")
