"""The product's promise on recorded scenarios: which alerts and verdicts each capture gives."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest

from dronewatch.capture.files import FileSource
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.geoip.maxmind import MaxMindResolver
from dronewatch.judge.alert import (
    NOTE_ATTEMPT,
    NOTE_DNS,
    NOTE_LEAK,
    NOTE_OTHER_APP,
    Alert,
    is_lookup,
)
from dronewatch.judge.classify import Classifier
from dronewatch.judge.monitor import DeviceRecord, VerdictRecord
from dronewatch.judge.policy import Policy
from tests.pcaps import PCAPS, all_captures, capture

SCENARIOS = PCAPS / "scenarios"
PHONE_CLOUD = "10.77.0.2"
"""The phone's uplink (cellular) address in the scenario namespaces."""


@cache
def _classifier() -> Classifier:
    return Classifier.load()


@cache
def _resolver() -> MaxMindResolver:
    return MaxMindResolver.bundled()


def analyze(name: str, policy: Policy) -> dict[str, list[Record]]:
    """Every record of one scenario capture, by log."""
    records: dict[str, list[Record]] = {}
    config = AnalysisConfig(policy=policy, classifier=_classifier(), resolver=_resolver())
    run_source(
        FileSource(str(capture(SCENARIOS / name))),
        lambda r: records.setdefault(r.log, []).append(r),
        config,
    )
    return records


def ldm(on: bool, **changes: object) -> Policy:
    return Policy(defaults=replace(Policy().defaults, ldm=on, **changes))  # type: ignore[arg-type]


def verdicts(records: dict[str, list[Record]]) -> dict[str, VerdictRecord]:
    return {v.device_ip: v for v in records.get("verdicts", []) if isinstance(v, VerdictRecord)}


def alerts(records: dict[str, list[Record]]) -> list[Alert]:
    return [a for a in records.get("alerts", []) if isinstance(a, Alert)]


def test_violation_raises_one_high_alert_for_the_upload() -> None:
    """LDM on + a 500 KB TLS upload to mydjiflight.dji.com: one high alert with its evidence."""
    recs = analyze("dji_fly_ldm_on_violation.pcap", ldm(True))
    (alert,) = alerts(recs)
    assert (alert.note, alert.device_ip, alert.dest_name, alert.dest_port) == (
        NOTE_LEAK,
        PHONE_CLOUD,
        "mydjiflight.dji.com",
        443,
    )
    assert (alert.vendor, alert.rule_id, alert.severity) == ("DJI", "dji.mydjiflight.api", "high")
    assert alert.bytes_out > 500_000
    assert (alert.dest_country, alert.dest_asn) == ("US", 45102)
    assert alert.evidence["sni"] == "mydjiflight.dji.com"
    assert verdicts(recs)[PHONE_CLOUD].verdict == "violation"


def test_same_traffic_with_ldm_off_is_not_applicable() -> None:
    """With LDM off the upload is reported in the verdict, but raises no alert."""
    recs = analyze("dji_fly_ldm_on_violation.pcap", ldm(False))
    assert alerts(recs) == []
    v = verdicts(recs)[PHONE_CLOUD]
    assert (v.verdict, v.destinations) == ("not_applicable", 1)


def test_ldm_off_session_reaches_six_cloud_destinations() -> None:
    """The LDM-off session's verdict counts each cloud destination and category it used."""
    recs = analyze("dji_fly_ldm_off.pcap", ldm(False))
    v = verdicts(recs)[PHONE_CLOUD]
    assert v.verdict == "not_applicable"
    assert v.destinations == 6
    assert v.bytes_out > 2_000_000


def test_ldm_off_session_under_ldm_on_alerts_per_destination() -> None:
    """Had LDM been on, every cloud destination of that session would be an alert."""
    recs = analyze("dji_fly_ldm_off.pcap", ldm(True))
    names = {a.dest_name for a in alerts(recs) if a.note == NOTE_LEAK}
    assert names == {
        "www.skypixel.com",
        "live.example-user-stream.net",
        "api.mapbox.com",
        "flysafe-api.dji.com",
        "account-api.dji.com",
        "statistical-report.djiservice.org",
    }
    by_name = {a.dest_name: a for a in alerts(recs)}
    assert by_name["www.skypixel.com"].category == "media_sync"
    assert by_name["flysafe-api.dji.com"].category == "geofence"
    assert by_name["live.example-user-stream.net"].category == "livestream"
    assert by_name["statistical-report.djiservice.org"].category == "analytics"
    assert by_name["account-api.dji.com"].category == "account"


def test_maps_only_is_clean_when_maps_are_allowed() -> None:
    """A map-tile fetch under a maps exemption: no alert, the bytes counted as allowed."""
    recs = analyze(
        "dji_fly_ldm_on_maps_only.pcap", ldm(True, allowed_categories=frozenset({"maps"}))
    )
    assert alerts(recs) == []
    v = verdicts(recs)[PHONE_CLOUD]
    assert v.verdict == "clean" and v.allowed_bytes > 2000


def test_maps_only_without_exemption_is_a_maps_alert() -> None:
    """The same map fetch without the exemption is a violation in the maps category."""
    recs = analyze("dji_fly_ldm_on_maps_only.pcap", ldm(True))
    (alert,) = alerts(recs)
    assert (alert.category, alert.dest_name, alert.vendor) == ("maps", "api.mapbox.com", "Mapbox")


def test_lookup_of_a_contacted_name_is_folded_into_its_leak() -> None:
    """The DNS lookup before an upload does not raise a second alert for the same name."""
    recs = analyze("dji_fly_ldm_on_violation.pcap", ldm(True))
    assert [a.note for a in alerts(recs)] == [NOTE_LEAK]
    assert "dns" in recs and recs["dns"][0].to_dict()["query"] == "mydjiflight.dji.com"


def test_clean_session_has_no_alert() -> None:
    """Only the drone link: no alerts, and the capture is read completely."""
    recs = analyze("dji_fly_ldm_on_clean.pcap", ldm(True))
    assert alerts(recs) == []
    (capture,) = recs["capture"]
    assert capture.to_dict()["complete"] is True


def test_cloud_api_mqtt_is_a_violation() -> None:
    """DJI Cloud API MQTT telemetry to a broker while LDM is on raises an alert."""
    recs = analyze("dji_cloud_api_mqtt.pcap", ldm(True))
    (alert,) = alerts(recs)
    assert (alert.dest_name, alert.dest_port) == ("mqtt.fleet.example.org", 1883)
    assert (alert.rule_id, alert.category, alert.vendor) == (
        "dji.cloud_api.osd",
        "telemetry",
        "DJI",
    )


@pytest.mark.parametrize("name", [p.name for p in all_captures(SCENARIOS)])
def test_every_alert_is_traceable(name: str) -> None:
    """Each alert names flows (uids) and Community IDs that appear in flows.jsonl."""
    recs = analyze(name, ldm(True))
    flows = {r.to_dict()["uid"]: r.to_dict()["community_id"] for r in recs["flows"]}
    for a in alerts(recs):
        assert a.uids and set(a.uids) <= set(flows)
        if a.note == NOTE_LEAK:
            assert set(a.community_ids) <= set(flows.values())


def test_parrot_session_alerts_on_academy_upload() -> None:
    """Parrot FreeFlight: the ARSDK link is local; the academy sync is a flight_log leak."""
    recs = analyze("parrot_freeflight.pcap", ldm(True))
    by_name = {a.dest_name: a for a in alerts(recs)}
    assert set(by_name) == {"academy.parrot.com", "appcentral.parrot.com"}
    assert by_name["academy.parrot.com"].category == "flight_log"
    assert verdicts(recs)["192.168.42.10"].verdict == "clean"
    assert verdicts(recs)["192.168.42.10"].aircraft == ("192.168.42.1",)


def test_qgc_session_alerts_on_tiles_and_firmware() -> None:
    """QGroundControl: MAVLink stays local; map tiles and the firmware manifest leave."""
    recs = analyze("qgc_mavlink.pcap", ldm(True))
    cats = {a.dest_name: a.category for a in alerts(recs)}
    assert cats == {"server.arcgisonline.com": "maps", "firmware.ardupilot.org": "firmware"}
    assert verdicts(recs)["192.168.2.20"].verdict == "clean"


def test_drone_link_marks_ground_station_and_aircraft() -> None:
    """The DUML link makes the phone a ground station and 192.168.2.1 the aircraft."""
    recs = analyze("dji_fly_ldm_on_clean.pcap", ldm(True))
    v = verdicts(recs)["192.168.2.20"]
    assert (v.verdict, v.aircraft) == ("clean", ("192.168.2.1",))
    assert v.local_link_packets > 0
    roles = {d.to_dict()["ip"]: d.to_dict()["roles"] for d in recs["devices"]}
    assert roles["192.168.2.1"] == ["aircraft"]


def test_tello_sdk_session_is_a_clean_local_link() -> None:
    """A Tello SDK app: commands, state and video stay on the Tello's own Wi-Fi, so with LDM on
    the phone is clean and the Tello (192.168.10.1) is its aircraft."""
    recs = analyze("tello_sdk.pcap", ldm(True))
    assert alerts(recs) == []
    v = verdicts(recs)["192.168.10.2"]
    assert (v.verdict, v.aircraft) == ("clean", ("192.168.10.1",))
    assert {r.to_dict()["channel"] for r in recs["tello"]} == {"sdk", "state", "video"}


FLIGHT5 = "third_party/wsensing2021/Normal_Flights_Flight5.pcapng.gz"


def analyze_path(rel: str, policy: Policy) -> dict[str, list[Record]]:
    records: dict[str, list[Record]] = {}
    config = AnalysisConfig(policy=policy, classifier=_classifier(), resolver=_resolver())
    run_source(
        FileSource(str(capture(PCAPS / rel))),
        lambda r: records.setdefault(r.log, []).append(r),
        config,
    )
    return records


def test_flight5_shared_scope_only_the_vendor_lookup_is_a_violation() -> None:
    """AR.Drone Flight5, phone shared with other apps: the data.ardrone.com lookup (never
    answered) is the one violation; the other apps' lookups and the DNS queries nobody answered
    are attempts, of low severity, that leave nothing delivered."""
    recs = analyze_path(FLIGHT5, ldm(True, scope="shared"))
    by_note: dict[str, list[Alert]] = {}
    for a in alerts(recs):
        by_note.setdefault(a.note, []).append(a)
    (lookup,) = by_note[NOTE_DNS]
    assert (lookup.dest_name, lookup.vendor, lookup.device_ip) == (
        "data.ardrone.com",
        "Parrot",
        "192.168.1.2",
    )
    assert NOTE_LEAK not in by_note and NOTE_OTHER_APP not in by_note
    attempts = by_note[NOTE_ATTEMPT]
    assert {a.severity for a in attempts} == {"low"}
    assert {"8.8.8.8", "8.8.4.4"} <= {a.dest_ip for a in attempts if not is_lookup(a)}
    assert "www.google.com" in {a.dest_name for a in attempts if is_lookup(a)}
    assert "data.ardrone.com" not in {a.dest_name for a in attempts}
    v = verdicts(recs)["192.168.1.2"]
    assert (v.verdict, v.vendor_dns_lookups, v.aircraft) == ("violation", 1, ("192.168.1.1",))
    assert v.attempts == len({a.dest_name or a.dest_ip for a in attempts})
    assert "attempted to reach 8.8.4.4, 8.8.8.8" in v.msg


def test_flight5_dedicated_scope_unanswered_dns_is_an_attempt() -> None:
    """On a dedicated ground station the DNS queries to 8.8.8.8 that nothing answered (the
    aircraft's access point has no uplink) are attempts, not bytes delivered."""
    recs = analyze_path(FLIGHT5, ldm(True))
    assert not [a for a in alerts(recs) if a.note == NOTE_LEAK]
    tried = {a.dest_ip for a in alerts(recs) if a.note == NOTE_ATTEMPT and not is_lookup(a)}
    assert tried == {"8.8.8.8", "8.8.4.4"}


@pytest.mark.parametrize("n", ["01", "02", "03"])
def test_ardrone_takeoff_captures_are_clean(n: str) -> None:
    """AR.Drone take-off and landing: only the local link, so LDM on is clean."""
    recs = analyze_path(
        f"third_party/wsensing2021/Normal_Takeoff_and_landing_{n}.pcapng", ldm(True)
    )
    assert alerts(recs) == []
    v = verdicts(recs)["192.168.1.3"]
    assert (v.verdict, v.device_name, v.aircraft) == ("clean", "drwxr", ("192.168.1.1",))
    assert {r.log for r in recs["parrot"]} == {"parrot"} and len(recs["mavlink"]) == 1


def test_remote_id_beacons_are_broadcasts_not_leaks() -> None:
    """Remote ID beacons of an aircraft raise no alert and give no ground station."""
    recs = analyze_path("third_party/opendroneid/odid_wifi_bcn_sample.pcap", ldm(True))
    assert alerts(recs) == [] and "verdicts" not in recs


def test_droneid_beacons_are_broadcasts_not_leaks() -> None:
    """DJI DroneID beacons name two aircraft by serial, and raise no alert and no ground station."""
    recs = analyze_path("lab/dji_droneid.pcap", ldm(True))
    assert alerts(recs) == [] and "verdicts" not in recs
    serials = {r.to_dict()["serial"] for r in recs["dji_droneid"]}
    assert serials == {"08QDE3R00209TF", "0K1DE5H0030KC7"}


def devices(records: dict[str, list[Record]]) -> dict[str, DeviceRecord]:
    return {d.ip: d for d in records.get("devices", []) if isinstance(d, DeviceRecord)}


def test_wifi_toy_drone_of_a_catalogued_family_is_recognised_by_its_rules() -> None:
    """A WiFi UAV-family toy drone (the aircraft is the access point at 192.168.169.1): the
    generic Wi-Fi drone pack names the link, so the phone is judged; its lookups and the
    connections nothing answered (no uplink) are attempts, and nothing was delivered."""
    recs = analyze("wifi_toy_drone.pcap", ldm(True))
    dev = devices(recs)
    phone, aircraft = dev["192.168.169.15"], dev["192.168.169.1"]
    assert phone.roles == ("ground_station",) and aircraft.roles == ("aircraft",)
    assert any("wifi_drones.wifi_uav.control" in r for r in phone.reasons)
    assert phone.hostname == "Pixel-7"
    found = alerts(recs)
    assert found and {(a.note, a.severity) for a in found} == {(NOTE_ATTEMPT, "low")}
    looked_up = {a.dest_name for a in found if is_lookup(a)}
    assert {"api.example-drone-cloud.com", "graph.facebook.com", "www.google.com"} <= looked_up
    assert any(a.dest_port == 443 and not is_lookup(a) for a in found)
    v = verdicts(recs)["192.168.169.15"]
    assert (v.verdict, v.aircraft) == ("clean", ("192.168.169.1",))
    assert v.attempts == len(found) and "nothing was delivered" in v.msg
    assert v.msg.startswith("LDM on: attempted to reach ")
    off = verdicts(analyze("wifi_toy_drone.pcap", ldm(False)))["192.168.169.15"]
    assert (off.verdict, off.attempts) == ("not_applicable", 0)


def test_wifi_drone_of_an_unknown_family_is_recognised_by_behaviour() -> None:
    """A drone no rule pack names (made-up ports, MJPEG over TCP): the phone sends a steady
    control stream to 172.16.10.1 and gets JPEG video back, so it is a ground station, and
    devices.jsonl says that behaviour is why."""
    recs = analyze("wifi_unknown_drone.pcap", ldm(True))
    dev = devices(recs)
    phone = dev["172.16.10.103"]
    assert phone.roles == ("ground_station",)
    (reason,) = phone.reasons
    assert "control stream to 172.16.10.1" in reason and "jpeg video back" in reason
    assert "(behaviour" in reason and phone.confidence == 0.9
    assert not any(f.rule_id and f.rule_id.startswith("wifi_drones.") for f in recs["flows"])
    v = verdicts(recs)["172.16.10.103"]
    assert v.verdict == "clean" and v.attempts > 0


def test_wifi_drone_streaming_rtsp_is_recognised_by_its_video_and_control_stream() -> None:
    """A Macrochip (Ruko) drone in RTSP mode: the phone pulls H.264 over RTSP/RTP from
    172.16.10.1:554 while it sends 10 Hz stick packets to UDP 8080, so it is a ground station
    for that behaviour; the RTSP session is a local link, not a livestream, and with LDM on its
    lookups and unanswered connections are attempts that delivered nothing."""
    recs = analyze("wifi_rtsp_drone.pcap", ldm(True))
    dev = devices(recs)
    phone, aircraft = dev["172.16.10.15"], dev["172.16.10.1"]
    assert phone.roles == ("ground_station",) and aircraft.roles == ("aircraft",)
    behaviour = [r for r in phone.reasons if "(behaviour" in r]
    assert behaviour == [
        "sends a 10 Hz control stream to 172.16.10.1 and gets rtsp video back (behaviour, "
        "the first address of its subnet like a drone's access point)"
    ]
    flows = [f.to_dict() for f in recs["flows"]]
    (session,) = [f for f in flows if f.get("service") == "rtsp"]
    assert (session["resp_p"], session["category"]) == (554, "local_link")
    assert session["rule_id"] == "wifi_drones.rtsp_554.video"
    (rtp,) = [f for f in flows if f.get("video") == "rtp"]
    assert rtp["video_from"] == "resp" and rtp["resp_h"] == "172.16.10.1"
    methods = [r.to_dict()["method"] for r in recs["rtsp"]]
    assert methods == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY", "TEARDOWN"]
    found = alerts(recs)
    assert found and {(a.note, a.severity) for a in found} == {(NOTE_ATTEMPT, "low")}
    v = verdicts(recs)["172.16.10.15"]
    assert (v.verdict, v.aircraft, v.bytes_out) == ("clean", ("172.16.10.1",), 0)
    assert v.msg.startswith("LDM on: attempted to reach ") and "nothing was delivered" in v.msg
    off = verdicts(analyze("wifi_rtsp_drone.pcap", ldm(False)))["172.16.10.15"]
    assert (off.verdict, off.attempts) == ("not_applicable", 0)


def test_capture_of_one_host_judges_it_without_being_told() -> None:
    """A capture in which one local host is an end of every flow is a capture of that device: it
    is judged with no --device, and devices.jsonl says why."""
    recs = analyze_path("third_party/zeek/http/pipelined-requests.pcap", ldm(True))
    (v,) = verdicts(recs).values()
    (reason,) = devices(recs)[v.device_ip].reasons
    assert reason.startswith("phone-side capture: it is an end of every one of the")
    assert v.verdict == "violation"


def test_no_ground_station_says_which_hosts_were_considered() -> None:
    """No drone link and many local hosts: no verdict, and a device record per local host says
    why it was not judged, so the output is never a silent empty verdict."""
    recs = analyze_path("third_party/zeek/wikipedia.pcap", ldm(True))
    assert verdicts(recs) == {}
    considered = [d for d in devices(recs).values() if d.not_judged]
    assert considered and all("no drone link" in (d.not_judged or "") for d in considered)
