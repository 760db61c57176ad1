"""The agent on a mirrored link with a whole drone-app session going on: real clients, real servers.

The recording script's scenario topology (scripts/record_pcaps.py) is brought up with its links
through bridges in this namespace: the phone's Wi-Fi to the aircraft and its uplink to the cloud
namespace (DNS, HTTPS, HTTP, HTTP/3 over QUIC and an RTMP sink, all real servers). The phone runs
the scenario's real clients (DNS lookups, TLS and QUIC requests, an RTMP livestream with ffmpeg, a
DUML link to the aircraft). A dronewatch agent captures on both bridges and sends to a service
that holds the phone's policy; the alerts that reach the API are asserted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dronewatch.judge.alert import NOTE_LEAK
from tests.live import LiveService, run_service, sqlite_settings
from tests.servers import _need

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import record_pcaps  # noqa: E402

util = record_pcaps.util

DRONEWATCH = Path(sys.executable).parent / "dronewatch"
PHONE_UPLINK = "10.77.0.2"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")
TOOLS = {"ip": "iproute2", "dumpcap": "tshark", "ffmpeg": "ffmpeg", "mosquitto": "mosquitto"}


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[record_pcaps.Ctx]:
    """A recording context (scratch directory, processes, certificate); everything torn down."""
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            _need(tool, package)
    cert, key = util.make_cert(tmp_path, record_pcaps.zone.CERT_NAMES)
    os.chmod(tmp_path, 0o755)
    procs = util.Procs(tmp_path)
    ctx = record_pcaps.Ctx("live", tmp_path, procs, cert, key)
    try:
        yield ctx
    finally:
        procs.stop_all()
        record_pcaps.topology_down()


def run_session(
    name: str, ctx: record_pcaps.Ctx, live: LiveService, spool: Path
) -> tuple[list[dict[str, object]], str]:
    """Stage scenario `name`, capture it with an agent on the bridges, play the phone; the alerts
    in the service once the agent has stopped (all flows flushed), and the agent's log."""
    sc = record_pcaps.stage_scenario(name, ctx, mirrored=True)
    cmd = [str(DRONEWATCH), "agent", "--api", live.url, "--key", live.key("agent", name)]
    for bridge in record_pcaps.BRIDGES:
        cmd += ["-i", bridge]
    cmd += ["--spool", str(spool), "--flush-s", "0.5"]
    agent = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert agent.stderr is not None
    deadline = time.monotonic() + 20
    while "capturing on" not in agent.stderr.readline():
        assert agent.poll() is None and time.monotonic() < deadline, "agent did not start"
    time.sleep(1.0)  # dumpcap opens the interfaces right after
    try:
        record_pcaps.play_scenario(name, ctx, sc)
        time.sleep(1.0)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
        log = agent.stderr.read()
        agent.stderr.close()
    with live.client() as c:
        alerts: list[dict[str, object]] = c.get("/api/v1/alerts", params={"limit": 100}).json()[
            "items"
        ]
    return alerts, log


def declare(live: LiveService, ip: str, ldm: bool) -> int:
    with live.client() as c:
        dev = c.post("/api/v1/devices", json={"ip": ip, "name": "pilot-phone"}).json()
        c.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": ldm, "at": 0}).raise_for_status()
        return int(dev["id"])


def test_ldm_on_session_alerts_per_cloud_destination(
    scenario: record_pcaps.Ctx, tmp_path: Path
) -> None:
    """A full DJI Fly session while LDM is on: each cloud destination is an alert, in its
    category; the local DUML link to the aircraft is none."""
    for live in run_service(sqlite_settings(tmp_path / "svc")):
        declare(live, PHONE_UPLINK, ldm=True)
        alerts, log = run_session("dji_fly_ldm_off", scenario, live, tmp_path / "spool")
        leaks = {(a["dest_name"], a["category"]) for a in alerts if a["note"] == NOTE_LEAK}
        assert leaks == {
            ("www.skypixel.com", "media_sync"),
            ("live.example-user-stream.net", "livestream"),
            ("api.mapbox.com", "maps"),
            ("flysafe-api.dji.com", "geofence"),
            ("account-api.dji.com", "account"),
            ("statistical-report.djiservice.org", "analytics"),
        }, log
        assert all(a["device_ip"] == PHONE_UPLINK for a in alerts)


def test_ldm_on_clean_session_raises_nothing(scenario: record_pcaps.Ctx, tmp_path: Path) -> None:
    """The same app with LDM on and keeping its promise: only the local link, no alert, and the
    verdict is clean with the agent's coverage."""
    for live in run_service(sqlite_settings(tmp_path / "svc")):
        device = declare(live, PHONE_UPLINK, ldm=True)
        alerts, log = run_session("dji_fly_ldm_on_clean", scenario, live, tmp_path / "spool")
        assert alerts == [], log
        with live.client() as c:
            verdict = c.get(f"/api/v1/devices/{device}/verdict").json()
        assert verdict["verdict"] == "clean", verdict
        assert verdict["coverage"]["packets"] > 100, (verdict, log)


def test_ldm_off_session_stores_flows_and_raises_nothing(
    scenario: record_pcaps.Ctx, tmp_path: Path
) -> None:
    """LDM off: the upload to DJI is recorded as the device's traffic, not as an alert."""
    for live in run_service(sqlite_settings(tmp_path / "svc")):
        device = declare(live, PHONE_UPLINK, ldm=False)
        alerts, log = run_session("dji_fly_ldm_on_violation", scenario, live, tmp_path / "spool")
        assert alerts == [], log
        with live.client() as c:
            flows = c.get(f"/api/v1/devices/{device}/flows").json()["items"]
            verdict = c.get(f"/api/v1/devices/{device}/verdict").json()
        assert "mydjiflight.dji.com" in {f.get("server_name") for f in flows}
        assert verdict["verdict"] == "not_applicable"


def test_cloud_api_telemetry_over_mqtt_is_an_alert(
    scenario: record_pcaps.Ctx, tmp_path: Path
) -> None:
    """A smart controller publishing DJI Cloud API telemetry to an MQTT broker (mosquitto) while
    LDM is on: the telemetry topic's flow is the alert."""
    for live in run_service(sqlite_settings(tmp_path / "svc")):
        declare(live, PHONE_UPLINK, ldm=True)
        alerts, log = run_session("dji_cloud_api_mqtt", scenario, live, tmp_path / "spool")
        leaks = {
            (a["dest_name"], a["dest_port"], a["category"])
            for a in alerts
            if a["note"] == NOTE_LEAK
        }
        assert leaks == {("mqtt.fleet.example.org", 1883, "telemetry")}, log
