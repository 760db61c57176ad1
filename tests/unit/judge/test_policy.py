"""Device policy files: validation, defaults, LDM windows, exemptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from dronewatch.exceptions import PolicyError
from dronewatch.judge.policy import DevicePolicy, Policy, in_network, parse_windows
from dronewatch.judge.policy_file import load_policy

POLICY = """
defaults:
  ldm: off
  local_subnets: [10.20.0.0/16]
devices:
  - name: pilot-phone
    mac: 0C-84-DC-D5-5F-4D
    ldm: on
    allowed_categories: [maps]
    allowed_destinations: [.skypixel.com, 52.84.0.0/16]
  - name: rc-pro
    ip: 192.168.1.50
    ldm: "on"
    scope: shared
    ldm_windows:
      - {start: "2024-05-01T10:00:00Z", end: "2024-05-01T11:00:00Z"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_devices_merge_with_defaults(tmp_path: Path) -> None:
    """Declared devices inherit the defaults and normalise MAC addresses."""
    policy = load_policy(write(tmp_path, POLICY))
    phone, rc = policy.devices
    assert phone.mac == "0c:84:dc:d5:5f:4d" and phone.ldm and phone.scope == "dedicated"
    assert phone.local_subnets == ("10.20.0.0/16",)
    assert rc.scope == "shared" and rc.windows
    assert policy.for_device("192.168.1.3", "0c:84:dc:d5:5f:4d") is phone
    assert policy.for_device("192.168.1.99", None) is policy.defaults
    assert not policy.defaults.ldm


def test_ldm_windows(tmp_path: Path) -> None:
    """LDM with windows is on only for flows that overlap a window."""
    rc = load_policy(write(tmp_path, POLICY)).devices[1]
    ten = 1714557600.0  # 2024-05-01T10:00:00Z
    assert rc.ldm_on(ten + 60, ten + 120)
    assert rc.ldm_on(ten - 60, ten + 1)
    assert not rc.ldm_on(ten - 600, ten - 60)
    assert not rc.ldm_on(ten + 3700, ten + 3800)


def test_exemptions() -> None:
    """Allowed categories, name suffixes and CIDRs exempt a destination."""
    dev = DevicePolicy(
        ldm=True,
        allowed_categories=frozenset({"maps"}),
        allowed_destinations=(".skypixel.com", "52.84.0.0/16", "api.mapbox.com"),
    )
    assert dev.allows("maps", None, "1.2.3.4")
    assert dev.allows("media_sync", "www.skypixel.com", "47.88.0.1")
    assert dev.allows("media_sync", "skypixel.com", "47.88.0.1")
    assert dev.allows("other", None, "52.84.3.4")
    assert dev.allows("other", "api.mapbox.com", "1.1.1.1")
    assert not dev.allows("flight_log", "mydjiflight.dji.com", "47.88.0.5")
    assert not dev.allows("other", "evilskypixel.com", "1.1.1.1")


def test_devices_declared_by_network() -> None:
    """A device declared by its network matches every host in it, of its IP version only; an
    exemption by CIDR allows host bits; text that is no address or network matches nothing,
    asked once or again (the answers are memoised)."""
    phones = DevicePolicy(name="phones", ldm=True, net="10.64.0.0/16")
    drone = DevicePolicy(name="drone", ip="10.64.0.9")
    policy = Policy(devices=[phones, drone])
    for _ in range(2):
        assert policy.for_device("10.64.3.4", None) is phones
        assert policy.for_device("10.64.0.9", None) is drone  # its address wins over a network
        assert policy.for_device("10.65.0.1", None) is policy.defaults
        assert policy.for_device("fd00::1", None) is policy.defaults
        assert policy.for_device("not an address", None) is policy.defaults
    assert in_network("192.168.1.77", "192.168.1.5/24")
    assert not in_network("::ffff:10.64.0.1", "10.64.0.0/16")
    assert not in_network("10.64.0.1", "10.64.0.0/33")
    assert not in_network("10.64.0.1", "phones")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("devices: [{name: x}]", "give a mac, an ip, a net or a hostname"),
        ("devices: [{mac: zz:zz}]", "devices.0.mac"),
        ("defaults: {allowed_categories: [weather]}", "unknown category 'weather'"),
        ("defaults: {scope: everything}", "defaults.scope"),
        ("defaults: {ldmm: on}", "defaults.ldmm"),
        ("devices: [{ip: 1.2.3.4, ldm_windows: [{start: yesterday}]}]", "not a time"),
        ("defaults: [", "not valid YAML"),
    ],
)
def test_invalid_policies(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake in a policy file gives one error naming the file and the field."""
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_policy_file(tmp_path: Path) -> None:
    """A missing policy file is a PolicyError, not a traceback."""
    with pytest.raises(PolicyError, match="No such file"):
        load_policy(tmp_path / "none.yaml")


def test_command_line_windows() -> None:
    """--ldm-window START,END accepts ISO times, epoch seconds and an open end."""
    assert parse_windows(["1000,2000", "2024-05-01T10:00:00Z,"]) == (
        (1000.0, 2000.0),
        (1714557600.0, None),
    )
    with pytest.raises(PolicyError, match="--ldm-window"):
        parse_windows(["soon,later"])
