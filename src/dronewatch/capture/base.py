"""What every capture source yields and reports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class RawPacket:
    """A frame as read from a source, before decoding."""

    ts: float
    linktype: int
    data: bytes
    wirelen: int
    iface: int
    frame: int
    """1-based index of the packet in its source."""


@dataclass(slots=True)
class SourceStats:
    """What a source saw: the capture's coverage."""

    name: str
    packets: int = 0
    bytes: int = 0
    truncated: int = 0
    """Packets cut by the snap length (captured length below wire length)."""
    drops: int | None = None
    """Packets the kernel or capture tool dropped; None when the source cannot know."""
    errors: list[str] = field(default_factory=list)
    """Damage found while reading; the packets before it are kept."""
    format: str = ""
    """pcap, pcapng, pcap-gzip, pcapng-gzip, live."""


class Source(Protocol):
    """A capture source: files, stdin or a live interface."""

    stats: SourceStats

    def packets(self) -> Iterator[RawPacket]: ...

    def progress(self) -> tuple[int, int | None]:
        """Bytes consumed so far and the total when known (for progress bars)."""
        ...


@dataclass(frozen=True, slots=True)
class CoverageMark:
    """A point in a live source's stream, yielded when asked for (`LiveSource.request_mark`):
    the packets before it are all counted in its totals, and `drops` counts every packet lost up
    to `at`, so a coverage report cut here is exact."""

    at: float
    """Wall-clock time the counts hold for."""
    packets: int
    bytes: int
    truncated: int
    drops: int | None
    """Packets lost since the capture started (kernel, capture tool, queue); None while the
    source cannot tell (scapy; dumpcap when a hand-over failed)."""
