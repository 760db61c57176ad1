"""The alert service's API over TestClient, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from dronewatch.capture.files import FileSource
from dronewatch.core.pipeline import CaptureRecord
from dronewatch.judge.policy import ldm_on_during, ldm_windows
from tests.service_fixtures import Api, records_of

PHONE = "10.77.0.2"
LDM_OFF_DESTS = {
    "www.skypixel.com",
    "live.example-user-stream.net",
    "api.mapbox.com",
    "flysafe-api.dji.com",
    "account-api.dji.com",
    "statistical-report.djiservice.org",
}


def all_alerts(api: Api, **params: Any) -> list[dict[str, Any]]:
    resp = api.get("/api/v1/alerts", params={"limit": 1000, **params})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def test_health_and_readiness(api: Api) -> None:
    """/healthz answers without a key; /readyz checks the database and its schema revision."""
    assert api.client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert api.client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/alerts", None),
        ("get", "/api/v1/devices", None),
        ("post", "/api/v1/devices", {"ip": "10.0.0.9"}),
        ("post", "/api/v1/ingest", {"batch_id": "x", "records": []}),
        ("get", "/metrics", None),
    ],
)
def test_no_key_is_401(api: Api, method: str, path: str, body: Any) -> None:
    """Every API route refuses a request without a key, asking for a Bearer token."""
    resp = getattr(api.client, method)(path, **({"json": body} if body is not None else {}))
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"


def test_unknown_and_revoked_keys_are_401(api: Api) -> None:
    """A made-up key and a revoked key are both refused."""
    bad = api.client.get("/api/v1/alerts", headers={"Authorization": "Bearer dw_nope"})
    assert bad.status_code == 401
    api.service.store.revoke_key("test-reader")
    assert api.get("/api/v1/alerts", role="reader").status_code == 401


def test_x_api_key_header_is_accepted(api: Api) -> None:
    """The key may also come in X-API-Key."""
    resp = api.client.get("/api/v1/alerts", headers={"X-API-Key": api.keys["reader"]})
    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("role", "method", "path", "body", "allowed"),
    [
        ("reader", "get", "/api/v1/alerts", None, True),
        ("reader", "get", "/api/v1/devices", None, True),
        ("reader", "post", "/api/v1/devices", {"ip": "10.0.0.9"}, False),
        ("reader", "post", "/api/v1/ingest", {"batch_id": "r", "records": []}, False),
        ("reader", "get", "/api/v1/keys", None, False),
        ("agent", "post", "/api/v1/ingest", {"batch_id": "a", "records": []}, True),
        ("agent", "get", "/api/v1/alerts", None, True),
        ("agent", "post", "/api/v1/devices", {"ip": "10.0.0.9"}, False),
        ("agent", "post", "/api/v1/keys", {"name": "x", "role": "reader"}, False),
        ("admin", "post", "/api/v1/devices", {"ip": "10.0.0.9"}, True),
        ("admin", "post", "/api/v1/keys", {"name": "x", "role": "reader"}, True),
        ("admin", "post", "/api/v1/ingest", {"batch_id": "b", "records": []}, True),
    ],
)
def test_roles(api: Api, role: str, method: str, path: str, body: Any, allowed: bool) -> None:
    """reader reads, agent ingests and reads, admin does everything; others get 403."""
    kw = {"json": body} if body is not None else {}
    resp = getattr(api.client, method)(path, headers=api.headers(role), **kw)
    assert (resp.status_code < 300) is allowed, resp.text
    if not allowed:
        assert resp.status_code == 403 and role in resp.json()["detail"]


def test_open_reads(api: Api) -> None:
    """With open_reads, GETs need no key, writes still do."""
    api.client.app.state.settings.open_reads = True  # type: ignore[attr-defined]
    assert api.client.get("/api/v1/alerts").status_code == 200
    assert api.client.post("/api/v1/devices", json={"ip": "10.0.0.5"}).status_code == 401


def test_keys_are_stored_hashed(api: Api) -> None:
    """The key table holds no secret; the API shows a key's secret only at creation."""
    resp = api.post("/api/v1/keys", json={"name": "soc", "role": "reader"})
    secret = resp.json()["key"]
    assert secret.startswith("dw_")
    listed = api.get("/api/v1/keys", role="admin").json()
    assert all("key" not in k for k in listed)
    from sqlalchemy import select

    from dronewatch.api import db

    with api.service.store.engine.connect() as conn:
        stored = conn.execute(select(db.api_keys.c.key_hash)).scalars().all()
    assert secret not in stored and all(len(h) == 64 for h in stored)
    assert api.client.get("/api/v1/alerts", headers={"X-API-Key": secret}).status_code == 200


def test_device_crud_and_validation(api: Api) -> None:
    """Devices are created, read, patched and deleted; bad input is a 422 naming the field."""
    dev = api.post(
        "/api/v1/devices",
        json={"name": "pilot", "mac": "AA-BB-CC-DD-EE-01", "allowed_categories": ["maps"]},
    ).json()
    assert dev["mac"] == "aa:bb:cc:dd:ee:01" and dev["ldm"] is False
    dup = api.post("/api/v1/devices", json={"mac": "aa:bb:cc:dd:ee:01"})
    assert dup.status_code == 409
    bad = api.post("/api/v1/devices", json={"mac": "zz"})
    assert bad.status_code == 422 and "mac" in bad.text
    cat = api.post("/api/v1/devices", json={"ip": "10.1.1.1", "allowed_categories": ["weather"]})
    assert cat.status_code == 422 and "weather" in cat.text
    nothing = api.post("/api/v1/devices", json={"name": "ghost"})
    assert nothing.status_code == 400
    patched = api.patch(f"/api/v1/devices/{dev['id']}", json={"ip": "10.1.1.2"}).json()
    assert patched["ip"] == "10.1.1.2" and patched["allowed_categories"] == ["maps"]
    assert api.delete(f"/api/v1/devices/{dev['id']}").status_code == 204
    assert api.get(f"/api/v1/devices/{dev['id']}").status_code == 404


def test_ldm_change_records_who_and_when(api: Api) -> None:
    """Turning LDM on records the time it takes effect and the key that did it."""
    dev = api.device("10.9.9.9", ldm_at=None)
    resp = api.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": True, "at": 1000.0}).json()
    assert resp["ldm"] is True
    assert resp["ldm_history"][-1]["at"] == 1000.0
    assert resp["ldm_history"][-1]["by"] == "test-admin"


def test_ldm_on_during() -> None:
    """LDM counts as on for a flow when on at its start or switched on before its end."""
    windows = ldm_windows([(10.0, True), (20.0, False)])
    assert windows == ((10.0, 20.0),)
    assert not ldm_on_during(windows, 0.0, 5.0)
    assert ldm_on_during(windows, 5.0, 12.0)
    assert ldm_on_during(windows, 15.0, 25.0)
    assert not ldm_on_during(windows, 21.0, 30.0)
    assert ldm_windows([(0.0, True), (5.0, True), (9.0, False), (12.0, True)]) == (
        (0.0, 9.0),
        (12.0, None),
    )


def test_ingest_raises_alerts_for_ldm_on_device(api: Api) -> None:
    """A session with six cloud destinations from a device with LDM on: six leak alerts."""
    api.device(PHONE)
    resp = api.ingest(records_of("dji_fly_ldm_off.pcap"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["duplicate"] is False and body["flows_new"] == 13
    alerts = all_alerts(api)
    assert {a["dest_name"] for a in alerts} == LDM_OFF_DESTS
    sky = next(a for a in alerts if a["dest_name"] == "www.skypixel.com")
    assert (sky["category"], sky["vendor"], sky["dest_country"]) == ("media_sync", "DJI", "US")
    assert sky["bytes_out"] > 2_000_000 and sky["status"] == "open"


def test_no_alert_while_ldm_off(api: Api) -> None:
    """The same traffic from a device with LDM off raises nothing but is stored."""
    dev = api.device(PHONE, ldm_at=None)
    api.ingest(records_of("dji_fly_ldm_off.pcap"))
    assert all_alerts(api) == []
    flows = api.get(f"/api/v1/devices/{dev['id']}/flows").json()["items"]
    assert len(flows) == 12


def test_ldm_change_time_is_applied(api: Api) -> None:
    """LDM switched on after the session's flows: those flows raise nothing."""
    records = records_of("dji_fly_ldm_off.pcap")
    last = max(r["ts"] + r.get("duration_s", 0) for r in records if r["log"] == "flows")
    api.device(PHONE, ldm_at=last + 1)
    api.ingest(records)
    assert all_alerts(api) == []


def test_allowed_category_is_exempt(api: Api) -> None:
    """A maps exemption lets the map fetch through and alerts on the rest."""
    api.device(PHONE, allowed_categories=["maps"])
    api.ingest(records_of("dji_fly_ldm_off.pcap"))
    assert {a["dest_name"] for a in all_alerts(api)} == LDM_OFF_DESTS - {"api.mapbox.com"}


def test_resent_batch_changes_nothing(api: Api) -> None:
    """Posting the same batch twice: the second is a duplicate and no alert changes."""
    api.device(PHONE)
    records = records_of("dji_fly_ldm_off.pcap")
    api.ingest(records, batch="same")
    before = {a["id"]: a["seq"] for a in all_alerts(api)}
    again = api.ingest(records, batch="same").json()
    assert again["duplicate"] is True
    assert {a["id"]: a["seq"] for a in all_alerts(api)} == before


def test_same_flows_in_new_batch_are_not_counted_twice(api: Api) -> None:
    """Flows re-sent under another batch id do not add to the alerts' bytes."""
    api.device(PHONE)
    records = records_of("dji_fly_ldm_on_violation.pcap")
    api.ingest(records, batch="one")
    first = {a["id"]: a["bytes_out"] for a in all_alerts(api)}
    assert api.ingest(records, batch="two").json()["flows_new"] == 0
    assert {a["id"]: a["bytes_out"] for a in all_alerts(api)} == first


def test_discovered_devices_and_ldm_for_replays(api: Api) -> None:
    """Ground stations in the records become devices; an admin replay can set their LDM."""
    refused = api.ingest(records_of("dji_fly_ldm_on_violation.pcap"), discovered_ldm=True)
    assert refused.status_code == 403
    resp = api.ingest(
        records_of("dji_fly_ldm_on_violation.pcap"), role="admin", discovered_ldm=True
    )
    assert resp.json()["devices_discovered"] >= 1
    devices = api.get("/api/v1/devices").json()
    phone = next(d for d in devices if d["ip"] == PHONE)
    assert phone["discovered"] is True and phone["ldm"] is True
    assert [a["dest_name"] for a in all_alerts(api)] == ["mydjiflight.dji.com"]


def test_cursor_pages_cover_everything_once(api: Api) -> None:
    """Paging with cursor and limit=2 returns every alert exactly once, newest first."""
    api.device(PHONE)
    api.ingest(records_of("dji_fly_ldm_off.pcap"))
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/v1/alerts", params=params).json()
        seen += [a["seq"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 6


def test_etag_gives_304(api: Api) -> None:
    """An unchanged list answers 304 to If-None-Match with its ETag."""
    first = api.get("/api/v1/alerts")
    etag = first.headers["etag"]
    again = api.get("/api/v1/alerts", headers={"If-None-Match": etag})
    assert again.status_code == 304


def test_polling_misses_and_repeats_nothing(api: Api) -> None:
    """A dashboard polling with since= while batches arrive sees every change exactly once."""
    api.device(PHONE)
    api.device("192.168.2.20")
    batches = [
        records_of(n)
        for n in (
            "dji_fly_ldm_off.pcap",
            "dji_fly_ldm_on_violation.pcap",
            "dji_fly_ldm_on_maps_only.pcap",
            "dji_cloud_api_mqtt.pcap",
        )
    ]
    done = threading.Event()

    def feed() -> None:
        for i, records in enumerate(batches):
            api.service.ingest(f"poll-{i}", "test", records)
        done.set()

    thread = threading.Thread(target=feed)
    thread.start()
    since = 0
    seen: list[tuple[str, int]] = []
    while True:
        finished = done.is_set()
        page = api.get("/api/v1/alerts", params={"since": since, "limit": 2}).json()
        seen += [(a["id"], a["seq"]) for a in page["items"]]
        since = page["last_seq"]
        if finished and not page["has_more"] and not page["items"]:
            break
    thread.join()
    seqs = [s for _, s in seen]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    final = {a["id"]: a["seq"] for a in all_alerts(api)}
    latest = {}
    for alert_id, seq in seen:
        latest[alert_id] = seq
    assert latest == final


def test_ack_and_resolve_record_who_and_reopen_on_new_traffic(api: Api) -> None:
    """Ack and resolve record the key and time; new traffic reopens a resolved alert."""
    api.device(PHONE)
    api.ingest(records_of("dji_fly_ldm_on_violation.pcap"))
    (alert,) = all_alerts(api)
    acked = api.post(f"/api/v1/alerts/{alert['id']}/ack", json={"comment": "looking"}).json()
    assert acked["status"] == "acknowledged" and acked["acked_by"] == "test-admin"
    assert acked["acked_at"] is not None and acked["status_comment"] == "looking"
    assert api.post(f"/api/v1/alerts/{alert['id']}/ack", role="reader").status_code == 403
    resolved = api.post(f"/api/v1/alerts/{alert['id']}/resolve").json()
    assert resolved["status"] == "resolved" and resolved["resolved_by"] == "test-admin"
    later = [dict(r) for r in records_of("dji_fly_ldm_on_violation.pcap")]
    for r in later:
        if r["log"] in ("flows", "egress"):
            r["uid"] = r["uid"] + "X"
            r["ts"] += 3600
        if r["log"] == "egress":
            r["last_ts"] += 3600
    api.ingest(later, batch="later")
    assert api.get(f"/api/v1/alerts/{alert['id']}").json()["status"] == "open"


def test_alert_detail_carries_evidence_flows(api: Api) -> None:
    """GET /alerts/{id} includes the stored records of the flows behind the alert."""
    api.device(PHONE)
    api.ingest(records_of("dji_fly_ldm_on_violation.pcap"))
    (alert,) = all_alerts(api)
    detail = api.get(f"/api/v1/alerts/{alert['id']}").json()
    (flow,) = detail["evidence_flows"]
    assert flow["uid"] == alert["uids"][0] and flow["server_name"] == "mydjiflight.dji.com"
    assert api.get("/api/v1/alerts/Anope").status_code == 404


def test_verdicts(api: Api) -> None:
    """Violation with LDM on and traffic; clean when nothing left; not_applicable when off."""
    phone = api.device(PHONE)
    link = api.device("192.168.2.20")
    off = api.device("10.77.0.99", ldm_at=None)
    api.ingest(records_of("dji_fly_ldm_on_violation.pcap"))
    v = api.get(f"/api/v1/devices/{phone['id']}/verdict").json()
    assert v["verdict"] == "violation" and v["destinations"][0]["destination"] == (
        "mydjiflight.dji.com"
    )
    assert v["coverage"]["packets"] == 626 and v["coverage"]["complete"] is True
    assert api.get(f"/api/v1/devices/{link['id']}/verdict").json()["verdict"] == "clean"
    assert api.get(f"/api/v1/devices/{off['id']}/verdict").json()["verdict"] == "not_applicable"


def test_metrics(api: Api) -> None:
    """/metrics gives packets, flows, alerts by category and the ingest lag."""
    api.device(PHONE)
    api.ingest(records_of("dji_fly_ldm_on_violation.pcap"))
    text = api.get("/metrics").text
    assert 'dronewatch_alerts{category="telemetry",status="open"} 1.0' in text
    assert "dronewatch_flows_total 3.0" in text
    assert "dronewatch_packets_total 620.0" in text
    assert "dronewatch_ingest_lag_seconds" in text


def test_openapi_lists_every_resource(api: Api) -> None:
    """The OpenAPI document describes alerts, devices, ingest, keys and health."""
    paths = api.client.get("/openapi.json").json()["paths"]
    for p in (
        "/api/v1/alerts",
        "/api/v1/alerts/stream",
        "/api/v1/devices/{device_id}/ldm",
        "/api/v1/ingest",
        "/api/v1/keys",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert p in paths


def test_evidence_is_dissected(api: Api) -> None:
    """The frames behind an alert come back dissected: TLS with its SNI when tshark is there."""
    api.device(PHONE)
    api.ingest(records_of("dji_fly_ldm_on_violation.pcap"))
    (alert,) = all_alerts(api)
    (ev,) = api.get(f"/api/v1/alerts/{alert['id']}/evidence").json()
    assert ev["uid"] == alert["uids"][0] and len(ev["frames"]) == 4
    first = ev["frames"][0]["layers"]
    # With tshark installed (the test set-up installs it) Wireshark's dissectors must be used.
    assert ev["dissector"] == ("tshark" if shutil.which("tshark") else "dronewatch")
    if ev["dissector"] == "tshark":
        assert first["tcp"]["flags_syn"] in ("1", "True")
        tls = [f["layers"]["tls"] for f in ev["frames"] if "tls" in f["layers"]]
        assert any(t.get("handshake_extensions_server_name") == "mydjiflight.dji.com" for t in tls)
    else:
        assert first["ipv4"]["dst"] == alert["dest_ip"]


def test_evidence_downloads_as_pcap(api: Api, tmp_path: Path) -> None:
    """The kept frames come back as a pcap file that dronewatch (and Wireshark) reads: the
    upload's handshake, with the SNI, addressed to the alert's destination."""
    api.device(PHONE)
    api.ingest(records_of("dji_fly_ldm_on_violation.pcap"))
    (alert,) = all_alerts(api)
    resp = api.get(f"/api/v1/alerts/{alert['id']}/evidence.pcap")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/vnd.tcpdump.pcap"
    assert f"alert-{alert['id']}.pcap" in resp.headers["content-disposition"]
    path = tmp_path / "evidence.pcap"
    path.write_bytes(resp.content)
    frames = list(FileSource(str(path)).packets())
    assert len(frames) == 4 and b"mydjiflight.dji.com" in b"".join(f.data for f in frames)
    assert api.get("/api/v1/alerts/nosuchalert/evidence.pcap").status_code == 404


def test_evidence_pcap_is_404_without_kept_frames(api: Api) -> None:
    api.device(PHONE)
    records = [r for r in records_of("dji_fly_ldm_on_violation.pcap") if r["log"] != "evidence"]
    api.ingest(records)
    (alert,) = all_alerts(api)
    resp = api.get(f"/api/v1/alerts/{alert['id']}/evidence.pcap")
    assert resp.status_code == 404 and "no frames" in resp.json()["detail"]


def test_evidence_without_tshark_uses_own_fields() -> None:
    """Without tshark the evidence frames are decoded by dronewatch itself."""
    import base64

    from dronewatch.api.dissect import dissect
    from tests.pcaps import PCAPS

    data = (PCAPS / "lab" / "http.pcap").read_bytes()[40 : 40 + 74]
    out = dissect(
        {
            "uid": "C1",
            "linktype": 1,
            "frames": [
                {"ts": 1.0, "frame": 1, "wirelen": 74, "data": base64.b64encode(data).decode()}
            ],
        },
        use_tshark=False,
    )
    assert out["dissector"] == "dronewatch"
    assert out["frames"][0]["layers"]["transport"]["dport"] == 80


def test_coverage_gap_makes_a_clean_window_incomplete(api: Api) -> None:
    """A sensor that stopped for a while: its coverage reports leave a hole, and a window over
    the hole cannot be called clean."""
    phone = api.device(PHONE)
    report = coverage_report
    resp = api.ingest([report(1000.0, 1010.0, 50), report(1010.0, 1020.0, 40)], batch="c1")
    assert resp.status_code == 200, resp.text
    api.ingest([report(1100.0, 1110.0, 30)], batch="c2")  # the agent was down 1020-1100
    url = f"/api/v1/devices/{phone['id']}/verdict"
    covered = api.get(url, params={"start": 1000, "end": 1020}).json()
    assert covered["verdict"] == "clean" and covered["coverage"]["gaps"] == []
    holed = api.get(url, params={"start": 1000, "end": 1110}).json()
    assert holed["verdict"] == "incomplete"
    assert holed["coverage"]["gaps"] == [[1020.0, 1100.0]]
    assert "1 coverage gaps (80 s not captured)" in holed["msg"]


def coverage_report(
    start: float,
    end: float,
    packets: int,
    open_flows: int = 0,
    source: str = "live:eth1",
    evicted_flows: int | None = None,
    unseen: tuple[int, int, int] | None = None,
    bad_checksums: int | None = None,
    encrypted: dict[str, int] | None = None,
) -> dict[str, object]:
    """An agent's coverage record of [start, end] with `open_flows` held open at its end and
    `evicted_flows` ended early by its full flow table."""
    record = CaptureRecord(
        ts=start,
        source=source,
        format="live",
        packets=packets,
        bytes=packets * 100,
        ip_packets=packets,
        flows=1,
        linktypes={"ethernet": packets},
        non_ip={},
        malformed=0,
        fragments=0,
        truncated=0,
        drops=0,
        last_ts=end,
        open_flows=open_flows,
        open_since=start if open_flows else None,
        evicted_flows=evicted_flows,
        gap_flows=unseen[0] if unseen else None,
        missed_bytes=unseen[1] if unseen else None,
        inspection_stopped=unseen[2] if unseen else None,
        bad_checksums=bad_checksums,
        encrypted=encrypted,
    )
    return {"log": record.log, **record.to_dict()}


def test_flows_evicted_by_an_agent_make_the_window_incomplete(api: Api) -> None:
    """An agent whose full flow table ended flows early (a flood of new flows) says so in its
    coverage report: a window over that report is incomplete and says how many, as `analyze`
    says it of a capture; a window over the other reports stays clean."""
    phone = api.device(PHONE)
    url = f"/api/v1/devices/{phone['id']}/verdict"
    reports = [
        coverage_report(1000.0, 1010.0, 50),
        coverage_report(1010.0, 1020.0, 900_000, evicted_flows=4_321),
        coverage_report(1020.0, 1030.0, 40),
    ]
    assert api.ingest(reports, batch="flood").status_code == 200
    flood = api.get(url, params={"start": 1005, "end": 1025}).json()
    assert flood["verdict"] == "incomplete" and flood["coverage"]["evicted_flows"] == 4_321, flood
    assert "4,321 flows evicted from a full flow table" in flood["msg"]
    calm = api.get(url, params={"start": 1000, "end": 1009}).json()
    assert calm["verdict"] == "clean" and calm["coverage"]["evicted_flows"] == 0, calm


def test_content_gaps_and_stopped_inspections_are_named_in_the_window(api: Api) -> None:
    """An agent's coverage report counts the flows that ended in its interval with content gaps
    and with their inspection stopped: a window over it names them (it stays clean: the flows
    were seen), as `analyze` names them of a capture; a window over the other report does not."""
    phone = api.device(PHONE)
    url = f"/api/v1/devices/{phone['id']}/verdict"
    reports = [
        coverage_report(1000.0, 1010.0, 50),
        coverage_report(1010.0, 1020.0, 9_000, unseen=(3, 12_345, 2)),
        coverage_report(1020.0, 1030.0, 40),
    ]
    assert api.ingest(reports, batch="lossy").status_code == 200
    lossy = api.get(url, params={"start": 1005, "end": 1025}).json()
    assert lossy["verdict"] == "clean", lossy
    cov = lossy["coverage"]
    assert (cov["gap_flows"], cov["missed_bytes"], cov["inspection_stopped"]) == (3, 12_345, 2)
    assert "3 TCP flows with content gaps (12,345 bytes acknowledged but not" in lossy["msg"]
    assert "inspection stopped on 2 flows" in lossy["msg"]
    calm = api.get(url, params={"start": 1000, "end": 1009}).json()
    assert "content gaps" not in calm["msg"] and calm["coverage"]["gap_flows"] == 0, calm


def test_packets_dropped_for_wrong_checksums_are_named_in_the_window(api: Api) -> None:
    """An agent run with `--checksums auto` or `verify` counts the packets it dropped unread for
    a wrong checksum in each coverage report: the service stores the count, and a window over
    that report names it in its coverage and its sentence (it stays clean: their receivers
    dropped them too); a window over the other reports does not."""
    phone = api.device(PHONE)
    url = f"/api/v1/devices/{phone['id']}/verdict"
    reports = [
        coverage_report(1000.0, 1010.0, 50),
        coverage_report(1010.0, 1020.0, 9_000, bad_checksums=1_234),
        coverage_report(1020.0, 1030.0, 40, bad_checksums=6),
    ]
    assert api.ingest(reports, batch="checksums").status_code == 200
    both = api.get(url, params={"start": 1005, "end": 1025}).json()
    assert both["verdict"] == "clean" and both["coverage"]["bad_checksums"] == 1_240, both
    assert "1,240 packets with a wrong checksum dropped unread" in both["msg"], both
    calm = api.get(url, params={"start": 1000, "end": 1009}).json()
    assert calm["coverage"]["bad_checksums"] == 0 and "checksum" not in calm["msg"], calm


def test_encrypted_frames_a_device_sent_make_its_window_incomplete(api: Api) -> None:
    """A monitor-mode agent on a protected network counts, in each coverage report, the
    encrypted 802.11 data frames each MAC sent: a window over a report that holds frames the
    device sent (by its MAC) is incomplete and says how many, as `analyze` says it; another
    device's frames, or a window over the other reports, leave it clean."""
    phone = api.device(PHONE, mac="0C:84:DC:00:00:02")
    other = api.device("10.77.0.3", mac="0c:84:dc:00:00:03")
    reports = [
        coverage_report(1000.0, 1010.0, 50),
        coverage_report(
            1010.0, 1020.0, 60, encrypted={"0c:84:dc:00:00:02": 129, "aa:bb:cc:00:00:01": 7}
        ),
    ]
    assert api.ingest(reports, batch="encrypted").status_code == 200
    url = f"/api/v1/devices/{phone['id']}/verdict"
    over = api.get(url, params={"start": 1005, "end": 1015}).json()
    assert over["verdict"] == "incomplete" and over["coverage"]["encrypted_frames"] == 129, over
    assert over["msg"].startswith("LDM on: nothing readable left the device (110 packets"), over
    assert "129 encrypted 802.11 data frames sent by the device could not be read" in over["msg"]
    before = api.get(url, params={"start": 1000, "end": 1009}).json()
    assert before["verdict"] == "clean" and before["coverage"]["encrypted_frames"] == 0, before
    theirs = api.get(f"/api/v1/devices/{other['id']}/verdict", params={"start": 1005}).json()
    assert theirs["verdict"] == "clean" and theirs["coverage"]["encrypted_frames"] == 0, theirs


def test_flows_open_when_an_agent_was_killed_make_the_window_incomplete(api: Api) -> None:
    """An agent killed (SIGKILL) while it held flows open sent no last report: those flows
    were captured but never judged, so no window over them is clean; an agent that went on
    reporting, or stopped cleanly (its last report holds none open), leaves them judged."""
    phone = api.device(PHONE)
    url = f"/api/v1/devices/{phone['id']}/verdict"
    # A running agent: each report starts where the last ended; the flows ended, then a clean stop.
    running = [coverage_report(1000.0, 1010.0, 50, 3), coverage_report(1010.0, 1020.0, 40, 0)]
    assert api.ingest(running, batch="run").status_code == 200
    clean = api.get(url, params={"start": 1000, "end": 1020}).json()
    assert clean["verdict"] == "clean" and clean["coverage"]["lost_flows"] == 0, clean
    # Killed at 1035 holding 12 flows (its last report, at 1030, was long ago), then restarted.
    killed = [coverage_report(1020.0, 1030.0, 60, 12), coverage_report(2000.0, 2010.0, 5, 0)]
    assert api.ingest(killed, batch="killed").status_code == 200
    lost = api.get(url, params={"start": 1000, "end": 1030}).json()
    assert lost["verdict"] == "incomplete" and lost["coverage"]["lost_flows"] == 12, lost
    assert lost["coverage"]["gaps"] == []  # every packet was captured; the flows were not judged
    assert "12 flows never judged (an agent stopped with them open)" in lost["msg"]
    before = api.get(url, params={"start": 1000, "end": 1019}).json()
    assert before["coverage"]["lost_flows"] == 0 and before["verdict"] == "clean", before


def test_an_agent_reporting_now_holds_its_open_flows(api: Api) -> None:
    """The flows of an agent's latest report, received just now, are still open (the next report
    has not come yet), not lost; the same report with nothing after it for longer than the
    service's `agent_silence_s` means the agent stopped."""
    phone = api.device(PHONE)
    url = f"/api/v1/devices/{phone['id']}/verdict"
    assert api.ingest([coverage_report(1000.0, 1010.0, 50, 4)], batch="now").status_code == 200
    now = api.get(url, params={"start": 1000, "end": 1010}).json()
    assert now["coverage"]["lost_flows"] == 0 and now["verdict"] == "clean", now
    api.service.store.agent_silence_s = 0.0
    silent = api.get(url, params={"start": 1000, "end": 1010}).json()
    assert silent["coverage"]["lost_flows"] == 4 and silent["verdict"] == "incomplete", silent


def test_a_network_names_devices_under_test(api: Api) -> None:
    """A device declared by network (as `--device CIDR`) adopts every host of it the traffic
    shows, sent before or after: each becomes a device of its own with the declaration's policy
    and LDM history, and LDM changes on the declaration reach them all."""
    api.ingest(records_of("dji_fly_ldm_off.pcap"), batch="before")
    assert all_alerts(api) == []
    net = api.post("/api/v1/devices", json={"name": "lab phones", "net": "10.77.0.0/24"})
    assert net.status_code == 201, net.text
    decl = net.json()
    assert decl["net"] == "10.77.0.0/24" and decl["ip"] is None
    phone = next(d for d in api.get("/api/v1/devices").json() if d["ip"] == PHONE)
    assert phone["parent_id"] == decl["id"] and phone["name"] == "lab phones"
    assert phone["ldm"] is False and all_alerts(api) == []
    on = api.put(f"/api/v1/devices/{decl['id']}/ldm", json={"on": True, "at": 0.0})
    assert on.status_code == 200, on.text
    phone = api.get(f"/api/v1/devices/{phone['id']}").json()
    assert phone["ldm"] is True and phone["ldm_history"][-1]["by"] == "test-admin"
    assert {a["dest_name"] for a in all_alerts(api)} == LDM_OFF_DESTS
    allow = api.patch(f"/api/v1/devices/{decl['id']}", json={"allowed_categories": ["maps"]})
    assert allow.status_code == 200, allow.text
    assert api.get(f"/api/v1/devices/{phone['id']}").json()["allowed_categories"] == ["maps"]


def test_a_network_declared_first_judges_hosts_as_they_come(api: Api) -> None:
    """Declared before any traffic, with LDM on: the host is adopted when its records come."""
    decl = api.post("/api/v1/devices", json={"net": "10.77.0.0/16"}).json()
    api.put(f"/api/v1/devices/{decl['id']}/ldm", json={"on": True, "at": 0.0})
    api.ingest(records_of("dji_fly_ldm_off.pcap"))
    assert {a["dest_name"] for a in all_alerts(api)} == LDM_OFF_DESTS
    phone = next(d for d in api.get("/api/v1/devices").json() if d["ip"] == PHONE)
    assert phone["parent_id"] == decl["id"] and phone["ldm"] is True


def test_a_host_name_names_the_device_under_test(api: Api) -> None:
    """A device declared by DHCP host name alone (case-insensitive) adopts the host that
    gives that name; a host with another name is left alone."""
    decl = api.post("/api/v1/devices", json={"hostname": "Pilot-Phone"}).json()
    assert decl["hostname"] == "pilot-phone"
    api.put(f"/api/v1/devices/{decl['id']}/ldm", json={"on": True, "at": 0.0})
    records = [dict(r) for r in records_of("dji_fly_ldm_off.pcap")]
    named = [r for r in records if r["log"] == "devices" and r["ip"] == PHONE]
    assert named, "the capture's phone is a device record"
    for r in named:
        r["hostname"] = "PILOT-PHONE"
    api.ingest(records)
    assert {a["dest_name"] for a in all_alerts(api)} == LDM_OFF_DESTS
    other = api.post("/api/v1/devices", json={"hostname": "somebody-else"}).json()
    api.put(f"/api/v1/devices/{other['id']}/ldm", json={"on": False, "at": 0.0})
    phone = next(d for d in api.get("/api/v1/devices").json() if d["ip"] == PHONE)
    assert phone["parent_id"] == decl["id"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"net": "10.0.0.0/8", "ip": "10.0.0.1"}, 400, "give no mac or ip with net"),
        ({"net": "10.0.0.0/33"}, 422, "not a network"),
        ({"hostname": "  "}, 422, "host name"),
        ({"name": "ghost"}, 400, "a mac, an ip, a net or a hostname"),
    ],
)
def test_device_declarations_are_checked(
    api: Api, body: dict[str, Any], status: int, says: str
) -> None:
    """A network with an address, a malformed network or name, or nothing to name: refused."""
    resp = api.post("/api/v1/devices", json=body)
    assert resp.status_code == status and says in resp.text, resp.text


def test_a_flow_with_a_nul_anywhere_is_read_back(api: Api) -> None:
    """A flow record whose strings hold NUL (a hostile rule id and server name): it is
    stored, the overview counts it among the device's evicted flows, its verdict and its flows
    read back, on every
    backend (PostgreSQL refuses to read a field out of a JSON document with an escaped NUL, so
    the service reads `end_reason` from a column of its own)."""
    phone = api.device(PHONE)
    flow = next(dict(r) for r in records_of("dji_fly_ldm_off.pcap") if r["log"] == "flows")
    flow.update(
        uid="CnulInItsStrings1",
        rule_id="rule\x00id",
        server_name="a\x00.example",
        end_reason="evicted",
        orig_h=PHONE,
        ts=5000.0,
    )
    resp = api.ingest([flow], batch="nul")
    assert resp.status_code == 200, resp.text[:500]
    verdict = api.get(f"/api/v1/devices/{phone['id']}/verdict", params={"start": 4000})
    assert verdict.status_code == 200, verdict.text[:300]
    overview = api.get("/api/v1/overview", params={"start": 4000})
    assert overview.status_code == 200, overview.text[:300]
    (card,) = [d for d in overview.json()["devices"] if d["device"]["ip"] == PHONE]
    assert card["evicted_flows"] == 1, card
    flows = api.get(f"/api/v1/devices/{phone['id']}/flows")
    assert flows.status_code == 200 and any(
        f.get("server_name") == "a\x00.example" for f in flows.json()["items"]
    ), flows.text[:300]


def test_stations_without_an_address_are_known_by_their_mac(api: Api) -> None:
    """Two ground stations an agent reports with an empty address and their own MACs are two
    devices, each without an address (the column holds an address once: "" would clash)."""
    station = {
        "log": "devices",
        "ts": 1.0,
        "ip": "",
        "hostname": None,
        "vendor_oui": None,
        "roles": ["ground_station"],
        "reasons": ["named by the user"],
    }
    batch = [{**station, "mac": "02:00:00:00:00:0a"}, {**station, "mac": "02:00:00:00:00:0b"}]
    resp = api.ingest(batch, batch="no-address")
    assert resp.status_code == 200, resp.text[:300]
    macs = {d["mac"]: d["ip"] for d in api.get("/api/v1/devices").json()}
    assert macs.get("02:00:00:00:00:0a", "?") is None and macs.get("02:00:00:00:00:0b", "?") is None


def test_a_device_declared_by_its_mac_is_judged_at_every_address(api: Api) -> None:
    """A device declared by its MAC alone is judged on what it sent from every address its
    observations came from (a phone's IPv4 address and its IPv6 one here), on every LDM change;
    an address whose observations came from another MAC is not its."""
    mac = "ae:3f:52:8c:77:02"
    v6 = "2001:db8:1::a4b2"
    records = [dict(r) for r in records_of("dji_fly_ldm_off.pcap")]
    again = [{**r, "host_ip": v6, "uid": r["uid"] + "6"} for r in records if r["log"] == "egress"]
    stranger = [
        {**r, "host_ip": "10.77.0.99", "host_mac": "02:00:00:00:00:99", "uid": r["uid"] + "9"}
        for r in records
        if r["log"] == "egress"
    ]
    dev = api.post("/api/v1/devices", json={"name": "pilot", "mac": mac}).json()
    assert again and api.ingest([*records, *again, *stranger]).status_code == 200
    assert all_alerts(api) == []  # LDM off
    api.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": True, "at": 0.0}).raise_for_status()
    alerts = all_alerts(api, device=mac)
    assert {(a["device_ip"], a["dest_name"]) for a in alerts} == {
        (ip, dest) for ip in (PHONE, v6) for dest in LDM_OFF_DESTS
    }
    assert {a["device_mac"] for a in all_alerts(api)} == {mac}
    verdict = api.get(f"/api/v1/devices/{dev['id']}/verdict").json()
    assert verdict["verdict"] == "violation" and verdict["destinations"], verdict
    flows = api.get(f"/api/v1/devices/{dev['id']}/flows").json()["items"]
    assert flows and {f["orig_h"] for f in flows} == {PHONE}
    api.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": False, "at": 0.0}).raise_for_status()
    assert all_alerts(api) == []
