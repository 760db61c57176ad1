"""Ingest takes observations checked against their record schemas, whole batches or nothing,
and never an agent's alerts or verdicts."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dronewatch.api.records import observation_types, validate_records
from tests.service_fixtures import Api, records_of

PHONE = "10.77.0.2"
SCENARIO = "dji_fly_ldm_on_violation.pcap"

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)


def first(log: str) -> dict[str, Any]:
    return copy.deepcopy(next(r for r in records_of(SCENARIO) if r["log"] == log))


def test_a_flow_with_a_numeric_uid_is_refused_and_nothing_is_stored(api: Api) -> None:
    """A wrongly typed field refuses the batch with 422 naming the field; the alert list and the
    flows stay readable and the good records of the batch are not stored."""
    api.device(PHONE)
    records = [dict(r) for r in records_of(SCENARIO)]
    bad = next(i for i, r in enumerate(records) if r["log"] == "flows")
    records[bad]["uid"] = 12345
    resp = api.ingest(records)
    assert resp.status_code == 422
    assert {"loc": ["body", "records", bad, "uid"], "type": "string_type"}.items() <= resp.json()[
        "detail"
    ][0].items()
    assert api.get("/api/v1/alerts").status_code == 200
    assert api.get("/api/v1/alerts").json()["items"] == []
    assert api.ingest(records_of(SCENARIO), batch="good").status_code == 200
    assert len(api.get("/api/v1/alerts").json()["items"]) == 1


def test_alerts_and_verdicts_from_an_agent_are_refused(api: Api) -> None:
    """An agent key cannot forge, overwrite or erase an alert: alert and verdict records are the
    service's judgement and a batch carrying one is refused."""
    api.device(PHONE)
    assert api.ingest(records_of(SCENARIO)).status_code == 200
    (alert,) = api.get("/api/v1/alerts").json()["items"]
    forged = {**{k: v for k, v in alert.items() if k in ("id", "device_ip")}, "log": "alerts"}
    forged.update(severity="info", bytes_out=0, note="ldm.data_left_device", msg="nothing")
    for log in ("alerts", "verdicts"):
        resp = api.ingest([{**forged, "log": log}], batch=f"forged-{log}")
        assert resp.status_code == 422
        assert resp.json()["detail"][0]["loc"] == ["body", "records", 0, "log"]
    (after,) = api.get("/api/v1/alerts").json()["items"]
    assert (after["severity"], after["bytes_out"]) == (alert["severity"], alert["bytes_out"])


def test_unknown_logs_and_fields_are_refused(api: Api) -> None:
    """A record of no known log, or with a field its log does not have, is refused by name."""
    flow = first("flows")
    resp = api.ingest([{**flow, "log": "nonsense"}], batch="u1")
    assert resp.status_code == 422 and "unknown log" in resp.json()["detail"][0]["msg"]
    resp = api.ingest([{**flow, "exfil": "x"}], batch="u2")
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "records", 0, "exfil"]


def test_every_record_the_pipeline_writes_passes_its_schema() -> None:
    """The records a replay sends are exactly what validation gives back, for every log."""
    records = list(records_of(SCENARIO)) + list(records_of("parrot_freeflight.pcap"))
    assert validate_records(records) == records
    assert {"flows", "egress", "capture", "devices", "evidence"} <= set(observation_types())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    log=st.sampled_from(["flows", "egress", "devices", "capture", "dns", "tls"]),
    data=st.data(),
)
def test_whatever_ingest_accepts_every_endpoint_reads(api: Api, log: str, data: Any) -> None:
    """One field of a real record replaced by any JSON value: ingest refuses it (422) or takes
    it, and then every read endpoint still answers 200."""
    records = [dict(r) for r in records_of(SCENARIO)]
    i = next(i for i, r in enumerate(records) if r["log"] == log)
    field = data.draw(st.sampled_from(sorted(k for k in records[i] if k != "log")))
    records[i][field] = data.draw(JSON_VALUES)
    batch = data.draw(st.text(alphabet="abcdef0123456789", min_size=8, max_size=8))
    resp = api.ingest(records, batch=batch)
    assert resp.status_code in (200, 422), resp.text
    for path in ("/api/v1/alerts", "/api/v1/devices"):
        assert api.get(path).status_code == 200, path
    for device in api.get("/api/v1/devices").json():
        for sub in ("", "/verdict", "/flows"):
            got = api.get(f"/api/v1/devices/{device['id']}{sub}")
            assert got.status_code == 200, (sub, got.text)


def test_the_same_capture_twice_counts_once(api: Api) -> None:
    """A capture replayed again under another path spelling, and a replay that resumes after a
    crash (its batches cut elsewhere, some sent twice), leave the coverage and alerts as one
    replay does."""
    api.device(PHONE)
    records = list(records_of("dji_fly_ldm_off.pcap"))
    assert api.ingest(records, batch="once").status_code == 200
    phone = api.get("/api/v1/devices").json()[0]
    url = f"/api/v1/devices/{phone['id']}/verdict"
    before = api.get(url).json()
    alerts = sorted((a["id"], a["bytes_out"], a["flows"]) for a in all_alerts(api))
    respelled = [
        {**r, "source": "./" + r["source"]} if r["log"] == "capture" else r for r in records
    ]
    for i in range(0, len(respelled), 97):  # a resumed replay: other cuts, overlapping
        batch = respelled[max(0, i - 20) : i + 97]
        assert api.ingest(batch, batch=f"again-{i}").status_code == 200
    after = api.get(url).json()
    assert after["coverage"] == before["coverage"] and after["msg"] == before["msg"]
    assert sorted((a["id"], a["bytes_out"], a["flows"]) for a in all_alerts(api)) == alerts


def all_alerts(api: Api) -> list[dict[str, Any]]:
    resp = api.get("/api/v1/alerts", params={"limit": 1000})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def test_device_and_overview_windows_are_bounded(api: Api) -> None:
    """Times that no date can hold and cursors that are not a previous page's are a 422 naming
    the parameter on the device and overview endpoints too; a real next_cursor pages on."""
    api.device(PHONE)
    assert api.ingest(records_of("dji_fly_ldm_off.pcap")).status_code == 200
    phone = api.get("/api/v1/devices").json()[0]
    base = f"/api/v1/devices/{phone['id']}"
    for path in (f"{base}/flows", f"{base}/verdict", "/api/v1/overview"):
        for value in ("nan", "inf", "1e400", "-1"):
            resp = api.get(path, params={"start": value})
            assert resp.status_code == 422, (path, value)
            assert resp.json()["detail"][0]["loc"] == ["query", "start"]
    for cursor in ("١:x", "1:", "x:y", "1" * 30 + ":a"):
        resp = api.get(f"{base}/flows", params={"cursor": cursor})
        assert resp.status_code == 422, cursor
    first = api.get(f"{base}/flows", params={"limit": 2}).json()
    assert first["next_cursor"]
    second = api.get(f"{base}/flows", params={"limit": 2, "cursor": first["next_cursor"]})
    assert second.status_code == 200 and second.json()["items"] != first["items"]
