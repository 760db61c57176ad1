"""A capture replayed into the service counts once, whatever path names it and however often
its replay is cut short: the same capture records, coverage and alerts (DNS lookups among them)
as one uninterrupted replay (issue 14)."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dronewatch.agent.spool import Spool
from dronewatch.api.app import create_app
from dronewatch.api.service import Service
from dronewatch.api.settings import Settings
from dronewatch.capture.files import FileSource
from dronewatch.core.pipeline import AnalysisConfig
from dronewatch.judge.alert import is_lookup
from dronewatch.judge.evidence import EvidenceOptions
from dronewatch.transport.replay import replay
from tests.live import free_port
from tests.pcaps import PCAPS, ROOT, capture
from tests.service_fixtures import Api

FLIGHT = "third_party/wsensing2021/Normal_Flights_Flight5.pcapng.gz"
"""An 11-minute flight whose phone looks up 21 names nobody local answers."""
LDM_OFF = "scenarios/dji_fly_ldm_off.pcap"
BATCH = 50


class Crash(Exception):
    """The replay process dies here (as `kill -9` would: nothing after it runs)."""


class Running:
    """A service over one data directory that can be stopped and started again (a crash or a
    restart of the service keeps only what its database committed)."""

    def __init__(self, data: Path) -> None:
        self.settings = Settings(data_dir=data, port=free_port(), sse_poll_s=0.1)
        self.api: Api | None = None
        self._client: TestClient | None = None

        self.keys: dict[str, str] | None = None

    def start(self) -> Api:
        service = Service.open(self.settings)
        self._client = TestClient(create_app(self.settings, service))
        self._client.__enter__()
        if self.keys is None:
            self.api = Api(self._client, service)
            self.keys = self.api.keys
        else:  # the keys made at the first start are in the database
            self.api = Api.__new__(Api)
            self.api.client, self.api.service, self.api.keys = self._client, service, self.keys
        return self.api

    def stop(self) -> None:
        if self._client is not None:
            self._client.__exit__(None, None, None)
        if self.api is not None:
            self.api.service.close()
        self._client = self.api = None


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    runs: list[Running] = []

    def make(name: str) -> Running:
        runs.append(Running(tmp_path / name))
        return runs[-1]

    yield make  # type: ignore[misc]
    for r in runs:
        r.stop()


@pytest.fixture(scope="module")
def flight_once(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The `state` of a service after one uninterrupted replay of the flight (batches of
    `BATCH`): what every interrupted or differently cut replay of it must reach."""
    path = str(capture(PCAPS / FLIGHT))
    whole = Running(tmp_path_factory.mktemp("whole"))
    try:
        api = whole.start()
        replay_file(api, path)
        return state(api)
    finally:
        whole.stop()


def config(api: Api) -> AnalysisConfig:
    return AnalysisConfig(
        classifier=api.service.classifier,
        resolver=api.service.resolver,
        evidence=EvidenceOptions(),
    )


def post(api: Api, batch: str, records: list[dict[str, Any]]) -> None:
    """Deliver one batch as `dronewatch replay --ldm on` does (admin key, LDM of the devices it
    discovers on)."""
    resp = api.ingest(records, batch=batch, role="admin", agent="replay", discovered_ldm=True)
    assert resp.status_code == 200, resp.text[:300]


def replay_file(api: Api, path: str) -> None:
    """`dronewatch replay PATH --ldm on` straight to the service (batches of `BATCH`)."""
    replay(FileSource(path), lambda b, r: post(api, b, r), config(api), batch_size=BATCH)


def state(api: Api) -> dict[str, Any]:
    """What the service says about what it was given: its captures' coverage, each device's
    verdict and coverage, and every alert with its counts."""
    alerts = api.get("/api/v1/alerts", params={"limit": 10000}).json()["items"]
    devices = {}
    for d in api.get("/api/v1/devices").json():
        v = api.get(f"/api/v1/devices/{d['id']}/verdict").json()
        devices[d["ip"]] = (v["verdict"], v["msg"], v["coverage"], v["alerts"])
    return {
        "devices": devices,
        "alerts": sorted(
            (a["id"], a["note"], a.get("dest_name"), a["bytes_out"], a["flows"], a["first_seen"])
            for a in alerts
        ),
        "lookups": sum(1 for a in alerts if is_lookup_doc(a)),
        "notes": Counter(a["note"] for a in alerts),
    }


def is_lookup_doc(doc: dict[str, Any]) -> bool:
    from dronewatch.api.sinks import alert_from_dict

    return is_lookup(alert_from_dict(doc))


def spellings(tmp_path: Path, rel: str) -> list[str]:
    """The same capture named five ways: relative to the checkout, with `./` and `..`, absolute,
    through a symbolic link, and a copy under another name (the working directory is the
    checkout)."""
    link = tmp_path / "link.pcap"
    link.symlink_to(PCAPS / rel)
    copy = tmp_path / ("copy-" + Path(rel).name)
    shutil.copyfile(PCAPS / rel, copy)
    return [
        f"pcaps/{rel}",
        f"./pcaps/../pcaps/{rel}",
        str(PCAPS / rel),
        str(link),
        str(copy),
    ]


@pytest.mark.parametrize(("rel", "others"), [(LDM_OFF, slice(1, None)), (FLIGHT, slice(4, 5))])
def test_a_capture_replayed_under_other_path_spellings_counts_once(
    running: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rel: str, others: slice
) -> None:
    """The same file replayed again under other path spellings (`./`, `..`, absolute, a symbolic
    link, a copy; for the flight, with its DNS lookups, the copy under another name, which
    shares nothing with the first but its bytes) leaves one capture in the coverage, the same
    verdicts and the same alerts as the first replay."""
    capture(PCAPS / rel)
    monkeypatch.chdir(ROOT)
    api = running("svc").start()
    names = spellings(tmp_path, rel)
    replay_file(api, names[0])
    once = state(api)
    assert once["alerts"] and all(v[2]["captures"] == 1 for v in once["devices"].values())
    for name in names[others]:
        replay_file(api, name)
    assert state(api) == once


@pytest.mark.parametrize("crash_after", [3, 20])
def test_recovery_after_a_crash_raises_what_one_replay_raises(
    running: Any, tmp_path: Path, crash_after: int, flight_once: dict[str, Any]
) -> None:
    """A replay with a spool killed after `crash_after` batches, the last of them taken by the
    service but never acknowledged, then the service restarted, then the replay run again with
    that spool (its waiting batches first, then the whole capture): the service holds the
    captures, coverage, verdicts and alerts, DNS lookups among them, of one uninterrupted
    replay."""
    path = str(capture(PCAPS / FLIGHT))
    want = flight_once
    assert want["lookups"] >= 20

    svc = running("crashed")
    api = svc.start()
    spool = Spool(tmp_path / "spool")
    put = 0

    def spooled(batch: str, records: list[dict[str, Any]]) -> None:
        nonlocal put
        if put == crash_after:
            raise Crash
        spool.put(batch, records)
        put += 1

    with pytest.raises(Crash):
        replay(FileSource(path), spooled, config(api), batch_size=BATCH)
    delivered = 0
    while (item := spool.peek(timeout=0)) is not None and delivered < crash_after - 2:
        post(api, item.batch_id, item.records)
        spool.ack(item.seq)
        delivered += 1
    item = spool.peek(timeout=0)
    assert item is not None
    post(api, item.batch_id, item.records)  # taken by the service; the ack is lost in the crash
    spool.close()
    svc.stop()

    api = svc.start()  # the service restarted; the replay is run again with its spool
    spool = Spool(tmp_path / "spool")
    assert spool.pending()[0] == 2
    replay(FileSource(path), spool.put, config(api), batch_size=BATCH)
    while (item := spool.peek(timeout=0)) is not None:
        post(api, item.batch_id, item.records)
        spool.ack(item.seq)
    spool.close()
    got = state(api)
    assert got["lookups"] == want["lookups"]
    assert got["notes"] == want["notes"]
    assert got == want


@pytest.mark.parametrize("size", [7])
def test_lookup_alerts_do_not_depend_on_batch_cuts(
    running: Any, size: int, flight_once: dict[str, Any]
) -> None:
    """The flight replayed in batches of 7 raises the alerts it raises in batches of `BATCH`:
    the DNS lookups are judged on all of the device's observations whatever batch brought them
    (tests/golden/test_one_judge.py holds every capture in one batch against other sizes)."""
    path = str(capture(PCAPS / FLIGHT))
    api = running("svc").start()
    replay(FileSource(path), lambda b, r: post(api, b, r), config(api), batch_size=size)
    got = state(api)
    assert got["lookups"] == flight_once["lookups"] >= 20
    assert got == flight_once


def metric(api: Api, name: str) -> float:
    """The value of one unlabelled counter of /metrics."""
    (line,) = [ln for ln in api.get("/metrics").text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])


def test_the_packets_counter_counts_a_replayed_capture_once(
    running: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dronewatch_packets_total` ("packets of the flows ingested") counts a capture replayed
    again under another path once, as `dronewatch_flows_total` does."""
    monkeypatch.chdir(ROOT)
    api = running("svc").start()
    names = spellings(tmp_path, LDM_OFF)
    replay_file(api, names[0])
    once = (metric(api, "dronewatch_packets_total"), metric(api, "dronewatch_flows_total"))
    replay_file(api, names[1])
    twice = (metric(api, "dronewatch_packets_total"), metric(api, "dronewatch_flows_total"))
    assert twice == once
