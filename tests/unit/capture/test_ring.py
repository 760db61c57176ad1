"""The rotating pcap ring: bounded files, every packet readable back in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from dronewatch.capture.base import RawPacket
from dronewatch.capture.files import FileSource
from dronewatch.capture.ring import PcapRing
from dronewatch.exceptions import CaptureError


def packet(i: int) -> RawPacket:
    return RawPacket(1_700_000_000 + i * 0.25, 1, bytes([i % 256]) * 1000, 1500, 0, i + 1)


def test_ring_rotates_and_keeps_the_newest_files(tmp_path: Path) -> None:
    ring = PcapRing(tmp_path, file_bytes=10_000, files=3)
    for i in range(100):
        ring.write(packet(i))
    ring.close()
    files = sorted(tmp_path.glob("ring-*.pcap"))
    assert len(files) == 3 and ring.written == 100
    got = [p for f in files for p in FileSource(str(f)).packets()]
    # Ten 1 KB packets fill a file; the last three files hold the newest packets, in order.
    assert [p.data[0] for p in got] == [i % 256 for i in range(100 - len(got), 100)]
    assert got[-1].ts == pytest.approx(packet(99).ts) and got[-1].wirelen == 1500
    assert all(f.stat().st_size <= 10_000 + 1016 for f in files)


def test_ring_skips_other_link_types(tmp_path: Path) -> None:
    ring = PcapRing(tmp_path, file_bytes=10_000, files=2)
    ring.write(RawPacket(1.0, 127, b"radiotap", 8, 0, 1))
    ring.close()
    assert ring.written == 0


def test_ring_refuses_silly_sizes(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="at least"):
        PcapRing(tmp_path, file_bytes=10, files=1)
