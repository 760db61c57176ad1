"""Command-line options that several commands share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dronewatch.capture.checksum import CHECKSUM_MODES
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
        "station: an IP address, a MAC address (the device at every address its frames come "
        "from: a phone's global IPv6 ones), every host of a network, or the host name a device "
        "gave in DHCP; repeatable (like a device of --policy, under its defaults)",
    )


LOCAL_SUBNET_HELP = (
    "extra subnet that counts as the devices' local network; repeatable (private ranges are "
    "local without it, and so are the addresses the capture's IPv6 Neighbor Discovery and ARP "
    "show on its link)"
)
"""`--local-subnet`'s help, on `analyze` and `agent` alike."""

ENGINE_FLAGS = ("max_flows", "stall_packets", "stall_bytes")
"""The `EngineOptions` fields the command line sets, each as `--FIELD` (dashes for
underscores): `add_engine_options`, `engine_options`, and `serve -i`, which hands them to its
capture process."""


def add_engine_options(parser: Any) -> None:
    """`--max-flows N` (`EngineOptions.max_flows`) and the bound on inspection without progress
    (`--stall-packets N`, `--stall-bytes N`), for `engine_options`; `--checksums MODE`, the
    decoder's (`AnalysisConfig.checksums`)."""
    defaults = EngineOptions()
    parser.add_argument(
        "--max-flows",
        type=int,
        metavar="N",
        help="most flows held in memory at once (default "
        f"{defaults.max_flows:,}, about 1.5 KB each): beyond it the longest idle flows "
        "are ended early, counted as evicted, and every verdict over that time is incomplete",
    )
    parser.add_argument(
        "--stall-packets",
        type=int,
        metavar="N",
        help="payload packets a flow's analyzers may all wait for an answer (a TLS ServerHello "
        f"that never shows) before its inspection stops (default {defaults.stall_packets}; 0: "
        "no bound); the rest of the flow is counted, its flows record says why",
    )
    parser.add_argument(
        "--stall-bytes",
        type=int,
        metavar="N",
        help=f"the same bound in payload bytes (default {defaults.stall_bytes:,}; 0: no bound)",
    )
    parser.add_argument(
        "--checksums",
        choices=CHECKSUM_MODES,
        default="ignore",
        help="packets with a wrong IPv4, TCP, UDP or ICMP checksum: 'ignore' (the default) "
        "checks none, so no packet is lost to a checksum an anonymiser rewrote (Zeek's -C); "
        "'auto' drops them, as their receiver did, but keeps those a capture on the sending "
        "host shows before its network card fills the checksum in (offload); 'verify' drops "
        "every one (Zeek's default). Dropped packets are counted in the capture record and "
        "marked C/c in their flow's history",
    )


def engine_options(args: argparse.Namespace) -> EngineOptions | None:
    """The engine options the command line asks for (None: the defaults); ConfigError for a
    value that cannot be."""
    given: dict[str, int] = {
        name: getattr(args, name) for name in ENGINE_FLAGS if getattr(args, name, None) is not None
    }
    if not given:
        return None
    cap = given.get("max_flows")
    if cap is not None and cap < 1:
        raise ConfigError(f"--max-flows {cap}: must be at least 1")
    for name in ("stall_packets", "stall_bytes"):
        if given.get(name, 0) < 0:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} {given[name]}: must be 0 (no bound) or more")
    return EngineOptions(**given)


def engine_argv(args: argparse.Namespace) -> list[str]:
    """The engine options given on this command line, as arguments for another dronewatch
    command (`serve -i`'s capture process)."""
    argv = [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in ENGINE_FLAGS
        if getattr(args, name, None) is not None
    ]
    if getattr(args, "checksums", "ignore") != "ignore":
        argv.append(f"--checksums={args.checksums}")
    return argv
