"""An attempt nobody answers (a one-way capture: SYN, then the client's segments, no server
packet) is counted by the C walk until its linger is over, and ends at the same packet on both
paths."""

from __future__ import annotations

from pathlib import Path

from dronewatch.capture.files import FileSource
from dronewatch.core.engine import EngineOptions
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.judge.flowlog import FlowRecord
from dronewatch.judge.policy import Policy
from tests.unit.capture.captures import pcap_bytes
from tests.unit.core.test_tcp_gaps import _seg


def one_way(start: float, spacing: float, count: int) -> list[tuple[float, bytes]]:
    """A client's SYN, then `count` data segments `spacing` apart, the server never seen."""
    frames = [_seg(start, True, "S", 1000, 0), _seg(start + 0.05, True, "A", 1001, 9001)]
    for i in range(count):
        frames.append(_seg(start + 0.125 + i * spacing, True, "PA", 1001 + i * 100, 9001, 100))
    return frames


def _run(path: Path, bulk: bool) -> tuple[list[Record], int]:
    got: list[Record] = []
    config = AnalysisConfig(
        policy=Policy().with_ldm(True), engine=EngineOptions(sweep_every_s=60.0), bulk=bulk
    )
    result = run_source(FileSource(str(path)), got.append, config)
    return got, result.bulk_packets


def test_unanswered_attempt_counted_in_bulk_and_ended_alike(tmp_path: Path) -> None:
    """The client's segments within the linger (5 s) of its SYN are counted in C; the first one
    past it ends the attempt (`tcp_attempt`) and starts a new flow, on both paths alike."""
    frames = one_way(1000.0, 0.05, 120)  # 98 segments before 1005.0, 22 after
    path = tmp_path / "oneway.pcap"
    path.write_bytes(pcap_bytes(frames))
    ref, none_in_bulk = _run(path, False)
    got, in_bulk = _run(path, True)
    assert got == ref
    # The bare ACK (its `A` written by the walk) and the data past the inspected packets.
    assert none_in_bulk == 0 and in_bulk == 1 + 98 - 32
    flows = [r for r in got if isinstance(r, FlowRecord)]
    assert [f.end_reason for f in flows][0] == "tcp_attempt" and len(flows) == 2
    assert flows[0].orig_pkts == 2 + 98  # SYN, ACK, the data before 1005.0
