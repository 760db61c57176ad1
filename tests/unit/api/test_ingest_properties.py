"""Whatever ingest accepts, the service can give back: records drawn from the record schemas
(every observation log, hostile text in every text field) are refused (422) or taken (200), and
once taken every read endpoint answers, the alert stream's events stay one line each, and every
alert they raise goes through every sink's writer (syslog/CEF, webhook, JSONL)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import types
import typing
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dronewatch.api.records import observation_types
from dronewatch.api.routers.alerts import _changed_after
from dronewatch.judge.alert import NOTE_LEAK
from tests.service_fixtures import Api, records_of
from tests.sinks import as_alert, check_every_sink

DEVICES = ("10.77.0.2", "192.168.2.20")
"""Declared with LDM on, so observations of theirs raise alerts."""
REAL_CAPTURES = ("hostile_strings.pcap", "dji_fly_ldm_on_violation.pcap")
"""Where realistic field values come from (the second one carries evidence frames)."""

HOSTILE_PIECES = (
    "\x1b[2J\x1b[H",
    "\r\n",
    "\r",
    "\n",
    "\x00",
    "\x7f\x85\x9b",
    "\u2028",
    "\u2029",
    "\u202e",
    "\ufeff",
    "<script>alert(1)</script>",
    "</script><!--",
    '"]\\',
    "|",
    "=",
    "\\",
    "CEF:0|dronewatch|dronewatch|0|ldm.none|CLEAN|0|src=1.2.3.4 msg=ok",
    "<165>1 - - - - - forged",
    "é無人機",
    "\U0001f681",
    "x" * 300,
)
HOSTILE_TEXT = st.lists(
    st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=6)), max_size=4
).map("".join)
"""Text made of escapes, line breaks, NUL, separators, bidi overrides, HTML and any Unicode."""

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**31), 2**31), st.floats(-1e12, 1e12), HOSTILE_TEXT
)
STEERED: dict[str, st.SearchStrategy[Any]] = {
    "host_ip": st.sampled_from(DEVICES),
    "device_ip": st.sampled_from(DEVICES),
    "orig_h": st.sampled_from((*DEVICES, "0.0.0.0")),
    "ip": st.sampled_from(DEVICES),
    "kind": st.sampled_from(("flow", "lookup", "attempt")),
    "roles": st.lists(st.sampled_from(("ground_station", "aircraft")), max_size=2),
    "uid": st.uuids().map(lambda u: "C" + u.hex[:17].upper()),
    "ts": st.floats(1.7e9, 1.8e9),
    "last_ts": st.floats(1.7e9, 1.8e9),
}
"""Fields drawn often from values that make the service do something with the record (a
device's observations, judged under LDM): the other draws are any value of the field's type."""


def typed(hint: Any) -> st.SearchStrategy[Any]:
    """Any JSON value of a record field's type (text hostile, numbers within what a JSON
    number and the databases' integers hold)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return st.one_of(*(typed(a) for a in args))
    if hint is type(None):
        return st.none()
    if hint is bool:
        return st.booleans()
    if hint is int:  # what a count or a port may be (test_ingest_records tries the others)
        return st.integers(0, 65535)
    if hint is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if hint is str:
        return HOSTILE_TEXT
    if origin is tuple:
        return st.lists(typed(args[0]), max_size=4)
    if origin is dict:
        return st.dictionaries(HOSTILE_TEXT, typed(args[1]), max_size=3)
    if hint is Any:
        return JSON_SCALARS
    raise AssertionError(f"no strategy for {hint!r}")


@cache
def real_values() -> dict[tuple[str, str], list[Any]]:
    """Every value the pipeline wrote for each (log, field) in the real captures."""
    out: dict[tuple[str, str], list[Any]] = {}
    for name in REAL_CAPTURES:
        for rec in records_of(name):
            for key, value in rec.items():
                seen = out.setdefault((rec["log"], key), [])
                if value not in seen and len(seen) < 20:
                    seen.append(value)
    return out


def field_values(log: str, name: str, hint: Any) -> st.SearchStrategy[Any]:
    """A field's values: mostly realistic (what the pipeline wrote, a written text with hostile
    text added, a steered value), else any value of its type."""
    realistic: list[st.SearchStrategy[Any]] = []
    seen = real_values().get((log, name))
    if seen:
        realistic.append(st.sampled_from(seen))
        texts = [v for v in seen if isinstance(v, str)]
        if texts:
            realistic.append(st.tuples(st.sampled_from(texts), HOSTILE_TEXT).map("".join))
    if name in STEERED:
        realistic.append(STEERED[name])
    return st.one_of(*realistic, *realistic, typed(hint))


@cache
def record_strategy(log: str) -> st.SearchStrategy[dict[str, Any]]:
    """Records of one log, from its record class: required fields always, others sometimes."""
    cls = observation_types()[log]
    hints = typing.get_type_hints(cls)
    required, optional = {}, {}
    for f in dataclasses.fields(cls):
        values = field_values(log, f.name, hints[f.name])
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        (required if no_default else optional)[f.name] = values
    return st.fixed_dictionaries(required, optional=optional).map(lambda d: {"log": log, **d})


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records of any observation logs (the flows, devices, capture and evidence logs often),
    and one egress observation (what alerts are raised on) at a place of its own."""
    logs = sorted(observation_types())
    common = st.sampled_from(("flows", "devices", "capture", "evidence"))
    chosen = draw(st.lists(st.one_of(common, st.sampled_from(logs)), max_size=5))
    records = [draw(record_strategy(log)) for log in chosen]
    records.insert(draw(st.integers(0, len(records))), draw(record_strategy("egress")))
    return records


@pytest.fixture
def sink_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dronewatch-sinks-") as d:
        yield Path(d)


def declared(api: Api) -> None:
    """The two devices, LDM on from the start of time (once per service)."""
    known = {d["ip"] for d in api.get("/api/v1/devices").json()}
    for ip in DEVICES:
        if ip not in known:
            api.device(ip)


def read_everything(api: Api, alert_ids: list[str]) -> None:
    """Every read endpoint answers 200 (an evidence pcap 200 or 404: no frames kept)."""
    for path in ("/api/v1/alerts", "/api/v1/devices", "/api/v1/overview", "/metrics"):
        resp = api.get(path, params={"limit": 1000} if path == "/api/v1/alerts" else None)
        assert resp.status_code == 200, (path, resp.text[:300])
    assert api.get("/api/v1/overview/timeline").status_code == 200
    for device in api.get("/api/v1/devices").json():
        for sub in ("", "/verdict", "/flows"):
            resp = api.get(f"/api/v1/devices/{device['id']}{sub}")
            assert resp.status_code == 200, (sub, resp.text[:300])
        resp = api.get("/api/v1/overview/timeline", params={"device": device["id"]})
        assert resp.status_code == 200, resp.text[:300]
    for alert_id in alert_ids:
        assert api.get(f"/api/v1/alerts/{alert_id}").status_code == 200
        assert api.get(f"/api/v1/alerts/{alert_id}/evidence").status_code == 200
        pcap = api.get(f"/api/v1/alerts/{alert_id}/evidence.pcap")
        assert pcap.status_code in (200, 404), pcap.text[:300]


def stream_events(api: Api) -> list[dict[str, Any]]:
    """The alert stream's events from its start, made as the endpoint makes them (the stream
    never ends, so the test client cannot read it): each is one `data:` line of JSON."""
    out = []
    for item in _changed_after(api.service.store, 0):
        event = f"id: {item['seq']}\nevent: alert\ndata: {json.dumps(item, default=str)}\n\n"
        lines = event.split("\n")
        assert len(lines) == 5 and lines[2].startswith("data: ")
        out.append(json.loads(lines[2].removeprefix("data: ")))
    return out


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=batches())
def test_what_ingest_takes_every_endpoint_and_sink_gives_back(
    api: Api, sink_dir: Path, records: list[dict[str, Any]]
) -> None:
    """A batch drawn from the record schemas is refused with 422 or taken; once taken, every
    read endpoint answers, the alert stream's events are one line each, and every alert the
    batch changed goes through the syslog/CEF, webhook and JSONL sinks' writers."""
    declared(api)
    changed: list[dict[str, Any]] = []
    api.service.listeners.append(changed.extend)
    try:
        # A new batch id each run: an example run again (shrinking) is ingested again.
        resp = api.ingest(records, batch=uuid.uuid4().hex)
    finally:
        api.service.listeners.remove(changed.extend)
    assert resp.status_code in (200, 422), resp.text[:500]
    if resp.status_code == 422:
        assert all(e["loc"][:2] == ["body", "records"] for e in resp.json()["detail"])
        event(f"refused ({resp.json()['detail'][0]['type']})")
        return
    event("taken, alerts changed" if changed else "taken")
    assert resp.json()["alerts_changed"] == len(changed)
    read_everything(api, [a["id"] for a in changed][:5])
    streamed = {e["id"]: e for e in stream_events(api)}
    for doc in changed:
        assert streamed[doc["id"]].get("dest_name") == doc.get("dest_name")
        check_every_sink(as_alert(doc), sink_dir)


def test_the_strategies_reach_alerts(api: Api, sink_dir: Path) -> None:
    """The drawn records can raise alerts: one egress observation with a hostile name, of a
    declared device, raises an alert that every endpoint and sink gives back with that name."""
    declared(api)
    egress = next(
        dict(r)
        for r in records_of(REAL_CAPTURES[0])
        if r["log"] == "egress" and r["kind"] == "flow" and r["bytes_out"] > 0
    )
    name = "".join(HOSTILE_PIECES)
    egress.update(host_ip=DEVICES[0], dest_name=name, uid="Chostile")
    changed: list[dict[str, Any]] = []
    api.service.listeners.append(changed.extend)
    resp = api.ingest([egress], batch="hostile")
    api.service.listeners.remove(changed.extend)
    assert resp.status_code == 200, resp.text
    (alert,) = [a for a in changed if a.get("dest_name") == name]
    assert alert["note"] == NOTE_LEAK
    read_everything(api, [alert["id"]])
    assert api.get(f"/api/v1/alerts/{alert['id']}").json()["dest_name"] == name
    check_every_sink(as_alert(alert), sink_dir)


@pytest.mark.parametrize(
    ("log", "field", "value", "error"),
    [
        ("capture", "drops", -1, "greater_than_equal"),
        ("capture", "packets", -5, "greater_than_equal"),
        ("capture", "analyzer_errors", {"dns.packet": -1}, "greater_than_equal"),
        ("flows", "orig_pkts", -1, "greater_than_equal"),
        ("flows", "resp_p", 70_000, "less_than_equal"),
        ("flows", "duration_s", -0.5, "greater_than_equal"),
        ("egress", "bytes_out", -1, "greater_than_equal"),
        ("egress", "last_ts", "before ts", "time_order"),
        ("egress", "severity", "mediumstatusnone=", "literal_error"),
    ],
)
def test_negative_counts_bad_ports_reversed_spans_and_unknown_severities_are_refused(
    api: Api, log: str, field: str, value: Any, error: str
) -> None:
    """A negative count, a port beyond 65535, a negative duration, a span ending before it
    starts or a severity no rule has is refused with 422 naming the field, and the service keeps
    answering (before: a negative count was stored and the batch failed with 500 in the
    Prometheus counters, a reversed span turned the default timeline into a 400, and an alert
    with an unknown severity made the webhook and JSONL sinks raise KeyError)."""
    records = [dict(r) for r in records_of(REAL_CAPTURES[1])]
    i = next(i for i, r in enumerate(records) if r["log"] == log)
    records[i][field] = records[i]["ts"] - 1.0 if value == "before ts" else value
    resp = api.ingest(records, batch=f"bad-{log}-{field}")
    assert resp.status_code == 422, resp.text[:300]
    (detail,) = resp.json()["detail"]
    assert detail["loc"][:4] == ["body", "records", i, field] and detail["type"] == error
    read_everything(api, [])


@pytest.mark.parametrize(
    ("ts", "duration"), [(1e308, 0.0), (1.7e9, 1e308), (1e300, 1e300), (-1e308, 0.0)]
)
def test_times_near_the_largest_float_are_read_back(
    api: Api, sink_dir: Path, ts: float, duration: float
) -> None:
    """Flows and observations at times no date can hold are stored, every endpoint still
    answers (before: the timeline raised OverflowError) and their alerts go through every sink
    (before: the CEF writer raised OverflowError on their milliseconds)."""
    declared(api)
    records = [dict(r) for r in records_of(REAL_CAPTURES[1])]
    for r in records:
        if r["log"] == "flows":
            r.update(ts=ts, duration_s=duration)
        elif r["log"] == "egress":
            r.update(ts=ts, last_ts=ts + duration)
    changed: list[dict[str, Any]] = []
    api.service.listeners.append(changed.extend)
    resp = api.ingest(records, batch="far")
    api.service.listeners.remove(changed.extend)
    assert resp.status_code == 200, resp.text[:300]
    assert bool(changed) == (ts > 0)  # LDM is on from time 0: not before
    read_everything(api, [a["id"] for a in changed])
    for doc in changed:
        check_every_sink(as_alert(doc), sink_dir)
