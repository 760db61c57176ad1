"""The service against a hostile wire, a compromised agent and a careless operator: escaped
syslog/CEF, keys checked before bodies are read, capped bodies, reads that never write, a
truthful /readyz, capped and paged evidence, bounded query parameters, and the page's headers."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from dronewatch.api import db
from dronewatch.api.app import CONTENT_SECURITY_POLICY, WEB_DIR, create_app
from dronewatch.api.sinks import SyslogSinkConfig, build_sink
from dronewatch.api.sinks.syslog import BOM, to_rfc5424
from dronewatch.judge.alert import NOTE_LEAK, Alert, alert_id
from tests.service_fixtures import Api, records_of

PHONE = "10.77.0.2"
SCENARIO = "dji_fly_ldm_on_violation.pcap"
HOSTILE = (
    "evil.example\r\n<13>1 2024-01-01T00:00:00Z forged app - - - CEF:0|x|y|1|z|w|10|src=6.6.6.6"
    ' \x00nul|pipe=eq\\back]br"q\x1b[2Jesc é漢\u2028sep\x85nel\x7fdel end'
)
"""CR, LF, NUL, |, =, \\, ], ", non-ASCII, a terminal escape and Unicode line breaks."""


# --- 5: syslog and CEF -----------------------------------------------------------------------


def _alert(**kw: Any) -> Alert:
    base: dict[str, Any] = {
        "ts": 1_700_000_000.0,
        "id": alert_id(PHONE, "x", "flight_log", NOTE_LEAK),
        "note": NOTE_LEAK,
        "msg": "10.77.0.2 sent 500 bytes",
        "first_seen": 1_700_000_000.0,
        "last_seen": 1_700_000_060.5,
        "device_ip": PHONE,
        "device_mac": "ae:3f:52:8c:77:02",
        "device_name": "pilot-phone",
        "category": "flight_log",
        "severity": "high",
        "dest_ip": "47.88.0.13",
        "dest_port": 443,
        "dest_name": "api.example",
        "proto": "tcp",
        "vendor": "DJI",
        "rule_id": "dji.api",
        "dest_country": "US",
        "dest_asn": 45102,
    }
    return Alert(**{**base, **kw})


def _expected(text: str) -> str:
    """What a field must read as once unescaped: its text with control characters but CR and
    LF replaced."""
    return re.sub("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]", "\ufffd", text)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), text)


def _split_unescaped(text: str, sep: str, parts: int) -> list[str]:
    """`text` split at the first `parts - 1` occurrences of `sep` not escaped by a backslash."""
    out, cur, i = [], "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if ch == sep and len(out) < parts - 1:
            out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    return [*out, cur]


def _cef_extension(ext: str) -> dict[str, str]:
    """CEF extension `k=v k2=v2` as a dict, split at unescaped `=` as a CEF parser does."""
    keys = [
        m for m in re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", ext) if not _escaped(ext, m.end() - 1)
    ]
    out = {}
    for m, nxt in zip(keys, [*keys[1:], None], strict=True):
        value = ext[m.end() : nxt.start() if nxt else len(ext)]
        out[m.group(1)] = _unescape(value)
    return out


def _escaped(text: str, pos: int) -> bool:
    slashes = len(text[:pos]) - len(text[:pos].rstrip("\\"))
    return slashes % 2 == 1


def _parse_syslog(line: str) -> tuple[list[str], str, str]:
    """RFC 5424: the header fields (PRI+VERSION, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID),
    the structured data and the MSG."""
    head = line.split(" ", 6)
    rest = head.pop()
    if rest.startswith("["):
        end = next(i for i in range(len(rest)) if rest[i] == "]" and not _escaped(rest, i))
        return head, rest[: end + 1], rest[end + 2 :]
    sd, _, msg = rest.partition(" ")
    return head, sd, msg


CEF_FIELDS = {
    "device_ip": "src",
    "device_mac": "smac",
    "device_name": "shost",
    "dest_ip": "dst",
    "dest_name": "dhost",
    "proto": "proto",
    "category": "cat",
    "status": "act",
    "id": "externalId",
    "vendor": "cs1",
    "rule_id": "cs2",
    "dest_country": "cs3",
    "ldm": "cs4",
    "msg": "msg",
    "note": None,
    "severity": None,
}
"""Every text field of an alert and its CEF extension key (None: header only)."""


@pytest.mark.parametrize("field", sorted(CEF_FIELDS))
def test_hostile_field_stays_in_its_place(field: str) -> None:
    """A hostile string in any alert field stays one line and parses back into its own field."""
    alert = _alert(**{field: HOSTILE})
    line = to_rfc5424(
        alert, app_name="dw app\n", facility=10, hostname="host\r\nname", sd_id="dw@32473"
    )
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", line), repr(line)
    head, sd, msg = _parse_syslog(line)
    assert all(re.fullmatch(r"[\x21-\x7e]{1,255}", h) for h in head), head
    assert head[2:5] == ["host__name", "dw_app_", "-"]
    assert len(head[5]) <= 32 and (field == "note" or head[5] == NOTE_LEAK)
    params = dict(re.findall(r' ([a-z]+)="((?:[^"\\]|\\.)*)"', sd))
    assert sd.startswith("[dw@32473 ") and _unescape(params["id"]) == _expected(alert.id)
    assert _unescape(params["dhost"]) == _expected(alert.dest_name or "")
    assert msg.startswith(BOM + "CEF:0|") == (not msg.isascii())
    parts = _split_unescaped(msg.removeprefix(BOM), "|", 8)
    assert len(parts) == 8 and parts[:3] == ["CEF:0", "dronewatch", "dronewatch"]
    assert _unescape(parts[4]) == _expected(alert.note)
    assert _unescape(parts[5]) == _expected(alert.msg[:512])
    assert parts[6] == ("5" if field == "severity" else "8")
    ext = _cef_extension(parts[7])
    for name, key in CEF_FIELDS.items():
        if key is not None:
            assert ext[key] == _expected(str(getattr(alert, name))), (name, ext)
    assert ext["dpt"] == "443" and ext["cn1"] == "45102"


def test_hostile_alert_is_one_frame_over_tcp() -> None:
    """Over TCP a hostile alert is one line in one frame counted in UTF-8 bytes."""

    async def main() -> bytes:
        got = bytearray()
        done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while chunk := await reader.read(65536):
                got.extend(chunk)
                if got.count(b"CEF:0") >= 2:
                    break
            done.set()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = build_sink(SyslogSinkConfig(host="127.0.0.1", port=port, transport="tcp"))
        await sink.send(_alert(dest_name=HOSTILE, msg=HOSTILE))
        await sink.send(_alert(device_name=HOSTILE))
        await asyncio.wait_for(done.wait(), 10)
        await sink.close()
        server.close()
        return bytes(got)

    data = asyncio.run(main())
    frames = []
    while data:
        count, _, rest = data.partition(b" ")
        frames.append(rest[: int(count)])
        data = rest[int(count) :]
    assert len(frames) == 2
    for frame in frames:
        assert frame.startswith(b"<83>1 ") and b"\n" not in frame and b"\r" not in frame
        assert b"\x1b" not in frame and b"\x00" not in frame
        frame.decode("utf-8")


def test_hostile_alert_is_one_datagram_line_over_udp() -> None:
    """Over UDP a hostile alert is one datagram with no line break and no control character."""

    async def main() -> bytes:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        sink = build_sink(SyslogSinkConfig(host="127.0.0.1", port=sock.getsockname()[1]))
        await sink.send(_alert(dest_name=HOSTILE, device_name=HOSTILE, msg=HOSTILE))
        await sink.close()
        data = sock.recv(65535)
        sock.close()
        return data

    text = asyncio.run(main()).decode("utf-8")
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", text)
    assert text.startswith("<83>1 ") and "\\r\\n<13>1 2024-01-01T00:00:00Z forged" in text


# --- 7: keys before bodies, capped bodies -----------------------------------------------------


def _upload(
    api: Api, path: str, headers: dict[str, str], total: int, chunk: int = 1 << 20
) -> tuple[httpx.Response, int]:
    """POST a streamed body of `total` bytes straight into the ASGI app; the response and how
    many bytes the app pulled from the stream."""
    consumed = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal consumed
        sent = 0
        while sent < total:
            piece = b" " * min(chunk, total - sent)
            consumed += len(piece)
            sent += len(piece)
            yield piece

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=api.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, content=body(), headers=headers)

    return asyncio.run(main()), consumed


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_unauthenticated_huge_body_is_refused_unread(api: Api, declared: bool) -> None:
    """A huge upload without a key gets 401 before the service reads any of it."""
    total = 64 << 20
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(total)
    resp, consumed = _upload(api, "/api/v1/ingest", headers, total)
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    assert consumed == 0
    assert resp.headers["connection"] == "close"


def test_wrong_role_body_is_refused_unread(api: Api) -> None:
    """A reader key posting a batch gets 403 before the service reads the body."""
    headers = {**api.headers("reader"), "Content-Type": "application/json"}
    resp, consumed = _upload(api, "/api/v1/ingest", headers, 8 << 20)
    assert resp.status_code == 403 and consumed == 0


def test_declared_oversize_body_is_413_unread(api: Api) -> None:
    """An agent's body declared larger than the ingest limit gets 413 before any of it is read."""
    api.service.settings.max_ingest_body_bytes = 1 << 20
    headers = {
        **api.headers("agent"),
        "Content-Type": "application/json",
        "Content-Length": str(4 << 20),
    }
    resp, consumed = _upload(api, "/api/v1/ingest", headers, 4 << 20)
    assert resp.status_code == 413 and consumed == 0
    assert "1048576" in resp.json()["detail"]


def test_streamed_oversize_body_is_cut_at_the_limit(api: Api) -> None:
    """A chunked body growing past the limit gets 413 at the limit, the rest unread."""
    api.service.settings.max_ingest_body_bytes = 1 << 20
    headers = {**api.headers("agent"), "Content-Type": "application/json"}
    resp, consumed = _upload(api, "/api/v1/ingest", headers, 16 << 20, chunk=256 << 10)
    assert resp.status_code == 413
    assert consumed <= (1 << 20) + (256 << 10)


def test_other_endpoints_have_the_small_limit(api: Api) -> None:
    """A body between the two limits gets 413 from /devices and is taken by /ingest."""
    api.service.settings.max_body_bytes = 64 << 10
    padded = '{"batch_id": "pad", "records": []}' + " " * (256 << 10)
    resp = api.client.post(
        "/api/v1/devices",
        content=padded,
        headers={**api.headers("admin"), "Content-Type": "application/json"},
    )
    assert resp.status_code == 413
    resp = api.client.post(
        "/api/v1/ingest",
        content=padded,
        headers={**api.headers("agent"), "Content-Type": "application/json"},
    )
    assert resp.status_code == 200, resp.text


# --- 8: reads never write; readiness tells the truth ------------------------------------------


@contextmanager
def write_locked(api: Api) -> Iterator[None]:
    """Another client holds the database's write lock (SQLite) or the key and counter tables'
    (PostgreSQL) until the block ends; reads go on."""
    engine = api.service.store.engine
    if engine.dialect.name == "sqlite":
        conn = sqlite3.connect(str(engine.url.database), timeout=0, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        with engine.connect() as pg:
            pg.exec_driver_sql("LOCK TABLE api_keys, counters IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                pg.rollback()


def _last_used(api: Api, name: str) -> float | None:
    with api.service.store.engine.connect() as conn:
        value = conn.execute(
            select(db.api_keys.c.last_used_at).where(db.api_keys.c.name == name)
        ).scalar_one()
    return None if value is None else float(value)


def _age_key(api: Api, name: str) -> float:
    with api.service.store.engine.begin() as conn:
        conn.execute(
            update(db.api_keys).where(db.api_keys.c.name == name).values(last_used_at=1000.0)
        )
    return 1000.0


def test_read_with_idle_key_succeeds_while_database_is_write_locked(api: Api) -> None:
    """A GET with an idle key is served while the database is write-locked; its use noted later."""
    old = _age_key(api, "test-reader")
    with write_locked(api):
        resp = api.get("/api/v1/alerts")
        assert resp.status_code == 200, resp.text
        assert _last_used(api, "test-reader") == old
    assert api.get("/api/v1/alerts").status_code == 200
    assert (_last_used(api, "test-reader") or 0) > old


def test_readyz_names_a_write_locked_database(api: Api) -> None:
    """/readyz answers 503 naming database_write while the database takes no write."""
    api.service.settings.ready_timeout_s = 0.2
    with write_locked(api):
        resp = api.client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["status"] == "unavailable"
    assert resp.json()["detail"].startswith("database_write: ")
    assert api.client.get("/readyz").status_code == 200


def test_readyz_names_low_disk_space(api: Api) -> None:
    """/readyz answers 503 naming disk_space below the free-space threshold."""
    api.service.settings.ready_min_free_mib = 1 << 40
    resp = api.client.get("/readyz")
    assert resp.status_code == 503
    assert "disk_space: " in resp.json()["detail"] and "MiB free" in resp.json()["detail"]


# --- 9: evidence capped per flow, paged, and a bounded pcap -----------------------------------


def _ingest_with_frames(api: Api, frames: list[dict[str, Any]]) -> dict[str, Any]:
    """Ingest the scenario with the evidence frames replaced by `frames`; the alert raised."""
    api.device(PHONE)
    records = []
    for rec in records_of(SCENARIO):
        if rec["log"] == "evidence":
            rec = {**rec, "frames": frames}
        records.append(rec)
    assert api.ingest(records).status_code == 200
    (alert,) = api.get("/api/v1/alerts").json()["items"]
    return dict(alert)


def _frames(n: int) -> list[dict[str, Any]]:
    (ev,) = [r for r in records_of(SCENARIO) if r["log"] == "evidence"]
    base = list(ev["frames"])
    return [{**base[i % len(base)], "ts": base[0]["ts"] + i, "frame": i} for i in range(n)]


def _all_pages(api: Api, alert: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    items, cursor = [], None
    for _ in range(100):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        resp = api.get(f"/api/v1/alerts/{alert['id']}/evidence", params=params)
        assert resp.status_code == 200, resp.text
        assert sum(len(e["frames"]) for e in resp.json()) <= limit
        items.extend(resp.json())
        cursor = resp.headers.get("x-next-cursor")
        if cursor is None:
            return items
    raise AssertionError("the evidence pages never end")


def test_evidence_frames_beyond_the_cap_are_dropped_and_counted(api: Api) -> None:
    """Frames of a flow beyond the cap are not stored and are counted, in the pages and the pcap."""
    api.service.store.evidence_max_frames = 8
    alert = _ingest_with_frames(api, _frames(50))
    items = _all_pages(api, alert, limit=3)
    assert [f["frame"] for e in items for f in e["frames"]] == list(range(8))
    assert {e["frames_dropped"] for e in items} == {42}
    resp = api.get(f"/api/v1/alerts/{alert['id']}/evidence.pcap")
    assert resp.status_code == 200 and resp.headers["x-frames-dropped"] == "42"
    assert resp.headers["x-frames-omitted"] == "0"
    assert len(resp.content) == 24 + _pcap_body_len(8)


def _pcap_body_len(n: int) -> int:
    frames = _frames(n)
    return sum(16 + len(base64.b64decode(f["data"])) for f in frames)


def test_evidence_pcap_is_bounded(api: Api) -> None:
    """evidence.pcap stops at evidence_pcap_max_bytes and counts the frames it left out."""
    alert = _ingest_with_frames(api, _frames(10))
    fits = 24 + _pcap_body_len(3)
    api.service.settings.evidence_pcap_max_bytes = fits + 10
    resp = api.get(f"/api/v1/alerts/{alert['id']}/evidence.pcap")
    assert resp.status_code == 200
    assert len(resp.content) == fits and resp.headers["x-frames-omitted"] == "7"


def test_malformed_evidence_frames_are_dropped(api: Api) -> None:
    """Malformed frames (bad base64, impossible times) are dropped and counted; the pcap serves."""
    good = _frames(2)
    bad = [
        {**good[0], "data": "not base64!"},
        {**good[0], "ts": -5.0},
        {**good[0], "ts": "soon"},
        {**good[0], "wirelen": 2**40},
    ]
    alert = _ingest_with_frames(api, [good[0], *bad, good[1]])
    resp = api.get(f"/api/v1/alerts/{alert['id']}/evidence.pcap")
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-frames-dropped"] == "4"
    assert len(resp.content) == 24 + _pcap_body_len(2)


# --- 11: bounded query parameters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "headers", "name"),
    [
        ("/api/v1/alerts", {"cursor": str(2**63)}, {}, "cursor"),
        ("/api/v1/alerts", {"cursor": "\u00b2"}, {}, "cursor"),
        ("/api/v1/alerts", {"cursor": "\u0661\u0662"}, {}, "cursor"),
        ("/api/v1/alerts", {"cursor": "1_0"}, {}, "cursor"),
        ("/api/v1/alerts", {"start": "nan"}, {}, "start"),
        ("/api/v1/alerts", {"end": "1e400"}, {}, "end"),
        ("/api/v1/alerts", {"start": "-1"}, {}, "start"),
        ("/api/v1/alerts/stream", {}, {"Last-Event-ID": str(2**63)}, "last-event-id"),
        ("/api/v1/alerts/stream", {}, {"Last-Event-ID": "9" * 5000}, "last-event-id"),
        ("/api/v1/alerts/{id}/evidence", {"cursor": str(2**63)}, {}, "cursor"),
        ("/api/v1/alerts/{id}/evidence", {"cursor": "x"}, {}, "cursor"),
        ("/api/v1/alerts/{id}/evidence", {"limit": "0"}, {}, "limit"),
        ("/api/v1/alerts/{id}/evidence", {"limit": str(2**64)}, {}, "limit"),
    ],
)
def test_out_of_range_parameter_is_422_naming_it(
    api: Api, path: str, params: dict[str, str], headers: dict[str, str], name: str
) -> None:
    """A cursor, limit, start, end or Last-Event-ID out of bounds is a 422 naming it, not a 500."""
    if "{id}" in path:
        path = path.replace("{id}", _ingest_with_frames(api, _frames(4))["id"])
    resp = api.get(path, params=params, headers=headers)
    assert resp.status_code == 422, resp.text
    assert any(e["loc"][-1] == name for e in resp.json()["detail"]), resp.json()


def test_non_ascii_last_event_id_is_422(api: Api) -> None:
    """A non-ASCII digit ("²") as Last-Event-ID is a 422 naming the header, not a 500."""

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=api.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {**api.headers("reader"), "Last-Event-ID": b"\xb2"}
            return await client.get("/api/v1/alerts/stream", headers=headers)

    resp = asyncio.run(main())
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["header", "last-event-id"]


# --- 15: headers, docs, raw evidence ------------------------------------------------------------


def test_page_and_api_carry_security_headers(api: Api) -> None:
    """The page, its assets and API answers (a 401 too) carry the CSP, nosniff and frame headers."""
    for resp in (
        api.client.get("/"),
        api.client.get("/static/app.js"),
        api.client.get("/api/v1/alerts"),
    ):
        assert resp.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY


class _Page(HTMLParser):
    """The page's scripts, styles and links."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "style" or "style" in attr or any(k.startswith("on") for k in attr):
            self.problems.append(f"inline style or handler in <{tag}>")
        if tag == "script" and not attr.get("src"):
            self._in_script = True
        for name in ("src", "href"):
            url = attr.get(name)
            if url is not None and not url.startswith(("/", "#")):
                self.problems.append(f"<{tag} {name}={url}> is not the service's own")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_page_needs_nothing_the_csp_forbids() -> None:
    """The page has no inline script, style or handler and loads only the service's own files."""
    page = _Page()
    page.feed((WEB_DIR / "index.html").read_text(encoding="utf-8"))
    assert page.problems == []
    script = (WEB_DIR / "app.js").read_text(encoding="utf-8")
    assert not re.search(r"innerHTML|setAttribute\(\s*[\"']style|eval\(|new Function", script)


def test_interactive_docs_are_off_by_default(api: Api) -> None:
    """/docs and /redoc (Swagger UI and ReDoc from a CDN) are not served; /openapi.json is."""
    assert api.client.get("/docs").status_code == 404
    assert api.client.get("/redoc").status_code == 404
    assert api.client.get("/openapi.json").status_code == 200


def test_interactive_docs_when_turned_on(api: Api) -> None:
    """With `docs` on, /docs is served, without the page's CSP (it runs the CDN's script)."""
    settings = api.service.settings.model_copy(update={"docs": True})
    with TestClient(create_app(settings, api.service)) as client:
        resp = client.get("/docs")
    assert resp.status_code == 200 and "swagger" in resp.text.lower()
    assert "content-security-policy" not in resp.headers
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_raw_evidence_needs_a_key_under_open_reads(api: Api) -> None:
    """Under open_reads alerts are served without a key, their frames (pcap or dissected) not."""
    alert = _ingest_with_frames(api, _frames(4))
    api.service.settings.open_reads = True
    assert api.client.get("/api/v1/alerts").status_code == 200
    for suffix in ("evidence.pcap", "evidence"):
        resp = api.client.get(f"/api/v1/alerts/{alert['id']}/{suffix}")
        assert resp.status_code == 401, suffix
        assert api.get(f"/api/v1/alerts/{alert['id']}/{suffix}").status_code == 200
