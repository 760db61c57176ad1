"""The one exception tree of dronewatch.

DronewatchError
+-- DecodeError      a packet or protocol message that cannot be decoded
+-- CaptureError     a capture file or interface that cannot be read
+-- RulePackError    a rule pack that fails its schema
+-- GeoIPError       a GeoIP database that cannot be opened
+-- PolicyError      a device policy file that fails its schema
"""

from __future__ import annotations


class DronewatchError(Exception):
    """Base of every error dronewatch raises on purpose."""


class DecodeError(DronewatchError):
    """Bytes that do not form a valid message of the protocol being decoded."""


class CaptureError(DronewatchError):
    """A capture source that cannot be read, with where the damage starts."""

    def __init__(self, msg: str, *, path: str = "", offset: int | None = None) -> None:
        self.path = path
        self.offset = offset
        where = path or "capture"
        if offset is not None:
            where = f"{where} at byte offset {offset}"
        super().__init__(f"{where}: {msg}")


class RulePackError(DronewatchError):
    """A rule pack that fails validation."""


class GeoIPError(DronewatchError):
    """A GeoIP database that is missing or unreadable."""


class PolicyError(DronewatchError):
    """A device policy that fails validation."""
