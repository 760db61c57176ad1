"""What a GeoIP lookup answers (`GeoInfo`) and the plug point every resolver fills (`Resolver`)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

from dronewatch.geoip.local import LocalNets

logger = logging.getLogger(__name__)

Scope = Literal["local", "public", "unknown"]
"""Where an address is, seen from the monitored device."""

GEOIP_LOCAL_REASONS = (
    "drone-link",
    "configured",
    "private",
    "loopback",
    "link-local",
    "multicast",
    "cgnat",
    "broadcast",
    "unspecified",
    "ula",
    "on-link",
)
"""Every `GeoInfo.local_reason`, the most specific first."""


@dataclass(frozen=True, slots=True)
class GeoInfo:
    """Where one address is: on the local network (and why), or where on the internet and whose."""

    scope: Scope
    """`local`: never leaves the site (private, link-local, multicast, drone link...); `public`:
    routed on the internet; `unknown`: the input is not an IP address."""
    local_reason: str | None = None
    """Why the address is local, one of `GEOIP_LOCAL_REASONS`; None unless scope is `local`."""
    country_code: str | None = None
    """ISO 3166-1 alpha-2 code of the country the address is located in, e.g. `US`."""
    country_name: str | None = None
    """English name of that country, e.g. `United States`."""
    continent: str | None = None
    """Two-letter continent code: AF, AN, AS, EU, NA, OC or SA."""
    city: str | None = None
    """English city name (city databases only)."""
    lat: float | None = None
    """Approximate latitude in degrees (city databases only)."""
    lon: float | None = None
    """Approximate longitude in degrees (city databases only)."""
    asn: int | None = None
    """Number of the autonomous system that announces the address, e.g. 15169."""
    as_org: str | None = None
    """Organisation that holds that autonomous system, e.g. `Google LLC`."""

    def to_dict(self) -> dict[str, str | int | float | None]:
        """The fields as a JSON-ready dict (keys in field order)."""
        return asdict(self)


GEOIP_UNKNOWN = GeoInfo("unknown")
"""The answer for input that is not an IP address."""

GEOIP_PUBLIC = GeoInfo("public")
"""A public address that no open database knows anything about."""

GEOIP_ON_LINK = GeoInfo("local", local_reason="on-link")
"""A public address the capture showed on its link (IPv6 Neighbor Discovery, ARP:
`dronewatch.geoip.onlink`)."""

GEOIP_CONFIGURED = GeoInfo("local", local_reason="configured")
"""An address the user's configuration puts on the local network whatever its scope (a device
declared by its MAC sends from it: `Policy.declared_macs`)."""


class Resolver(Protocol):
    """Anything that tells where an IP address is: MaxMindResolver, NullResolver or a test fake."""

    local: LocalNets
    """The local networks it answers `local` for: the one table of the run (the analyzers and
    the classifier read it too)."""

    def lookup(self, ip: str | bytes) -> GeoInfo:
        """Where `ip` (text, or 4/16 packed bytes) is; scope `unknown` for a non-address."""
        ...
