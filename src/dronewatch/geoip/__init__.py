"""Where a destination is: local network or the internet, and then country, ASN and organisation."""

from dronewatch.geoip.base import GEOIP_PUBLIC, GEOIP_UNKNOWN, GeoInfo, Resolver
from dronewatch.geoip.local import LocalNets

__all__ = ["GEOIP_PUBLIC", "GEOIP_UNKNOWN", "GeoInfo", "LocalNets", "Resolver"]
