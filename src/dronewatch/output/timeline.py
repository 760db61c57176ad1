"""Bytes leaving the devices per category over time: the buckets of the timeline chart that the
web page and `dronewatch report` draw.

A flow's bytes are spread evenly over its duration (a 10-minute livestream is not one spike at
its first packet); the part of a flow outside the window is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

NICE_STEPS_S: tuple[float, ...] = (
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    2 * 86400,
    7 * 86400,
    30 * 86400,
    91 * 86400,
    365 * 86400,
)
"""Bucket widths a chart's axis reads easily, in seconds."""

MAX_BUCKETS = 1000
"""Most buckets one timeline has."""


@dataclass(frozen=True, slots=True)
class EgressSpan:
    """Bytes one device sent off itself over one flow's life, in one category."""

    ts: float
    last_ts: float
    bytes_out: int
    category: str


@dataclass(frozen=True, slots=True)
class Timeline:
    """Bytes sent off the devices per category, in buckets of `step` seconds from `start`."""

    start: float
    step: float
    times: tuple[float, ...]
    """The start of each bucket."""
    series: dict[str, list[int]]
    """Category -> bytes per bucket, the category that sent most first."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `start`, `end`, `step`, `times`, and `series` as {category, bytes}."""
        return {
            "start": round(self.start, 6),
            "end": round(self.start + self.step * len(self.times), 6),
            "step": self.step,
            "times": [round(t, 6) for t in self.times],
            "series": [{"category": c, "bytes": values} for c, values in self.series.items()],
        }


def bucket_step(span_s: float, buckets: int) -> float:
    """The smallest readable bucket width that covers `span_s` in at most `buckets` buckets."""
    want = span_s / max(1, buckets)
    for step in NICE_STEPS_S:
        if step >= want:
            return float(step)
    if not math.isfinite(want):
        return math.inf
    years = math.ceil(want / NICE_STEPS_S[-1])
    return float(years * NICE_STEPS_S[-1])


def build_timeline(
    spans: Iterable[EgressSpan], start: float, end: float, buckets: int = 120
) -> Timeline:
    """The bytes of `spans` in [start, end], per category, in about `buckets` buckets."""
    buckets = max(1, min(buckets, MAX_BUCKETS))
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        return Timeline(start if math.isfinite(start) else 0.0, 1.0, (), {})
    step = bucket_step(max(end - start, 1e-3), buckets)
    if not (math.isfinite(step) and math.isfinite(start / step) and math.isfinite(end / step)):
        # Times near the largest float (what a record may say): no bucket can be counted.
        return Timeline(start, 1.0, (), {})
    first = math.floor(start / step) * step
    count = max(1, math.ceil((end - first) / step))
    if first + count * step <= end:
        count += 1  # a flow ending exactly at `end` falls in a bucket of its own
    count = min(count, MAX_BUCKETS + 1)
    acc: dict[str, list[float]] = {}
    for s in spans:
        if s.bytes_out <= 0:
            continue
        row = acc.get(s.category)
        if row is None:
            row = acc[s.category] = [0.0] * count
        _spread(row, s, first, step, start, end)
    totals = {cat: sum(row) for cat, row in acc.items()}
    order = sorted((c for c in acc if totals[c] > 0), key=lambda c: (-totals[c], c))
    return Timeline(
        start=first,
        step=step,
        times=tuple(first + i * step for i in range(count)),
        series={cat: [round(v) for v in acc[cat]] for cat in order},
    )


def _spread(
    row: list[float], s: EgressSpan, first: float, step: float, lo: float, hi: float
) -> None:
    """Add the bytes of `s` that fall in [lo, hi] to the buckets of `row`, evenly over time."""
    count = len(row)
    a, b = s.ts, max(s.last_ts, s.ts)
    if b - a <= 0:
        if lo <= a <= hi:
            row[min(count - 1, max(0, int((a - first) // step)))] += s.bytes_out
        return
    ca, cb = max(a, lo), min(b, hi)
    if cb <= ca:
        return
    length = b - a
    i = min(count - 1, max(0, int((ca - first) // step)))
    j = min(count - 1, max(0, int((cb - first) // step)))
    for k in range(i, j + 1):
        lo_k = max(ca, first + k * step)
        hi_k = min(cb, first + (k + 1) * step) if k < j else cb
        if hi_k > lo_k:
            row[k] += s.bytes_out * ((hi_k - lo_k) / length)


def merge_windows(
    windows: Sequence[tuple[float, float | None]], start: float, end: float
) -> list[list[float]]:
    """LDM-on windows (None: still on) clipped to [start, end], overlaps merged, sorted."""
    clipped = sorted(
        (max(a, start), min(b if b is not None else end, end))
        for a, b in windows
        if a <= end and (b is None or b >= start)
    )
    out: list[list[float]] = []
    for a, b in clipped:
        if b < a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def activity_periods(spans: Iterable[EgressSpan], gap_s: float) -> list[list[float]]:
    """The stretches of time with traffic: spans closer than `gap_s` merged, oldest first (a
    view over captures made years apart can offer each as a range to zoom into)."""
    out: list[list[float]] = []
    for s in sorted(spans, key=lambda s: s.ts):
        a, b = s.ts, max(s.ts, s.last_ts)
        if out and a - out[-1][1] <= gap_s:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out
