"""Command-line options that several commands share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dronewatch.core.engine import EngineOptions
from dronewatch.exceptions import ConfigError


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


def add_max_flows(parser: Any) -> None:
    """`--max-flows N`: the flow table's cap (`EngineOptions.max_flows`), for `engine_options`."""
    parser.add_argument(
        "--max-flows",
        type=int,
        metavar="N",
        help="most flows held in memory at once (default "
        f"{EngineOptions().max_flows:,}, about 1.5 KB each): beyond it the longest idle flows "
        "are ended early, counted as evicted, and every verdict over that time is incomplete",
    )


def engine_options(args: argparse.Namespace) -> EngineOptions | None:
    """The engine options the command line asks for (None: the defaults); ConfigError for a
    value that cannot be."""
    cap = getattr(args, "max_flows", None)
    if cap is None:
        return None
    if cap < 1:
        raise ConfigError(f"--max-flows {cap}: must be at least 1")
    return EngineOptions(max_flows=cap)
