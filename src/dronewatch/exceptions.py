"""The one exception tree of dronewatch.

DronewatchError
+-- DecodeError      a packet or protocol message that cannot be decoded
+-- CaptureError     a capture file or interface that cannot be read
+-- RulePackError    a rule pack that fails its schema
+-- GeoIPError       a GeoIP database that cannot be opened
+-- PolicyError      a device policy file that fails its schema
+-- ConfigError      a setting that is not valid (an unknown analyzer option, a bad value)
+-- RecordError      records sent to the service that their logs' schemas refuse
"""

from __future__ import annotations

from typing import Any


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


class ConfigError(DronewatchError):
    """A setting that is not valid, such as an unknown analyzer option or a value of the wrong
    type; the message names the setting and says what it takes."""


class RecordError(DronewatchError):
    """Records sent to the service that their logs' schemas refuse (`errors`: pydantic-style
    entries, each with the `loc` of the field and a `msg`)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors
