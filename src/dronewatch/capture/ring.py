"""A rotating ring of pcap files: the raw evidence of what a sensor captured, bounded on disk.

Packets are written to `ring-<start time>-<n>.pcap` in the ring directory; when the current file
reaches its size it is closed and a new one opened, and the oldest files beyond `files` are
deleted. Each file is a complete classic pcap (microsecond timestamps), readable by dronewatch,
Wireshark and tcpdump, so the capture around an alert can be pulled for a closer look.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import BinaryIO

from dronewatch.capture.base import RawPacket
from dronewatch.capture.pcapbatch import PcapBatch
from dronewatch.capture.pcapwrite import file_header, record
from dronewatch.exceptions import CaptureError

logger = logging.getLogger(__name__)


class PcapRing:
    """Writes packets of one link type into at most `files` pcap files of about `file_bytes`."""

    def __init__(
        self,
        directory: Path,
        *,
        file_bytes: int,
        files: int,
        linktype: int = 1,
        snaplen: int = 262144,
    ) -> None:
        if file_bytes < 4096 or files < 1:
            raise CaptureError("pcap ring: files of at least 4 KB, and at least one file")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CaptureError(f"pcap ring {directory}: {exc.strerror or exc}") from None
        self.directory = directory
        self.file_bytes = file_bytes
        self.files = files
        self.linktype = linktype
        self.snaplen = snaplen
        self._fh: BinaryIO | None = None
        self._size = 0
        self._count = 0
        self._stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.written = 0
        """Packets written since the ring opened."""

    def _open(self) -> None:
        self._count += 1
        path = self.directory / f"ring-{self._stamp}-{self._count:06d}.pcap"
        try:
            self._fh = path.open("wb")
            self._fh.write(file_header(self.linktype, self.snaplen))
        except OSError as exc:
            raise CaptureError(f"pcap ring {path}: {exc.strerror or exc}") from None
        self._size = 24
        self._prune()

    def _prune(self) -> None:
        ring = sorted(self.directory.glob("ring-*.pcap"))
        for old in ring[: max(0, len(ring) - self.files)]:
            try:
                old.unlink()
            except OSError as exc:
                logger.warning("pcap ring: cannot delete %s: %s", old, exc)

    def write(self, raw: RawPacket) -> None:
        """Append one packet (packets of another link type are not written)."""
        if raw.linktype != self.linktype:
            return
        if self._fh is None or self._size >= self.file_bytes:
            self.close()
            self._open()
        assert self._fh is not None
        chunk = record(raw.ts, raw.data[: self.snaplen], raw.wirelen)
        try:
            self._fh.write(chunk)
        except OSError as exc:
            raise CaptureError(f"pcap ring {self.directory}: {exc.strerror or exc}") from None
        self._size += len(chunk)
        self.written += 1

    def write_batch(self, batch: PcapBatch) -> None:
        """Append every packet of a batch (live capture through the AF_PACKET ring)."""
        for i in range(len(batch)):
            self.write(batch.raw(i))

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError as exc:
                logger.warning("pcap ring: closing a file: %s", exc)
            self._fh = None
