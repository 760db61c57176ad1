"""GeoIP from MaxMind-format (.mmdb) files: the bundled DB-IP Lite data or GeoLite2/GeoIP2.

A resolver holds up to three readers, told apart by their metadata `database_type`: a country or
city database (`*Country*`, `*City*`) and an ASN database (`*ASN*`). Local addresses (see
`LocalNets`) are answered without a lookup. Answers are cached per packed address, since one
destination usually carries many flows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import maxminddb
import maxminddb.errors

from dronewatch.exceptions import GeoIPError
from dronewatch.geoip.base import GEOIP_UNKNOWN, GeoInfo
from dronewatch.geoip.local import LocalNets, builtin_local_nets, parse_address

logger = logging.getLogger(__name__)

BUNDLED_COUNTRY = "dbip-country-lite.mmdb"
BUNDLED_ASN = "ip-location-db-asn.mmdb"
SOURCES_FILE = "SOURCES.json"
CACHE_SIZE = 65536
"""Most answers kept; the cache is emptied when full (destinations repeat, so this is rare)."""


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """What one opened database is."""

    path: str
    database_type: str
    kind: str
    """`country`, `city` or `asn`."""
    build_epoch: int
    node_count: int
    ip_version: int


def _kind(database_type: str) -> str | None:
    t = database_type.lower()
    if "asn" in t:
        return "asn"
    if "city" in t:
        return "city"
    if "country" in t:
        return "country"
    return None


def _open(path: Path) -> tuple[maxminddb.Reader, DatabaseInfo]:
    try:
        # The C reader where the package built it (a lookup takes about 2 µs, against 10 µs
        # in the pure-Python reader MODE_MMAP would force: a new public address costs two).
        reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
    except FileNotFoundError:
        raise GeoIPError(f"{path}: no such file") from None
    except (maxminddb.errors.InvalidDatabaseError, ValueError, OSError) as exc:
        raise GeoIPError(f"{path}: not a MaxMind database ({exc})") from None
    meta = reader.metadata()
    kind = _kind(meta.database_type)
    if kind is None:
        reader.close()
        raise GeoIPError(
            f"{path}: database type {meta.database_type!r} is neither country, city nor ASN"
        )
    info = DatabaseInfo(
        str(path), meta.database_type, kind, meta.build_epoch, meta.node_count, meta.ip_version
    )
    return reader, info


def _names_en(node: Any) -> str | None:
    if isinstance(node, Mapping):
        names = node.get("names")
        if isinstance(names, Mapping):
            en = names.get("en")
            return en if isinstance(en, str) else None
    return None


class MaxMindResolver:
    """Country/city and ASN lookups in .mmdb files, with local addresses answered first."""

    def __init__(
        self,
        *,
        country: Path | None = None,
        asn: Path | None = None,
        local: LocalNets | None = None,
    ) -> None:
        """Open the databases given (either may be None). Raises GeoIPError for a file that is
        missing, unreadable, or of the wrong kind."""
        self.local = local or builtin_local_nets()
        self.databases: list[DatabaseInfo] = []
        self._geo: maxminddb.Reader | None = None
        self._asn: maxminddb.Reader | None = None
        if country is not None:
            self._geo, info = _open(country)
            if info.kind == "asn":
                raise GeoIPError(f"{country}: an ASN database, not a country or city database")
            self.databases.append(info)
        if asn is not None:
            self._asn, info = _open(asn)
            if info.kind != "asn":
                raise GeoIPError(f"{asn}: a {info.kind} database, not an ASN database")
            self.databases.append(info)
        self._cache: dict[bytes, GeoInfo] = {}

    @classmethod
    def bundled(cls, *, local: LocalNets | None = None) -> MaxMindResolver:
        """The DB-IP Lite country and ASN data shipped with dronewatch (CC BY 4.0)."""
        data = bundled_data_dir()
        return cls(country=data / BUNDLED_COUNTRY, asn=data / BUNDLED_ASN, local=local)

    @classmethod
    def open(cls, directory: Path | None, *, local: LocalNets | None = None) -> MaxMindResolver:
        """The databases in `directory` (`--geoip-dir`), else the bundled ones."""
        if directory is not None:
            return cls.from_dir(directory, local=local)
        return cls.bundled(local=local)

    @classmethod
    def from_dir(cls, directory: Path, *, local: LocalNets | None = None) -> MaxMindResolver:
        """Every usable .mmdb in `directory`: a City database is preferred over a Country one.

        Raises GeoIPError when the directory is missing or holds no country, city or ASN file.
        """
        if not directory.is_dir():
            raise GeoIPError(f"{directory}: not a directory")
        found: dict[str, Path] = {}
        for path in sorted(directory.glob("*.mmdb")):
            reader, info = _open(path)
            reader.close()
            found.setdefault(info.kind, path)
        geo = found.get("city") or found.get("country")
        if geo is None and "asn" not in found:
            raise GeoIPError(f"{directory}: no country, city or ASN .mmdb file in it")
        return cls(country=geo, asn=found.get("asn"), local=local)

    def lookup(self, ip: str | bytes) -> GeoInfo:
        """Where `ip` (text, or packed 4/16 bytes) is; scope `unknown` for a non-address."""
        try:
            key = ip if isinstance(ip, bytes) and len(ip) in (4, 16) else None
            if key is None:
                key = parse_address(ip).packed
        except GeoIPError:
            return GEOIP_UNKNOWN
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        info = self._resolve(key)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = info
        return info

    def _resolve(self, packed: bytes) -> GeoInfo:
        reason = self.local.reason(packed)
        if reason is not None:
            return GeoInfo("local", local_reason=reason)
        addr = parse_address(packed)
        fields: dict[str, Any] = {}
        if self._geo is not None:
            rec = self._get(self._geo, addr)
            country = rec.get("country") or rec.get("registered_country") or {}
            if isinstance(country, Mapping):
                code = country.get("iso_code")
                fields["country_code"] = code if isinstance(code, str) else None
                fields["country_name"] = _names_en(country)
            continent = rec.get("continent")
            if isinstance(continent, Mapping) and isinstance(continent.get("code"), str):
                fields["continent"] = continent["code"]
            fields["city"] = _names_en(rec.get("city"))
            location = rec.get("location")
            if isinstance(location, Mapping):
                lat, lon = location.get("latitude"), location.get("longitude")
                if isinstance(lat, int | float) and isinstance(lon, int | float):
                    fields["lat"], fields["lon"] = float(lat), float(lon)
        if self._asn is not None:
            rec = self._get(self._asn, addr)
            number = rec.get("autonomous_system_number")
            org = rec.get("autonomous_system_organization")
            fields["asn"] = number if isinstance(number, int) else None
            fields["as_org"] = org if isinstance(org, str) else None
        return GeoInfo("public", **fields)

    @staticmethod
    def _get(reader: maxminddb.Reader, addr: Any) -> Mapping[str, Any]:
        try:
            rec = reader.get(addr)
        except (ValueError, maxminddb.errors.InvalidDatabaseError) as exc:
            # An IPv6 address in an IPv4-only database, or a corrupt tree: no answer.
            logger.debug("GeoIP lookup of %s: %s", addr, exc)
            return {}
        return rec if isinstance(rec, Mapping) else {}

    def close(self) -> None:
        """Release the database files."""
        for reader in (self._geo, self._asn):
            if reader is not None:
                reader.close()


def bundled_data_dir() -> Path:
    """The directory of the bundled databases and their SOURCES.json."""
    return Path(str(resources.files("dronewatch.geoip") / "data"))


def bundled_sources() -> dict[str, Any]:
    """Provenance and licence of the bundled data (SOURCES.json)."""
    path = bundled_data_dir() / SOURCES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GeoIPError(f"{path}: {exc}") from None
    return data if isinstance(data, dict) else {}
