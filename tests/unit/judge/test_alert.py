"""Alert ids and the ECS and OCSF exports."""

from __future__ import annotations

from dronewatch.judge.alert import NOTE_DNS, NOTE_LEAK, Alert, alert_id, to_ecs, to_ocsf


def make_alert(**kw: object) -> Alert:
    base: dict[str, object] = {
        "ts": 1_700_000_000.0,
        "id": alert_id("192.168.2.20", "mydjiflight.dji.com", "flight_log", NOTE_LEAK),
        "note": NOTE_LEAK,
        "msg": "192.168.2.20 sent 500,000 bytes of flight_log data to DJI mydjiflight.dji.com",
        "first_seen": 1_700_000_000.0,
        "last_seen": 1_700_000_010.5,
        "device_ip": "192.168.2.20",
        "device_mac": "02:00:00:00:00:14",
        "device_name": "pilot-phone",
        "category": "flight_log",
        "severity": "high",
        "dest_ip": "47.88.0.7",
        "dest_port": 443,
        "dest_name": "mydjiflight.dji.com",
        "proto": "tcp",
        "vendor": "DJI",
        "app": "DJI Fly",
        "rule_id": "dji.mydjiflight.flight_log",
        "confidence": 0.9,
        "evidence_tag": "E",
        "evidence": {"sni": "mydjiflight.dji.com"},
        "dest_country": "US",
        "dest_asn": 45102,
        "dest_as_org": "Alibaba (US) Technology Co., Ltd.",
        "bytes_out": 500_000,
        "bytes_in": 4_000,
        "pkts_out": 400,
        "pkts_in": 200,
        "flows": 2,
        "uids": ("CABC", "CDEF"),
        "community_ids": ("1:xyz=",),
    }
    base.update(kw)
    return Alert(**base)  # type: ignore[arg-type]


def test_alert_id_is_stable_and_specific() -> None:
    """The same device, destination, category and note give the same id; others differ."""
    a = alert_id("1.1.1.1", "x.dji.com", "maps", NOTE_LEAK)
    assert a == alert_id("1.1.1.1", "x.dji.com", "maps", NOTE_LEAK)
    assert a != alert_id("1.1.1.1", "x.dji.com", "account", NOTE_LEAK)
    assert a != alert_id("1.1.1.1", "x.dji.com", "maps", NOTE_DNS)


def test_ecs_fields() -> None:
    """The ECS document carries the fields a SIEM maps: source, destination, rule, event."""
    doc = to_ecs(make_alert())
    assert doc["@timestamp"] == "2023-11-14T22:13:30.500000Z"
    assert doc["event"]["kind"] == "alert" and doc["event"]["action"] == NOTE_LEAK
    assert doc["source"] == {
        "ip": "192.168.2.20",
        "mac": "02-00-00-00-00-14",
        "bytes": 500_000,
        "packets": 400,
    }
    assert doc["destination"]["domain"] == "mydjiflight.dji.com"
    assert doc["destination"]["as"] == {
        "number": 45102,
        "organization": {"name": "Alibaba (US) Technology Co., Ltd."},
    }
    assert doc["destination"]["geo"] == {"country_iso_code": "US"}
    assert doc["rule"] == {
        "id": "dji.mydjiflight.flight_log",
        "category": "flight_log",
        "ruleset": "dji",
    }
    assert doc["network"]["direction"] == "egress"
    assert doc["tls"]["client"]["server_name"] == "mydjiflight.dji.com"
    assert "dns" not in doc  # empty objects are pruned


def test_ocsf_detection_finding() -> None:
    """The OCSF document is a Detection Finding with type_uid = class_uid * 100 + activity."""
    doc = to_ocsf(make_alert())
    assert doc["class_uid"] == 2004 and doc["category_uid"] == 2
    assert doc["activity_id"] == 2 and doc["type_uid"] == 200402
    assert doc["severity_id"] == 4 and doc["is_alert"] is True
    assert doc["finding_info"]["uid"] == make_alert().id
    assert doc["evidences"][0]["dst_endpoint"]["autonomous_system"]["number"] == 45102
    assert doc["traffic"]["bytes_out"] == 500_000
    single = to_ocsf(make_alert(flows=1))
    assert single["activity_id"] == 1 and single["type_uid"] == 200401


def test_dns_alert_ecs_has_question() -> None:
    """A vendor DNS lookup alert exports the queried name as dns.question.name."""
    doc = to_ecs(make_alert(note=NOTE_DNS, evidence={"dns_query": "data.ardrone.com"}))
    assert doc["dns"]["question"]["name"] == "data.ardrone.com"
    assert doc["event"]["type"] == ["protocol"]


def test_to_dict_is_json_ready() -> None:
    """The native record turns tuples into lists and keeps every set field."""
    d = make_alert().to_dict()
    assert d["uids"] == ["CABC", "CDEF"] and d["status"] == "open" and d["ldm"] == "on"
