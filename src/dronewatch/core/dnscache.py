"""The IP-to-name memory built from DNS answers, so later flows to an address get a name.

The DNS analyzer calls `remember(ip, query_name, ts)` for every A/AAAA answer; when the answer
came through a CNAME chain it passes the name the client asked for, not the CDN name at the end
of the chain, because the asked-for name is what says which app (and vendor) wanted the address.
The engine calls `name_for(resp_h)` when a flow starts. The cache is a bounded LRU: memory stays
fixed however long the capture.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

logger = logging.getLogger(__name__)

DNSCACHE_MAX_ENTRIES = 100_000
"""Default bound on the number of addresses remembered."""


class DnsNameCache:
    """A bounded LRU map from a 4- or 16-byte address to the DNS name last resolved to it."""

    __slots__ = ("max_entries", "_entries")

    def __init__(self, max_entries: int = DNSCACHE_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def name_for(self, ip: bytes) -> str | None:
        """The name last remembered for `ip`, or None; a hit counts as a use for the LRU."""
        entry = self._entries.get(ip)
        if entry is None:
            return None
        self._entries.move_to_end(ip)
        return entry[0]

    def remember(self, ip: bytes, name: str, ts: float) -> None:
        """Map `ip` to `name` (the latest answer wins), evicting the least recently used entry."""
        if len(ip) not in (4, 16) or not name or not any(ip):
            return  # not an address, or 0.0.0.0 / :: (a blocked name), which names nothing
        entries = self._entries
        entries[ip] = (name, ts)
        entries.move_to_end(ip)
        if len(entries) > self.max_entries:
            entries.popitem(last=False)

    def seen_at(self, ip: bytes) -> float | None:
        """Network time of the answer that last mapped `ip`, without touching the LRU order."""
        entry = self._entries.get(ip)
        return entry[1] if entry is not None else None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ip: object) -> bool:
        return ip in self._entries


__all__ = ["DNSCACHE_MAX_ENTRIES", "DnsNameCache"]
