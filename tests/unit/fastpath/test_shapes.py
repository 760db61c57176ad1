"""Every traffic shape of the benchmark (bench/shapes.py), built small, gives the same records on
the bulk path (the C walk) as on the per-packet path, and shared by two processes
(`analyze --workers 2`) as one process writes them: the speed of each shape is measured on the
records the slow path writes too."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.pcaps import ROOT
from tests.unit.core.test_split import assert_same
from tests.unit.fastpath.test_bulk import both

PACKETS = 12_000
"""Packets of each small shape: enough for flows past their inspected packets, closes, gaps and
(for the SYN scan) an attempt's linger and sweeps."""


def _shapes() -> ModuleType:
    """bench/shapes.py, which imports its siblings from bench/."""
    bench = str(ROOT / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import shapes  # noqa: PLC0415 - bench/ is no package; imported where needed

    return shapes


SHAPES = _shapes()

NEW_FLOW_EVERY_PACKET = frozenset({"syn_scan", "short_flows"})
"""Shapes whose packets, this few, nearly all make or inspect a flow: the walk hands them back."""


@pytest.mark.parametrize("name", sorted(SHAPES.SHAPES))
def test_every_shape_same_on_both_paths(name: str, tmp_path: Path) -> None:
    path = SHAPES.path_of(name, tmp_path)
    SHAPES.build(name, path, PACKETS)
    per_packet, bulk = both(path)
    assert per_packet.capture.packets == PACKETS
    if name not in NEW_FLOW_EVERY_PACKET:
        assert bulk.bulk_packets > PACKETS // 4  # the walk took a share of it, not nothing


@pytest.mark.parametrize("name", sorted(SHAPES.SHAPES))
def test_every_shape_shared_by_two_processes_as_one_writes_it(name: str, tmp_path: Path) -> None:
    """Records, alerts and the capture record of two processes, merged, are one process's (each
    process reading the other's DNS answers without their flows, `FactsHook`)."""
    path = SHAPES.path_of(name, tmp_path)
    SHAPES.build(name, path, PACKETS)
    records = assert_same(path, 2)
    assert sum(1 for r in records if r.log == "flows") > 1
