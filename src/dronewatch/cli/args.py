"""Command-line options that several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def add_rules_and_geoip(parser: Any, *, rules_default: list[Path] | None = None) -> None:
    """`--rules DIR` (repeatable) and `--geoip-dir DIR` on a parser or argument group.

    `rules_default=None` leaves an unset `--rules` as None (for settings that fall back to the
    environment and a config file); the analysis commands use an empty list."""
    parser.add_argument(
        "--rules",
        action="append",
        default=rules_default,
        type=Path,
        metavar="DIR",
        help="extra rule-pack directory, loaded after the bundled packs; repeatable",
    )
    parser.add_argument(
        "--geoip-dir",
        type=Path,
        metavar="DIR",
        help="MaxMind GeoLite2/GeoIP2 .mmdb files to use instead of the bundled DB-IP data",
    )


def add_device(parser: Any) -> None:
    """`--device IP|MAC|CIDR|NAME` (repeatable): the devices under test, judged whether or not
    they are recognised as ground stations (`dronewatch.judge.policy.with_devices`)."""
    parser.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="IP|MAC|CIDR|NAME",
        help="the device under test, judged whether or not it is recognised as a ground "
        "station: an IP or MAC address, every host of a network, or the host name a device "
        "gave in DHCP; repeatable (like a device of --policy, under its defaults)",
    )
