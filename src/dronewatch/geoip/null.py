"""A resolver with no databases: it still tells local from public, which is what policy needs."""

from __future__ import annotations

from dronewatch.exceptions import GeoIPError
from dronewatch.geoip.base import GEOIP_PUBLIC, GEOIP_UNKNOWN, GeoInfo
from dronewatch.geoip.local import LocalNets, builtin_local_nets


class NullResolver:
    """Answers scope (and why an address is local) without any country or ASN data."""

    def __init__(self, local: LocalNets | None = None) -> None:
        self.local = local or builtin_local_nets()

    def lookup(self, ip: str | bytes) -> GeoInfo:
        """`local` with its reason, `public`, or `unknown` for input that is not an address."""
        try:
            reason = self.local.reason(ip)
        except GeoIPError:
            return GEOIP_UNKNOWN
        return GeoInfo("local", local_reason=reason) if reason else GEOIP_PUBLIC
