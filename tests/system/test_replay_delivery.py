"""`dronewatch replay` over HTTP delivers every batch or says what it did not: batches wait in a
durable spool through an outage, a refused batch is quarantined, and the exit code tells."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from dronewatch.api.service import Service
from dronewatch.api.settings import Settings
from tests.live import DRONEWATCH, run_service, sqlite_settings
from tests.pcaps import PCAPS, capture

VIOLATION = PCAPS / "scenarios" / "dji_fly_ldm_on_violation.pcap"
CLEAN = PCAPS / "scenarios" / "dji_fly_ldm_on_clean.pcap"


def replay(
    url: str, key: str, spool: Path, *files: Path, timeout_s: float = 60, device: str = ""
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            DRONEWATCH,
            "replay",
            *(["--device", device] if device else []),
            *(str(capture(f)) for f in files),
            "--api",
            url,
            "--key",
            key,
            "--ldm",
            "on",
            "--batch-size",
            "7",
            "--spool",
            str(spool),
            "--deliver-timeout",
            str(timeout_s),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def admin_key(settings: Settings) -> str:
    """An admin key in the service's database, made before the service first runs."""
    service = Service.open(settings)
    try:
        return service.store.create_key("replayer", "admin")[1]
    finally:
        service.close()


def test_batches_wait_through_an_outage_and_are_all_delivered(tmp_path: Path) -> None:
    """The service comes up after the replay has analysed its capture: every batch still arrives
    (exit 0) and the service raises the capture's alert."""
    settings = sqlite_settings(tmp_path / "svc")
    url = f"http://127.0.0.1:{settings.port}"
    proc = replay(url, admin_key(settings), tmp_path / "spool", VIOLATION, timeout_s=60)
    time.sleep(4)
    assert proc.poll() is None  # still waiting to deliver
    for live in run_service(settings):
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert "every batch delivered" in out
        with live.client() as client:
            alerts = client.get("/api/v1/alerts").json()["items"]
        assert [a["dest_name"] for a in alerts] == ["mydjiflight.dji.com"]


def test_undelivered_batches_stay_in_the_spool_for_the_next_replay(tmp_path: Path) -> None:
    """With no service until the deadline, replay exits 4 naming the spool; the next replay with
    that spool delivers the waiting batches first, so both captures' traffic arrives."""
    settings = sqlite_settings(tmp_path / "svc")
    url = f"http://127.0.0.1:{settings.port}"
    key = admin_key(settings)
    spool = tmp_path / "spool"
    first = replay(url, key, spool, VIOLATION, timeout_s=1)
    out, err = first.communicate(timeout=90)
    assert first.returncode == 4, (out, err)
    assert "not delivered" in err and str(spool) in err
    for live in run_service(settings):
        second = replay(url, key, spool, CLEAN, timeout_s=60)
        out, err = second.communicate(timeout=90)
        assert second.returncode == 0, err
        assert "left in" in err and "every batch delivered" in out
        with live.client() as client:
            alerts = client.get("/api/v1/alerts").json()["items"]
        assert [a["dest_name"] for a in alerts] == ["mydjiflight.dji.com"]
        captures = live.service.store.coverage(None, None)["captures"]
        assert captures == 2


def test_a_refused_batch_is_quarantined_and_reported(tmp_path: Path) -> None:
    """A key the service refuses for ingest (reader): the batches are quarantined with the
    service's answer, nothing blocks, and replay exits 4 saying why."""
    spool = tmp_path / "spool"
    for live in run_service(sqlite_settings(tmp_path / "svc")):
        proc = replay(live.url, live.key("reader", "dash"), spool, CLEAN, timeout_s=30)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 4, (out, err)
        assert "refused by" in err and "403" in err
    from dronewatch.agent.spool import Spool

    kept = Spool(spool)
    try:
        assert kept.pending()[0] == 0 and kept.quarantined()
        assert all("403" in error for _, error in kept.quarantined())
    finally:
        kept.close()


def test_a_device_named_on_the_replay_is_judged_by_the_service(tmp_path: Path) -> None:
    """`replay --device` names the device under test in a capture where nothing marks it as a
    ground station (a laptop on a campus network, a public address): the service discovers it,
    with "named by the user" as the reason, and judges what it sent with LDM on."""
    settings = sqlite_settings(tmp_path / "svc")
    url = f"http://127.0.0.1:{settings.port}"
    key = admin_key(settings)
    wiki = PCAPS / "third_party" / "zeek" / "wikipedia.pcap"
    for live in run_service(settings):
        proc = replay(url, key, tmp_path / "spool", wiki)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        with live.client() as client:
            assert client.get("/api/v1/devices").json() == []
        named = replay(url, key, tmp_path / "spool2", wiki, device="141.142.220.118")
        out, err = named.communicate(timeout=90)
        assert named.returncode == 0, err
        with live.client() as client:
            (device,) = client.get("/api/v1/devices").json()
            assert (device["ip"], device["ldm"]) == ("141.142.220.118", True)
            verdict = client.get(f"/api/v1/devices/{device['id']}/verdict").json()
            alerts = client.get("/api/v1/alerts").json()["items"]
        assert verdict["verdict"] == "violation"
        assert {a["device_ip"] for a in alerts} == {"141.142.220.118"}
        assert "upload.wikimedia.org" in {a["dest_name"] for a in alerts}
