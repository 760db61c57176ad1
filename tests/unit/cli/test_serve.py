"""`serve -i` wiring: the capture child's command line, the URL it ships to, its agent key."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from dronewatch.api.service import Service
from dronewatch.api.settings import Settings
from dronewatch.cli.app import build_parser
from dronewatch.cli.serve import CAPTURE_KEY_PREFIX, _capture_key, capture_argv, service_url


def test_capture_argv_is_an_agent_command_with_serves_options(tmp_path: Path) -> None:
    """The child's command line is `dronewatch agent` with serve's capture options and the
    service's rules, GeoIP and local subnets, shipping to this service; it carries no key."""
    args = build_parser().parse_args(
        ["--log-level", "info", "serve", "-i", "eth9", "-i", "eth8", "--filter", "-udp port 53"]
    )
    settings = Settings(
        data_dir=tmp_path,
        host="0.0.0.0",
        port=9999,
        rules=[tmp_path / "rules"],
        geoip_dir=tmp_path / "geoip",
        local_subnets=["10.9.0.0/16"],
    )
    argv = capture_argv(args, settings, "afpacket")
    assert argv[:3] == [sys.executable, "-m", "dronewatch.cli.app"]
    agent = build_parser().parse_args(argv[3:])
    assert agent.command == "agent" and agent.log_level == "info"
    assert agent.interface == ["eth9", "eth8"]
    assert (agent.api, agent.key, agent.name) == ("http://127.0.0.1:9999", None, "local")
    assert agent.spool == tmp_path / "spool"
    assert (agent.backend, agent.filter, agent.log_format) == ("afpacket", "-udp port 53", "json")
    assert agent.rules == [tmp_path / "rules"] and agent.geoip_dir == tmp_path / "geoip"
    assert agent.local_subnet == ["10.9.0.0/16"]
    assert not any(arg.startswith(("--key", "dw_")) for arg in argv)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8470"),
        ("0.0.0.0", "http://127.0.0.1:8470"),
        ("::", "http://[::1]:8470"),
        ("fd00::5", "http://[fd00::5]:8470"),
        ("sensor.lab", "http://sensor.lab:8470"),
    ],
)
def test_service_url_reaches_wildcard_addresses_on_loopback(host: str, url: str) -> None:
    """The child ships to the address the service listens on, loopback for a wildcard."""
    assert service_url(host, 8470) == url


def test_capture_key_is_new_each_start_and_revokes_those_left_behind(tmp_path: Path) -> None:
    """Each start makes a new agent key; a live one an earlier start on the same host and port
    left is revoked, while another port's key stays live."""
    service = Service.open(Settings(data_dir=tmp_path))
    try:
        first, secret = _capture_key(service, 8470)
        other, _ = _capture_key(service, 8471)
        second, secret2 = _capture_key(service, 8470)
        keys = {k.name: k for k in service.store.list_keys()}
        assert first.startswith(f"{CAPTURE_KEY_PREFIX}{socket.gethostname()[:60]}:8470/")
        assert keys[first].role == "agent" and keys[first].revoked_at is not None
        assert keys[second].revoked_at is None and keys[other].revoked_at is None
        assert service.store.verify_key(secret) is None
        verified = service.store.verify_key(secret2)
        assert verified is not None and verified.name == second
    finally:
        service.close()
