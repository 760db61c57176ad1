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

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dronewatch.exceptions import PolicyError
from dronewatch.judge.rulepack import CATEGORIES

Scope = Literal["dedicated", "shared"]


def _timestamp(value: object) -> float:
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


class WindowModel(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    start: float
    end: float | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: object) -> float | None:
        return None if value is None else _timestamp(value)


class _PolicyFields(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    ldm: bool | None = None
    scope: Scope | None = None
    ldm_windows: list[WindowModel] | None = None
    allowed_categories: list[str] | None = None
    allowed_destinations: list[str] | None = None
    local_subnets: list[str] | None = None

    @field_validator("ldm", mode="before")
    @classmethod
    def _onoff(cls, value: object) -> object:
        # YAML reads bare on/off as booleans already; accept the strings too.
        if isinstance(value, str) and value.lower() in ("on", "off"):
            return value.lower() == "on"
        return value

    @field_validator("allowed_categories")
    @classmethod
    def _categories(cls, value: list[str] | None) -> list[str] | None:
        for cat in value or []:
            if cat not in CATEGORIES:
                raise ValueError(f"unknown category {cat!r}; one of {', '.join(CATEGORIES)}")
        return value

    @field_validator("local_subnets")
    @classmethod
    def _subnets(cls, value: list[str] | None) -> list[str] | None:
        for net in value or []:
            ipaddress.ip_network(net, strict=False)
        return value


class DeviceModel(_PolicyFields):
    name: str = ""
    mac: str | None = None
    ip: str | None = None
    net: str | None = None
    """Every host of this network (CIDR) is a device under test."""
    hostname: str | None = None
    """The host that gave this name in its DHCP request (case-insensitive)."""

    @field_validator("net")
    @classmethod
    def _net(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_network(value, strict=False))

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("an empty host name")
        return None if value is None else value.strip().lower()

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.lower().replace("-", ":").split(":")
        if len(parts) != 6 or any(len(p) != 2 for p in parts):
            raise ValueError(f"not a MAC address: {value!r}")
        int("".join(parts), 16)
        return ":".join(parts)

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_address(value))


class PolicyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    defaults: _PolicyFields = Field(default_factory=_PolicyFields)
    devices: list[DeviceModel] = Field(default_factory=list)


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
                try:
                    if ipaddress.ip_address(ip) in ipaddress.ip_network(dest, strict=False):
                        return True
                except ValueError:
                    continue
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
            if (dev.hostname and name == dev.hostname) or (dev.net and _in_net(ip, dev.net)):
                return dev
        return self.defaults

    def declares(self, ip: str, mac: str | None, hostname: str | None = None) -> bool:
        """Whether a declared device (policy file, `--device`) matches this host."""
        return self.for_device(ip, mac, hostname).declared

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


def _in_net(ip: str, net: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(net)
    except ValueError:
        return False


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


def _merge(defaults: _PolicyFields, dev: _PolicyFields, **ident: object) -> DevicePolicy:
    def pick(name: str, fallback: object) -> object:
        value = getattr(dev, name)
        if value is None:
            value = getattr(defaults, name)
        return fallback if value is None else value

    def pick_list(name: str) -> list[str]:
        value = pick(name, [])
        return [str(v) for v in value] if isinstance(value, list) else []

    windows = pick("ldm_windows", [])
    assert isinstance(windows, list)
    scope = pick("scope", "dedicated")
    return DevicePolicy(
        ldm=bool(pick("ldm", False)),
        windows=tuple((w.start, w.end) for w in windows),
        scope="shared" if scope == "shared" else "dedicated",
        allowed_categories=frozenset(pick_list("allowed_categories")),
        allowed_destinations=tuple(pick_list("allowed_destinations")),
        local_subnets=tuple(pick_list("local_subnets")),
        **ident,  # type: ignore[arg-type]
    )


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; errors name the file and the field."""
    import yaml  # only here: a policy file is the one YAML the runtime reads

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise PolicyError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from None
    try:
        model = PolicyModel.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise PolicyError(f"{path}: {problems}") from None
    try:
        return policy_from_model(model)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None


def policy_from_model(model: PolicyModel) -> Policy:
    """The effective policy of a validated model."""
    defaults = _merge(_PolicyFields(), model.defaults)
    devices = []
    for dev in model.devices:
        if not (dev.mac or dev.ip or dev.net or dev.hostname):
            raise PolicyError(f"device {dev.name or '?'}: give a mac, an ip, a net or a hostname")
        devices.append(
            _merge(
                model.defaults,
                dev,
                name=dev.name,
                mac=dev.mac,
                ip=dev.ip,
                net=dev.net,
                hostname=dev.hostname,
                declared=True,
            )
        )
    return Policy(defaults=defaults, devices=devices)


def parse_windows(specs: Sequence[str]) -> tuple[tuple[float, float | None], ...]:
    """`START,END` command-line windows (ISO 8601 or epoch seconds; END may be empty)."""
    out = []
    for spec in specs:
        start, _, end = spec.partition(",")
        try:
            out.append((_timestamp(_num(start)), _timestamp(_num(end)) if end else None))
        except ValueError as exc:
            raise PolicyError(f"--ldm-window {spec!r}: {exc}") from None
    return tuple(out)


def _num(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text.strip()
