"""How long an analyzer looks at a flow that shows no sign of its protocol.

The drone-link analyzers that take any UDP flow (MAVLink on any port, Tello and Parrot video or
data ends learned later from a handshake) give a flow a few datagrams to show their protocol
(`probe_packets`): a flow that never does is declined then, so its later packets are counted in
C instead of reaching every analyzer until the engine's inspection bound (`inspect_packets`).
`Misses` counts those datagrams for the flows an analyzer keeps no state of yet.
"""

from __future__ import annotations

from dronewatch.core.flow import Flow


class Misses:
    """Datagrams of each flow that showed an analyzer nothing of its protocol."""

    __slots__ = ("_bound", "_counts")

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._counts: dict[str, int] = {}

    def miss(self, flow: Flow, analyzer: str) -> bool:
        """One more such datagram of `flow`; at the bound the analyzer declines the flow (True)."""
        n = self._counts.get(flow.uid, 0) + 1
        if n < self._bound:
            self._counts[flow.uid] = n
            return False
        self._counts.pop(flow.uid, None)
        flow.decline(analyzer)
        return True

    def drop(self, flow: Flow) -> None:
        """The flow ended, or showed the protocol."""
        self._counts.pop(flow.uid, None)
