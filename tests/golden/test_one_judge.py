"""One judge: the alert service reaches the alerts and verdicts `dronewatch analyze --ldm on` gives
for the same capture, whatever the batch size and whatever order the batches arrive in."""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dronewatch.api.records import validate_records
from dronewatch.api.service import Service
from dronewatch.api.settings import Settings
from dronewatch.api.store import AlertFilter
from dronewatch.api.verdict import device_verdict
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import EngineOptions
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.geoip.maxmind import MaxMindResolver
from dronewatch.judge.classify import Classifier
from dronewatch.judge.egress import MAX_UIDS
from dronewatch.judge.monitor import VerdictRecord
from dronewatch.judge.policy import Policy, with_devices
from dronewatch.transport.replay import Batcher, batch_id
from tests.pcaps import PCAPS, all_captures

ORDER_FREE = (
    "id",
    "note",
    "msg",
    "device_ip",
    "device_mac",
    "device_name",
    "category",
    "severity",
    "dest_ip",
    "dest_port",
    "dest_name",
    "proto",
    "vendor",
    "app",
    "rule_id",
    "confidence",
    "evidence_tag",
    "dest_country",
    "dest_asn",
    "dest_as_org",
    "bytes_out",
    "bytes_in",
    "pkts_out",
    "pkts_in",
    "flows",
    "first_seen",
    "last_seen",
    "ldm",
)
"""Alert fields that cannot depend on the order flows are counted in."""


@functools.cache
def analyzed(
    capture: Path, max_flows: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, str]]:
    """What `analyze --ldm on [--max-flows N]` gives: (records as an agent sends them, alerts
    by id, verdict by device)."""
    config = AnalysisConfig(
        policy=Policy().with_ldm(True),
        classifier=Classifier.load(),
        resolver=MaxMindResolver.bundled(),
        engine=None if max_flows is None else EngineOptions(max_flows=max_flows),
    )
    records: list[dict[str, Any]] = []
    verdicts: dict[str, str] = {}

    def emit(record: Record) -> None:
        if isinstance(record, VerdictRecord):
            verdicts[record.device_ip] = record.verdict
        batcher(record)

    batcher = Batcher(lambda _batch, batch: records.extend(batch), size=1 << 30)
    result = run_source(FileSource(str(capture)), emit, config)
    batcher.flush()
    # As a replay sends them: observations only, checked as the ingest API checks them.
    assert validate_records(records) == records
    return records, {a.id: a.to_dict() for a in result.alerts}, verdicts


def served(
    tmp_path: Path, records: list[dict[str, Any]], size: int, reverse: bool, migrated: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Ingest `records` in batches of `size` (last batch first with `reverse`) as `replay --ldm on`
    does, into a new service over a copy of the `migrated` database; returns the service's alerts
    by id and its verdict by device."""
    batches = [records[i : i + size] for i in range(0, len(records), size)]
    if reverse:
        batches.reverse()
    shutil.copyfile(migrated, tmp_path / migrated.name)
    service = Service.open(Settings(data_dir=tmp_path))
    try:
        for batch in batches:
            service.ingest(batch_id(batch), "test", batch, discovered_ldm=True)
        store = service.store
        alerts = store.list_alerts(AlertFilter(), since=None, cursor=None, limit=100_000)
        verdicts = {
            d["ip"]: device_verdict(store, d, _of(alerts, d["ip"]), None, None)["verdict"]
            for d in store.list_devices()
        }
    finally:
        service.close()
    return {a["id"]: a for a in alerts}, verdicts


def _of(alerts: list[dict[str, Any]], ip: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["device_ip"] == ip]


BATCHINGS = ((1_000_000, False), (500, False), (41, False), (41, True))
"""(batch size, last batch first): one batch, the default size, and small batches in and out of
order."""


def batchings(records: int) -> list[tuple[int, bool]]:
    """The BATCHINGS that cut `records` records differently: a size that holds them all is one
    batch, whichever size and order."""
    seen: set[tuple[int, bool]] = set()
    distinct = []
    for size, reverse in BATCHINGS:
        cut = (size, reverse) if size < records else (records, False)
        if cut not in seen:
            seen.add(cut)
            distinct.append((size, reverse))
    return distinct


def test_batchings_that_cut_alike_are_run_once() -> None:
    assert batchings(10) == [(1_000_000, False)]
    assert batchings(100) == [(1_000_000, False), (41, False), (41, True)]
    assert batchings(501) == list(BATCHINGS)


@pytest.mark.parametrize(
    "capture", [pytest.param(p, id=str(p.relative_to(PCAPS))) for p in all_captures()]
)
def test_service_judges_as_analyze_does(
    capture: Path, tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path
) -> None:
    """Replayed into the service in batches of any size and order, a capture raises the same
    alerts, with the same bytes, flows and times, and gets the same verdicts as analyze."""
    records, want, want_verdicts = analyzed(capture)
    for size, reverse in batchings(len(records)):
        how = f"batches of {size}{', last first' if reverse else ''}"
        got, verdicts = served(
            tmp_path_factory.mktemp("served"), records, size, reverse, migrated_sqlite
        )
        assert set(got) == set(want), how
        for alert_id, alert in want.items():
            mine = got[alert_id]
            assert {k: mine.get(k) for k in ORDER_FREE} == {k: alert.get(k) for k in ORDER_FREE}, (
                how
            )
            assert set(mine["evidence"]) == set(alert["evidence"]), how
            if not reverse:  # in capture order, to the last uid and evidence value
                assert (mine["uids"], mine["evidence"]) == (alert["uids"], alert["evidence"]), how
            elif alert["flows"] <= MAX_UIDS:
                assert sorted(mine["uids"]) == sorted(alert["uids"]), how
        assert verdicts == want_verdicts, how


def test_service_judges_a_full_flow_table_as_analyze_does(
    tmp_path: Path, migrated_sqlite: Path
) -> None:
    """A capture analyzed with a flow table too small for it (`--max-flows 5`): analyze calls
    a verdict that would otherwise be clean incomplete (a violation stays one), and so does the
    service the records are replayed into."""
    records, _, want = analyzed(PCAPS / "scenarios/dji_fly_ldm_off.pcap", 5)
    (capture,) = [r for r in records if r["log"] == "capture"]
    assert capture["evicted_flows"] > 0
    _, verdicts = served(tmp_path, records, 500, False, migrated_sqlite)
    assert verdicts == want and sorted(want.values()) == ["incomplete", "violation"]


@contextlib.contextmanager
def declared_by_mac(
    tmp_path: Path, migrated: Path, mac: str, records: list[dict[str, Any]]
) -> Iterator[tuple[Service, dict[str, Any]]]:
    """A new service over a copy of the `migrated` database, a device declared there by `mac`
    alone with LDM on, and `records` ingested in one batch: (the service, the device)."""
    shutil.copyfile(migrated, tmp_path / migrated.name)
    service = Service.open(Settings(data_dir=tmp_path))
    try:
        device = service.store.create_device({"mac": mac}, by="test")
        service.store.set_ldm(device["id"], True, 0.0, by="test")
        service.ingest(batch_id(records), "test", records, discovered_ldm=True)
        yield service, service.store.get_device(device["id"])
    finally:
        service.close()


def test_service_judges_a_device_whose_frames_are_encrypted_as_analyze_does(
    tmp_path: Path, migrated_sqlite: Path
) -> None:
    """A monitor-mode capture of a protected network, its phone named by its MAC: analyze calls
    the verdict incomplete (129 encrypted frames it sent), and so does the service the records
    are replayed into, with the phone declared there by the same MAC."""
    mac = "6c:ad:f8:7e:54:c3"
    capture = PCAPS / "third_party/wsensing2021/Attack_De-Authentication_01.pcapng"
    records: list[dict[str, Any]] = []
    verdicts: dict[str, VerdictRecord] = {}

    def emit(record: Record) -> None:
        if isinstance(record, VerdictRecord):
            verdicts[record.device_ip] = record
        batcher(record)

    batcher = Batcher(lambda _batch, batch: records.extend(batch), size=1 << 30)
    policy = with_devices(Policy().with_ldm(True), [mac])
    run_source(FileSource(str(capture)), emit, AnalysisConfig(policy=policy))
    batcher.flush()
    (cap,) = [r for r in records if r["log"] == "capture"]
    assert cap["encrypted"][mac] == 129
    with declared_by_mac(tmp_path, migrated_sqlite, mac, records) as (service, device):
        served = device_verdict(service.store, device, [], None, None)
    assert verdicts[mac].verdict == served["verdict"] == "incomplete"
    assert served["coverage"]["encrypted_frames"] == 129
    assert "129 encrypted 802.11 data frames sent by the device" in served["msg"]
    assert "129 encrypted 802.11 data frames sent by the device" in verdicts[mac].msg


@pytest.mark.parametrize(
    ("capture", "mac", "agent_told"),
    [
        # A phone at a private IPv4 address: the agent needs no declaration to see it.
        ("scenarios/dji_fly_ldm_on_violation.pcap", "ae:3f:52:8c:77:02", False),
        # A host at a global IPv6 address (Zeek's trace): the agent is given `--device MAC`.
        ("third_party/zeek/ipv6-fragmented-dns.pcap", "c4:2c:03:3b:6c:aa", True),
    ],
)
def test_service_judges_a_device_declared_by_its_mac_as_analyze_does(
    tmp_path: Path, migrated_sqlite: Path, capture: str, mac: str, agent_told: bool
) -> None:
    """A device declared in the service by its MAC alone (no address) is judged on what its
    addresses sent, as `analyze --device MAC` judges it: the same verdict, the same alerts.
    Before, the service looked the device up by address only, found none, and called it clean."""
    config = AnalysisConfig(
        policy=with_devices(Policy().with_ldm(True), [mac]),
        classifier=Classifier.load(),
        resolver=MaxMindResolver.bundled(),
    )
    verdicts: dict[str, VerdictRecord] = {}
    want: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []

    def emit(record: Record) -> None:
        if isinstance(record, VerdictRecord):
            verdicts[record.device_ip] = record

    result = run_source(FileSource(str(PCAPS / capture)), emit, config)
    want = [a.to_dict() for a in result.alerts if a.device_mac == mac]
    (verdict,) = [v for v in verdicts.values() if v.device_mac == mac]
    assert verdict.verdict == "violation" and want
    agent = AnalysisConfig(
        policy=with_devices(Policy().with_ldm(True), [mac] if agent_told else []),
        classifier=Classifier.load(),
        resolver=MaxMindResolver.bundled(),
    )
    batcher = Batcher(lambda _batch, batch: records.extend(batch), size=1 << 30)
    run_source(FileSource(str(PCAPS / capture)), batcher, agent)
    batcher.flush()
    records = [r for r in records if r["log"] not in ("alerts", "verdicts")]  # as agents send
    with declared_by_mac(tmp_path, migrated_sqlite, mac, records) as (service, device):
        store = service.store
        alerts = store.list_alerts(AlertFilter(device=mac), since=None, cursor=None, limit=1000)
        served = device_verdict(store, device, alerts, None, None)
        flows = store.flows_for(store.device_hosts(device), None, None, 1000)
    assert served["verdict"] == "violation"
    assert served["destinations"] and flows
    assert {a["id"]: {k: a.get(k) for k in ORDER_FREE} for a in alerts} == {
        a["id"]: {k: a.get(k) for k in ORDER_FREE} for a in want
    }
