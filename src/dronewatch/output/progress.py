"""A progress line on stderr for long reads (wall-clock is fine here: it never reaches records)."""

from __future__ import annotations

import math
import time
from typing import TextIO

from dronewatch.capture.base import Source
from dronewatch.output.terminal import inline

PROGRESS_MIN_BYTES = 4 * 1024 * 1024
"""Files smaller than this get no progress line."""


class Progress:
    """Rewrites one stderr line with percent done, packets and read rate."""

    def __init__(self, stream: TextIO, *, interval_s: float = 0.5, tty: bool | None = None) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.tty = stream.isatty() if tty is None else tty
        self._start = time.monotonic()
        self._last = -math.inf
        """When the last line was written (the first share is always shown: `monotonic` may
        count from the machine's boot, less than `interval_s` ago)."""
        self._shown = False
        self._source: Source | None = None
        """The source of the last call, and the packets it had read."""
        self._packets = 0

    def wants(self, source: Source) -> bool:
        """True when the source is large (or of unknown size) and worth a progress line."""
        _, total = source.progress()
        return total is None or total >= PROGRESS_MIN_BYTES

    def __call__(self, source: Source, packets: int) -> None:
        now = time.monotonic()
        self._source, self._packets = source, packets
        if now - self._last < self.interval_s:
            return
        self._last = now
        done, total = source.progress()
        rate = done / max(now - self._start, 1e-6) / 1e6
        pct = f"{100.0 * done / total:5.1f}% " if total else ""
        # The source's name is a path or an interface name: printed as one printable line.
        line = f"{inline(source.stats.name)}: {pct}{packets:,} packets, {rate:.1f} MB/s"
        if self.tty:
            self.stream.write("\r" + line.ljust(78))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown = True

    def done(self, packets: int) -> None:
        """The read ended with `packets` read: where lines are written one under another (not a
        terminal), a last one says so, so a log does not end on a share read midway."""
        if self._shown and not self.tty and self._source is not None:
            self._last = -math.inf
            self(self._source, packets)

    def close(self) -> None:
        if self._shown and self.tty:
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()
        self._shown = False
        self._source = None
        self._start = time.monotonic()
