"""A regular capture file read through memory-mapped windows instead of `read` calls.

Reading a file into fresh 16 MB buffers costs a copy out of the page cache and a page fault per
4 KB of each new buffer; a mapping of the same bytes costs neither. The stream keeps the shape of
`files._Stream` (a buffer, the read position in it, the buffer's offset in the file), so the pcap
and pcapng readers are the same for both. A window is an `mmap` object: slicing it gives `bytes`,
as slicing a read buffer did. A file that grows while it is read (a capture still being written)
is read on: each new window is mapped up to the file's size at that moment.
"""

from __future__ import annotations

import mmap
import os
import stat
from typing import BinaryIO


class MappedStream:
    """A regular file's bytes, mapped one window of at least `window` bytes at a time."""

    def __init__(self, fh: BinaryIO, window: int) -> None:
        self._fd = fh.fileno()
        self._window = window
        self.buf: bytes | mmap.mmap = b""
        self.pos = 0
        self.base = 0
        self.eof = False

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def consumed(self) -> int:
        """Bytes of the file consumed."""
        return self.offset

    def need(self, n: int) -> bool:
        """Make `n` bytes available at `pos`; False when the file ends first."""
        if len(self.buf) - self.pos >= n:
            return True
        if not self.eof:
            self._map(n)
            if len(self.buf) - self.pos >= n:
                return True
        self.eof = True
        return False

    def fill(self, n: int) -> None:
        """Map at least `n` bytes from the read position, or up to the end of the file."""
        if self.remaining() < n:
            self.need(n)

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def _map(self, n: int) -> None:
        """Map a new window from the read position, unless it would add no byte."""
        start = self.offset
        size = os.fstat(self._fd).st_size
        end = min(size, start + max(n, self._window))
        if end - start <= self.remaining():
            return
        aligned = start - start % mmap.ALLOCATIONGRANULARITY  # mmap offsets must be aligned
        window = mmap.mmap(self._fd, end - aligned, access=mmap.ACCESS_READ, offset=aligned)
        if hasattr(window, "madvise") and hasattr(mmap, "MADV_WILLNEED"):
            window.madvise(mmap.MADV_WILLNEED)  # read ahead the window's pages
        self.buf, self.base, self.pos = window, aligned, start - aligned


def map_file(fh: BinaryIO, window: int) -> MappedStream | None:
    """A mapped stream over `fh` when it is a regular file that can be mapped, else None."""
    try:
        st = os.fstat(fh.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return None
    stream = MappedStream(fh, window)
    try:
        stream.need(1)
    except (OSError, ValueError):  # a file system that cannot map: read it instead
        return None
    return stream
