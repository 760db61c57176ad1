"""/api/v1/overview: the web page's device cards and timeline, over TestClient."""

from __future__ import annotations

from typing import Any

from dronewatch.api.routers.overview import caveats
from tests.service_fixtures import Api, records_of

PHONE = "10.77.0.2"
LINK = "192.168.2.20"


def cards(api: Api, **params: Any) -> dict[str, dict[str, Any]]:
    resp = api.get("/api/v1/overview", params=params)
    assert resp.status_code == 200, resp.text
    return {c["device"]["ip"]: c for c in resp.json()["devices"]}


def flow_times(name: str, host: str = PHONE) -> tuple[float, float]:
    """The first and last packet times of the flows a host originated in a capture."""
    flows = [r for r in records_of(name) if r["log"] == "flows" and r["orig_h"] == host]
    return min(r["ts"] for r in flows), max(r["ts"] + r["duration_s"] for r in flows)


def test_cards_carry_verdict_ldm_and_bytes(api: Api) -> None:
    """Each device's card has the verdict the verdict endpoint gives, who set LDM and since
    when, the bytes sent off it, its alerts by status and its last activity."""
    phone = api.device(PHONE, ldm_at=5.0)
    api.device(LINK)
    api.ingest(records_of("dji_fly_ldm_off.pcap"))
    got = cards(api)
    card = got[PHONE]
    verdict = api.get(f"/api/v1/devices/{phone['id']}/verdict").json()
    assert card["verdict"] == verdict and card["verdict"]["verdict"] == "violation"
    assert (card["ldm_since"], card["ldm_by"]) == (5.0, "test-admin")
    assert card["bytes_off"] == sum(d["bytes_out"] for d in verdict["destinations"]) > 2_000_000
    assert card["bytes_ldm_on"] == card["bytes_off"]
    assert card["alerts"] == {"open": 6}
    assert abs(card["last_seen"] - flow_times("dji_fly_ldm_off.pcap")[1]) < 1e-5
    assert card["flows"] == 12 and card["evicted_flows"] == 0
    assert "drops not reported by the capture" in card["caveats"]
    assert got[LINK]["verdict"]["verdict"] == "clean" and got[LINK]["bytes_off"] == 0


def test_ldm_since_is_the_change_into_the_current_state(api: Api) -> None:
    """Turning LDM on again while it is on does not move "since"; turning it off does."""
    dev = api.device(PHONE, ldm_at=10.0)
    api.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": True, "at": 20.0})
    assert cards(api)[PHONE]["ldm_since"] == 10.0
    api.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": False, "at": 30.0})
    card = cards(api)[PHONE]
    assert (card["device"]["ldm"], card["ldm_since"]) == (False, 30.0)


def test_window_outside_the_traffic_has_no_alerts_and_says_so(api: Api) -> None:
    """A window before the capture: no alert counts, and the card says no traffic was seen."""
    api.device(PHONE)
    api.ingest(records_of("dji_fly_ldm_off.pcap"))
    first, _ = flow_times("dji_fly_ldm_off.pcap")
    card = cards(api, start=first - 100, end=first - 50)[PHONE]
    assert card["verdict"]["alerts"] == 0 and card["bytes_off"] == 0 and card["flows"] == 0
    assert card["verdict"]["verdict"] == "incomplete"
    assert "no capture covers this time" in card["caveats"]


def test_timeline_sums_to_the_bytes_that_left(api: Api) -> None:
    """The timeline's buckets add up, per category, to the bytes the device sent off itself,
    and the LDM-on period covers the whole span."""
    dev = api.device(PHONE)
    api.ingest(records_of("dji_fly_ldm_off.pcap"))
    resp = api.get("/api/v1/overview/timeline", params={"device": dev["id"], "buckets": 40})
    assert resp.status_code == 200, resp.text
    line = resp.json()
    totals = {s["category"]: sum(s["bytes"]) for s in line["series"]}
    dests = api.get(f"/api/v1/devices/{dev['id']}/verdict").json()["destinations"]
    want: dict[str, int] = {}
    for d in dests:
        want[d["category"]] = want.get(d["category"], 0) + d["bytes_out"]
    assert totals.keys() == want.keys()
    for cat, total in totals.items():
        assert abs(total - want[cat]) <= len(line["times"])  # rounding, at most 1 per bucket
    assert line["series"][0]["category"] == "media_sync"  # the category that sent most comes first
    assert len(line["times"]) <= 41 and line["times"] == sorted(line["times"])
    assert line["ldm_on"] == [[line["start"], line["end"]]]
    assert len(line["activity"]) == 1


def test_timeline_without_ldm_has_no_shading_and_404_for_unknown_device(api: Api) -> None:
    """A device with LDM off has no shaded period; an unknown device id is a 404."""
    dev = api.device(PHONE, ldm_at=None)
    api.ingest(records_of("dji_fly_ldm_off.pcap"))
    line = api.get("/api/v1/overview/timeline", params={"device": dev["id"]}).json()
    assert line["ldm_on"] == [] and line["series"]
    assert api.get("/api/v1/overview/timeline", params={"device": 999}).status_code == 404


def test_overview_needs_a_key(api: Api) -> None:
    """The overview and the timeline are reads: a key is needed, a reader key is enough."""
    assert api.client.get("/api/v1/overview").status_code == 401
    assert api.client.get("/api/v1/overview/timeline").status_code == 401
    assert api.get("/api/v1/overview/timeline", role="reader").status_code == 200


def test_caveats_name_every_limit() -> None:
    """Drops, gaps, damage and evictions each give their own sentence."""
    verdict = {
        "coverage": {
            "captures": 2,
            "packets": 10,
            "drops": 7,
            "complete": False,
            "gaps": [[0.0, 30.0], [40.0, 50.0]],
        }
    }
    assert caveats(verdict, flows=3, evicted=4) == [
        "7 packets dropped",
        "2 coverage gaps (40 s not captured)",
        "a capture was damaged (cut short or corrupt)",
        "4 flows evicted from a full flow table",
    ]
