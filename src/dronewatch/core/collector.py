"""How often Python's cyclic garbage collector runs while a capture is analyzed: rarely.

A run holds every open flow (its `Flow`, TCP state array and the analyzers' per-flow state) and
what the monitor keeps for the verdicts (egress observations, hosts) until the end, hundreds of
thousands of objects, and none of them form reference cycles. With the interpreter's default
thresholds (a young collection every 700 allocations) a flood of short flows still set off a
full collection every few thousand flows, each walking all of them and freeing next to nothing:
a fifth of the CPU time of `analyze` on a capture of short flows, a tenth on a SYN scan
(bench/SHAPES.md). `fewer_collections` raises the first threshold for the run; the few objects
that do form cycles are freed later, not never.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 50_000
"""Allocations (less deallocations) of tracked objects between young collections during a run
(the interpreter's default is 700); the older generations keep their own thresholds."""


@contextmanager
def fewer_collections(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Run the block with the young-generation threshold at least `young`, then put back the
    thresholds it found (nested blocks restore in turn; a threshold of 0, collection turned off,
    stays off)."""
    before = gc.get_threshold()
    if before[0]:
        gc.set_threshold(max(young, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
