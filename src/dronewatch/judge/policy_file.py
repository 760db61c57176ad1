"""The policy file's schema (YAML, validated by pydantic; the format is in `policy`'s module
docstring) and the effective policy it gives: imported where a file is read (`analyze --policy`),
so a run without a policy file imports neither pydantic nor PyYAML."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dronewatch.exceptions import PolicyError
from dronewatch.judge.policy import DevicePolicy, Policy, Scope, to_timestamp
from dronewatch.judge.rulepack import CATEGORIES


class WindowModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: float
    end: float | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: object) -> float | None:
        return None if value is None else to_timestamp(value)


class _PolicyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
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
    model_config = ConfigDict(extra="forbid")
    defaults: _PolicyFields = Field(default_factory=_PolicyFields)
    devices: list[DeviceModel] = Field(default_factory=list)


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; errors name the file and the field."""
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
