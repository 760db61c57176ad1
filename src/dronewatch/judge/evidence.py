"""Evidence: the first frames of each flow, kept so an alert can be dissected later.

The keeper holds a few frames per live flow (cut to a snap length, so memory stays bounded by the
live flows); the monitor takes them when a flow that left the device ends and writes an
`evidence.jsonl` record, and drops them otherwise.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, ClassVar

from dronewatch.core.flow import Flow, Packet
from dronewatch.core.hooks import Record


@dataclass(frozen=True, slots=True)
class EvidenceOptions:
    """How much of each flow is kept."""

    packets: int = 4
    """Frames kept per flow: the first, then the first ones carrying payload."""
    snap: int = 1536
    """Bytes kept of each frame."""


@dataclass(frozen=True, slots=True)
class EvidenceRecord(Record):
    """The first frames of a flow that left a device, base64-encoded, with their link type."""

    log: ClassVar[str] = "evidence"
    uid: str
    linktype: int
    frames: tuple[dict[str, Any], ...]
    """Each frame: `ts`, `frame` (position in the capture), `wirelen`, `data` (base64)."""


class EvidenceKeeper:
    """Keeps the first frames of every live flow until the monitor takes or drops them."""

    name = "evidence"
    helpers = ("take", "drop")
    """What the monitor calls on it besides the hooks."""

    def __init__(self, options: EvidenceOptions | None = None) -> None:
        self.options = options or EvidenceOptions()
        self._frames: dict[str, list[Packet]] = {}

    def flow_start(self, flow: Flow, pkt: Packet) -> None:
        self._frames[flow.uid] = [pkt]

    def packet(self, flow: Flow, pkt: Packet) -> None:
        kept = self._frames.get(flow.uid)
        if kept is not None and len(kept) < self.options.packets and kept[-1] is not pkt:
            kept.append(pkt)
        if kept is None or len(kept) >= self.options.packets:
            flow.decline(self.name)

    def take(self, flow: Flow) -> EvidenceRecord | None:
        """The evidence record of a flow (and forget it)."""
        kept = self._frames.pop(flow.uid, None)
        if not kept:
            return None
        snap = self.options.snap
        frames = tuple(
            {
                "ts": p.ts,
                "frame": p.frame,
                "wirelen": p.wirelen,
                "data": base64.b64encode(p.raw[:snap]).decode(),
            }
            for p in kept
        )
        return EvidenceRecord(ts=kept[0].ts, uid=flow.uid, linktype=kept[0].linktype, frames=frames)

    def drop(self, flow: Flow) -> None:
        self._frames.pop(flow.uid, None)
