"""dumpcap hand-overs: the next process skips what the stopped one took, and drops add up from
each process's closing statistics block."""

from __future__ import annotations

import io
import struct
import sys
from typing import Any

import pytest

from dronewatch.capture.dumpcap import DumpcapCapture, _Run


def block(kind: int, body: bytes) -> bytes:
    """One pcapng block (little-endian), padded to 32 bits."""
    body += bytes(-len(body) % 4)
    size = 12 + len(body)
    return struct.pack("<II", kind, size) + body + struct.pack("<I", size)


def pcapng(packets: list[tuple[int, bytes]], drops: int | None) -> bytes:
    """A dumpcap-like stream: header, one Ethernet interface, packets (microseconds), and a
    closing statistics block with `drops` (none at all when None)."""
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 1, 0, 262144))
    for usec, data in packets:
        head = struct.pack("<IIIII", 0, usec >> 32, usec & 0xFFFFFFFF, len(data), len(data))
        out += block(6, head + data)
    if drops is not None:
        isb = struct.pack("<III", 0, 0, 0) + struct.pack("<HHQ", 5, 8, drops) + bytes(4)
        out += block(5, isb)
    return out


class FakeProcess:
    """What the reader uses of a dumpcap process: its pipes, its exit."""

    def __init__(self, output: bytes) -> None:
        self.stdout = io.BufferedReader(io.BytesIO(output))  # type: ignore[arg-type]
        self.stderr = io.BufferedReader(io.BytesIO(b""))  # type: ignore[arg-type]

    def wait(self) -> int:
        return 0

    def poll(self) -> int:
        return 0


class Capture:
    """A DumpcapCapture whose processes are fakes, with what it handed on."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.marks: list[float] = []
        self.ends: list[str | None] = []
        self.dc = DumpcapCapture(
            "test",
            ["eth0"],
            bpf="",
            snaplen=262144,
            buffer_mb=2,
            on_packet=lambda raw: self.packets.append(raw.data),
            on_mark=self.marks.append,
            on_end=self.ends.append,
        )

    def run(self, output: bytes, prev: _Run | None, *, stop_at: float | None = None) -> _Run:
        """Read one process's output to its end, as its reader thread does."""
        proc: Any = FakeProcess(output)
        run = _Run(proc, prev, stop_at=stop_at)
        self.dc._current = None if stop_at is not None else run  # handed over: another runs
        run.decided.set()
        self.dc._read(run)
        return run


def frame(tag: bytes) -> bytes:
    return b"\x02" * 12 + b"\x08\x00" + tag


def test_the_next_process_skips_what_the_stopped_one_took() -> None:
    """Packets before the stopped process's last time are skipped, and at that very time those
    it took; the first one it did not take, and everything after, is handed on."""
    cap = Capture()
    first = cap.run(pcapng([(1, frame(b"a")), (2, frame(b"b")), (2, frame(b"c"))], 0), None)
    assert first.tail_ts == 2e-6 and first.tail == [frame(b"b"), frame(b"c")]
    overlap = [(1, frame(b"a")), (2, frame(b"c")), (2, frame(b"d")), (3, frame(b"e"))]
    cap.run(pcapng(overlap, 0), first)
    assert cap.packets == [frame(x) for x in (b"a", b"b", b"c", b"d", b"e")]


def test_drops_add_up_over_the_processes_and_come_with_each_mark() -> None:
    """Each stopped process's closing statistics add its drops, known at its mark; the end of
    the capture comes with the last one's."""
    cap = Capture()
    first = cap.run(pcapng([(1, frame(b"a"))], 3), None, stop_at=10.0)
    assert cap.marks == [10.0] and cap.dc.drops() == 3
    cap.dc._stopping = True
    cap.run(pcapng([(2, frame(b"b"))], 2), first)
    assert cap.dc.drops() == 5 and cap.ends == [None]


def test_a_process_without_statistics_leaves_its_drops_unknown() -> None:
    """A process whose output ends without a statistics block makes the drops unknown, until a
    later one ends with its own."""
    cap = Capture()
    first = cap.run(pcapng([(1, frame(b"a"))], None), None, stop_at=1.0)
    assert cap.dc.drops() is None
    cap.run(pcapng([(2, frame(b"b"))], 4), first, stop_at=2.0)
    assert cap.dc.drops() == 4 and cap.marks == [1.0, 2.0]


def test_a_process_that_stops_on_its_own_ends_the_capture_with_an_error() -> None:
    """The running dumpcap exiting by itself ends the capture, with a message."""
    cap = Capture()
    cap.run(pcapng([(1, frame(b"a"))], 0), None)
    assert cap.ends == ["dumpcap stopped on its own"]


def test_a_failed_hand_over_leaves_that_interval_unknown(caplog: pytest.LogCaptureFixture) -> None:
    """A new dumpcap that cannot open the capture is given up: the running one goes on, the
    report still comes, and its drops are unknown (the interval cannot be called covered)."""
    cap = Capture()
    running: Any = FakeProcess(b"")
    cap.dc._current = _Run(running, None)
    cap.dc.cmd = [
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('no such device'); sys.exit(1)",
    ]
    cap.dc._rotate()
    assert len(cap.marks) == 1 and cap.dc.drops() is None
    assert "dumpcap hand-over failed" in caplog.text and "no such device" in caplog.text
    assert cap.dc.handovers == 0 and cap.ends == []
