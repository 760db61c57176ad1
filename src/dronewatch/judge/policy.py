"""Device policy: local-data mode on/off (and when), what is allowed while on, what is local.

A policy file is YAML:

    defaults:
      ldm: off                  # on | off
      scope: dedicated          # dedicated | shared
      local_subnets: []         # extra subnets that count as "on the device's local network"
    devices:
      - name: pilot-phone
        mac: 0c:84:dc:d5:5f:4d  # and/or ip, or net (every host in a CIDR), or hostname (DHCP)
        ldm: on
        ldm_windows:            # optional: on only between these times (ISO 8601 or epoch s)
          - {start: "2017-09-12T03:30:00Z", end: "2017-09-12T03:45:00Z"}
        allowed_categories: [maps]
        allowed_destinations: [api.mapbox.com, .mapbox.com, 52.84.0.0/16]
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from dronewatch.exceptions import PolicyError

Scope = Literal["dedicated", "shared"]


def to_timestamp(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise ValueError(f"not a time: {value!r} (use ISO 8601 such as 2024-05-01T10:00:00Z)")


@dataclass(frozen=True, slots=True)
class DevicePolicy:
    """The effective policy of one device."""

    name: str = ""
    mac: str | None = None
    ip: str | None = None
    net: str | None = None
    """A network (CIDR) whose every host is a device under test."""
    hostname: str | None = None
    """The DHCP host name of the device, lower case."""
    ldm: bool = False
    """Local-data mode on (for the whole capture unless windows are given)."""
    windows: tuple[tuple[float, float | None], ...] = ()
    """When LDM is on, as (start, end) network times; empty with ldm=True means always."""
    scope: Scope = "dedicated"
    allowed_categories: frozenset[str] = frozenset()
    allowed_destinations: tuple[str, ...] = ()
    local_subnets: tuple[str, ...] = ()
    declared: bool = False
    """True for a device named in the policy file (vs discovered)."""

    def ldm_on(self, start: float, end: float) -> bool:
        """Whether LDM was on at any moment of [start, end]."""
        if not self.ldm:
            return False
        if not self.windows:
            return True
        return ldm_on_during(self.windows, start, end)

    def allows(self, category: str, name: str | None, ip: str) -> bool:
        """Whether a destination is exempt while LDM is on (e.g. a map-only exemption)."""
        if category in self.allowed_categories:
            return True
        for dest in self.allowed_destinations:
            if "/" in dest:
                if in_network(ip, dest):
                    return True
            elif dest == ip:
                return True
            elif name and (
                name == dest or (dest.startswith(".") and (name.endswith(dest) or name == dest[1:]))
            ):
                return True
        return False


Windows = Sequence[tuple[float, float | None]]
"""When LDM is on, as (start, end) network times; end None: on from start onwards."""


def ldm_on_during(windows: Windows, start: float, end: float) -> bool:
    """Whether LDM was on at any moment of [start, end], given the windows it was on in.

    The one answer to "was LDM on then": `analyze` asks it of a policy's windows, the service of
    the windows its LDM history gives (`ldm_windows`)."""
    return any(w_start <= end and (w_end is None or start <= w_end) for w_start, w_end in windows)


def ldm_windows(changes: Sequence[tuple[float, bool]]) -> tuple[tuple[float, float | None], ...]:
    """The windows LDM was on in, from (at, on) changes sorted by time (the service's history)."""
    out: list[tuple[float, float | None]] = []
    since: float | None = None
    for at, on in changes:
        if on and since is None:
            since = at
        elif not on and since is not None:
            out.append((since, at))
            since = None
    if since is not None:
        out.append((since, None))
    return tuple(out)


@dataclass(slots=True)
class Policy:
    """Every device's policy, plus the defaults for devices found in the traffic."""

    defaults: DevicePolicy = field(default_factory=DevicePolicy)
    devices: list[DevicePolicy] = field(default_factory=list)

    def for_device(self, ip: str, mac: str | None, hostname: str | None = None) -> DevicePolicy:
        """The declared policy matching this MAC, IP, network or DHCP host name, else the
        defaults; a device named by its address wins over one named by its network."""
        for dev in self.devices:
            if (dev.mac and mac and dev.mac == mac) or (dev.ip and dev.ip == ip):
                return dev
        name = hostname.lower() if hostname else None
        for dev in self.devices:
            if (dev.hostname and name == dev.hostname) or (dev.net and in_network(ip, dev.net)):
                return dev
        return self.defaults

    def declares(self, ip: str, mac: str | None, hostname: str | None = None) -> bool:
        """Whether a declared device (policy file, `--device`) matches this host."""
        return self.for_device(ip, mac, hostname).declared

    @property
    def declared_macs(self) -> frozenset[bytes]:
        """The MACs of the devices declared by their MAC, as frames carry them (6 bytes). Every
        address a frame from one of them carries is the device's, on the local network whatever
        its scope (`Monitor.settle`): a phone on an IPv6 network sends from global addresses,
        temporary ones among them (RFC 8981), which a declaration by address cannot follow."""
        return frozenset(
            bytes.fromhex(dev.mac.replace(":", "").replace("-", ""))
            for dev in self.devices
            if dev.mac and dev.declared
        )

    @property
    def local_subnets(self) -> tuple[str, ...]:
        nets = list(self.defaults.local_subnets)
        for dev in self.devices:
            nets.extend(dev.local_subnets)
        return tuple(dict.fromkeys(nets))

    def with_ldm(self, on: bool) -> Policy:
        """The same policy with LDM forced on or off for every device (`--ldm`)."""
        return Policy(
            defaults=replace(self.defaults, ldm=on),
            devices=[replace(d, ldm=on) for d in self.devices],
        )


@functools.lru_cache(maxsize=65536)
def in_network(ip: str, net: str) -> bool:
    """Whether address `ip` lies in network `net` (CIDR, host bits allowed); False when either is
    not one, or they are of different IP versions. Memoised: every flow's end asks it of its host
    and each declared network (`Policy.for_device`), and a capture has few hosts and networks."""
    try:
        return ipaddress.ip_address(ip) in _network(net)
    except ValueError:
        return False


@functools.lru_cache(maxsize=1024)
def _network(net: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """`net` parsed (ValueError when it is no network): a policy names a few."""
    return ipaddress.ip_network(net, strict=False)


def device_spec(text: str) -> dict[str, str]:
    """What `--device TEXT` names: an IP address, a MAC address, a network (CIDR) or a DHCP host
    name, as the fields of a policy-file device."""
    value = text.strip()
    if not value:
        raise PolicyError("--device: empty; give an IP, a MAC, a CIDR or a host name")
    try:
        return {"ip": str(ipaddress.ip_address(value))}
    except ValueError:
        pass
    if "/" in value:
        try:
            return {"net": str(ipaddress.ip_network(value, strict=False))}
        except ValueError as exc:
            raise PolicyError(f"--device {value!r}: not a network: {exc}") from None
    parts = value.lower().replace("-", ":").split(":")
    if len(parts) == 6 and all(len(p) == 2 for p in parts):
        try:
            int("".join(parts), 16)
        except ValueError:
            pass
        else:
            return {"mac": ":".join(parts)}
    if not all(c.isalnum() or c in "-_." for c in value):
        raise PolicyError(
            f"--device {value!r}: not an IP, a MAC (aa:bb:cc:dd:ee:ff), a CIDR (10.0.0.0/24) "
            "or a host name"
        )
    return {"hostname": value.lower(), "name": value}


def with_devices(policy: Policy, specs: Sequence[str]) -> Policy:
    """The policy with the `--device` specs added as declared devices, under its defaults. A
    device named by its address or network is on the local network by definition (its address
    joins `local_subnets`), so a device under test with a public address is judged too."""
    if not specs:
        return policy
    added = []
    for spec in specs:
        ident = device_spec(spec)
        own = ident.get("ip") or ident.get("net")
        nets = (*policy.defaults.local_subnets, own) if own else policy.defaults.local_subnets
        added.append(
            replace(policy.defaults, declared=True, local_subnets=nets, **ident)  # type: ignore[arg-type]
        )
    return Policy(defaults=policy.defaults, devices=[*policy.devices, *added])


def parse_windows(specs: Sequence[str]) -> tuple[tuple[float, float | None], ...]:
    """`START,END` command-line windows (ISO 8601 or epoch seconds; END may be empty)."""
    out = []
    for spec in specs:
        start, _, end = spec.partition(",")
        try:
            out.append((to_timestamp(_num(start)), to_timestamp(_num(end)) if end else None))
        except ValueError as exc:
            raise PolicyError(f"--ldm-window {spec!r}: {exc}") from None
    return tuple(out)


def _num(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text.strip()
