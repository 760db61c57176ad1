"""`dronewatch geoip info` and `dronewatch geoip lookup`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from dronewatch.geoip.local import LocalNets
from dronewatch.geoip.maxmind import MaxMindResolver, bundled_sources


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `geoip` command and its subcommands."""
    p = sub.add_parser(
        "geoip",
        help="show the GeoIP data in use, or look addresses up",
        description="GeoIP: which databases dronewatch uses, and where addresses are.",
    )
    gsub = p.add_subparsers(dest="geoip_command", metavar="SUBCOMMAND", required=True)
    info = gsub.add_parser(
        "info",
        help="the databases in use, their dates, sources and licences",
        description="Print the databases in use: type, data date, size, source and licence.",
    )
    info.add_argument(
        "--geoip-dir",
        type=Path,
        metavar="DIR",
        help="MaxMind .mmdb files to use instead of the bundled DB-IP data",
    )
    info.set_defaults(func=cmd_info)
    look = gsub.add_parser(
        "lookup",
        help="where addresses are (scope, country, ASN, organisation)",
        description="Look addresses up: local (and why) or public, with country and ASN.",
    )
    look.add_argument("addresses", nargs="+", metavar="IP", help="IPv4 or IPv6 address")
    look.add_argument(
        "--geoip-dir",
        type=Path,
        metavar="DIR",
        help="MaxMind .mmdb files to use instead of the bundled DB-IP data",
    )
    look.add_argument(
        "--local-subnet",
        action="append",
        default=[],
        metavar="CIDR",
        help="extra subnet that counts as local; repeatable",
    )
    look.add_argument("--json", action="store_true", help="print one JSON object per address")
    look.set_defaults(func=cmd_lookup)


def _resolver(args: argparse.Namespace, local: LocalNets | None = None) -> MaxMindResolver:
    return MaxMindResolver.open(args.geoip_dir, local=local)


def cmd_info(args: argparse.Namespace) -> int:
    """Print what each database is."""
    resolver = _resolver(args)
    for db in resolver.databases:
        built = dt.datetime.fromtimestamp(db.build_epoch, dt.UTC).date().isoformat()
        print(
            f"{db.kind:8} {db.database_type}  data of {built}  {db.node_count:,} nodes  {db.path}"
        )
    if not args.geoip_dir:
        sources = bundled_sources()
        notice = sources.get("notice")
        if isinstance(notice, str):
            print(f"\n{notice}")
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    """Print where each address is; exit 2 when one is not an address."""
    resolver = _resolver(args, LocalNets(args.local_subnet))
    code = 0
    for text in args.addresses:
        info = resolver.lookup(text)
        if info.scope == "unknown":
            code = 2
        if args.json:
            print(
                json.dumps(
                    {"ip": text, **{k: v for k, v in info.to_dict().items() if v is not None}}
                )
            )
            continue
        if info.scope == "unknown":
            print(f"{text}: not an IP address")
        elif info.scope == "local":
            print(f"{text}: local ({info.local_reason})")
        else:
            where = (
                ", ".join(
                    x
                    for x in (
                        info.country_name and f"{info.country_name} ({info.country_code})",
                        info.asn and f"AS{info.asn} {info.as_org or ''}".strip(),
                    )
                    if x
                )
                or "no data"
            )
            print(f"{text}: public, {where}")
    return code
