"""Where the capture readers take their bytes from: a stream read in chunks, or a mapped file.

Both keep a buffer, the read position in it and the buffer's offset in the source, so the pcap and
pcapng readers (`files.FileSource`) are the same for both. A pipe, stdin or a gzip-compressed
file is read in chunks (`ReadStream`). A regular file is mapped one window at a time
(`MappedStream`): reading it into fresh 16 MB buffers costs a copy out of the page cache and a page
fault per 4 KB of each new buffer, a mapping of the same bytes neither. A window is an `mmap`
object, so slicing it gives `bytes`, as slicing a read buffer does; a file that grows while it is
read (a capture still being written) is read on, each new window mapped up to the file's size at
that moment. One that another process truncates while a window over the lost bytes is read ends
the process with SIGBUS (as for any mapped file); the README says so.
"""

from __future__ import annotations

import mmap
import os
import stat
from typing import BinaryIO


class ByteStream:
    """A buffer over a capture's bytes: `buf[pos:]` is what is not read yet, and `buf` starts at
    byte `base` of the source."""

    def __init__(self) -> None:
        self.buf: bytes | mmap.mmap = b""
        self.pos = 0
        self.base = 0
        self.eof = False

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def consumed(self) -> int:
        """Bytes of the source consumed (for progress)."""
        return self.offset

    def need(self, n: int) -> bool:
        """Make `n` bytes available at `pos`; False when the source ends first."""
        raise NotImplementedError

    def fill(self, n: int) -> None:
        """Buffer `n` bytes from the read position, or up to the end (regular files only: a pipe
        would be waited on)."""
        if self.remaining() < n:
            self.need(n)

    def remaining(self) -> int:
        return len(self.buf) - self.pos


class ReadStream(ByteStream):
    """A byte stream read `chunk` bytes at a time."""

    def __init__(self, raw: BinaryIO, position: BinaryIO, chunk: int) -> None:
        super().__init__()
        self._read1 = getattr(raw, "read1", raw.read)
        self._position = position
        self._chunk = chunk

    def consumed(self) -> int:
        """Bytes of the underlying file consumed (compressed bytes for gzip)."""
        try:
            return self._position.tell()
        except (OSError, ValueError):
            return self.offset

    def need(self, n: int) -> bool:
        while len(self.buf) - self.pos < n:
            if self.eof:
                return False
            # read1: what is there now (up to a chunk), so a live pipe is not waited on.
            chunk = self._read1(max(self._chunk, n))
            if not chunk:
                self.eof = True
                return False
            self.base += self.pos
            self.buf = self.buf[self.pos :] + chunk
            self.pos = 0
        return True


class MappedStream(ByteStream):
    """A regular file's bytes, mapped one window of at least `window` bytes at a time."""

    def __init__(self, fh: BinaryIO, window: int) -> None:
        super().__init__()
        self._fd = fh.fileno()
        self._window = window

    def need(self, n: int) -> bool:
        if len(self.buf) - self.pos >= n:
            return True
        if not self.eof:
            self._map(n)
            if len(self.buf) - self.pos >= n:
                return True
        self.eof = True
        return False

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
