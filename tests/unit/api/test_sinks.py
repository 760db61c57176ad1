"""Alert sinks against real receivers on loopback: a syslog UDP socket and TCP server, an HTTP
webhook receiver, a file; and the dispatcher with one receiver down."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from dronewatch.api.sinks import (
    JsonlSinkConfig,
    SinkDispatcher,
    SinkError,
    SyslogSinkConfig,
    WebhookSinkConfig,
    alert_from_dict,
    build_sink,
    parse_sink_configs,
)
from dronewatch.api.sinks.syslog import cef_value, to_cef, to_rfc5424
from dronewatch.judge.alert import NOTE_LEAK, Alert, alert_id, to_ecs
from tests.live import free_port, run_service, sqlite_settings
from tests.service_fixtures import records_of


def make_alert(**kw: Any) -> Alert:
    base: dict[str, Any] = {
        "ts": 1_700_000_000.0,
        "id": alert_id("10.77.0.2", "a|b=c\\d", "flight_log", NOTE_LEAK),
        "note": NOTE_LEAK,
        "msg": "10.77.0.2 sent 500,000 bytes of flight_log data",
        "first_seen": 1_700_000_000.0,
        "last_seen": 1_700_000_060.5,
        "device_ip": "10.77.0.2",
        "device_mac": "ae:3f:52:8c:77:02",
        "device_name": "pilot|phone",
        "category": "flight_log",
        "severity": "high",
        "dest_ip": "47.88.0.13",
        "dest_port": 443,
        "dest_name": "a|b=c\\d",
        "proto": "tcp",
        "vendor": "DJI",
        "rule_id": "dji.mydjiflight.api",
        "bytes_out": 500_000,
        "bytes_in": 4_000,
        "flows": 2,
        "dest_country": "US",
        "dest_asn": 45102,
    }
    base.update(kw)
    return Alert(**base)


class Receiver:
    """A minimal HTTP/1.1 server answering with a scripted list of status codes."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")[1:]
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()


def test_cef_escaping() -> None:
    """The header escapes pipes, backslashes and newlines; extensions = \\ and newlines."""
    alert = make_alert(msg="sent | data\nnext")
    cef = to_cef(alert)
    assert cef.startswith("CEF:0|dronewatch|dronewatch|")
    assert "|sent \\| data\\nnext|8|" in cef
    assert "dhost=a|b\\=c\\\\d" in cef and "msg=sent | data\\nnext" in cef
    assert cef_value("x=y\\z\r") == "x\\=y\\\\z\\r"


def test_syslog_udp_rfc5424_with_cef() -> None:
    """UDP: one datagram per alert, an RFC 5424 header, and the CEF event as its message."""

    async def main() -> bytes:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        sink = build_sink(SyslogSinkConfig(host="127.0.0.1", port=sock.getsockname()[1]))
        await sink.send(make_alert())
        await sink.close()
        data = sock.recv(65535)
        sock.close()
        return data

    msg = asyncio.run(main()).decode()
    m = re.match(r"<(\d+)>1 (\S+) (\S+) dronewatch - ldm\.data_left_device - (CEF:0\|.*)$", msg)
    assert m is not None, msg
    assert m.group(1) == str(10 * 8 + 3)  # facility 10, severity error for a high alert
    assert m.group(2) == "2023-11-14T22:14:20.500000Z"
    cef = m.group(4)
    for field in (
        "src=10.77.0.2",
        "dst=47.88.0.13",
        "dpt=443",
        "out=500000",
        "cs1=DJI",
        "cs2=dji.mydjiflight.api",
        "cat=flight_log",
        "cn1=45102",
    ):
        assert field in cef


def test_syslog_tcp_octet_counting() -> None:
    """TCP: messages are framed by their length (RFC 6587), two alerts back to back."""

    async def main() -> bytes:
        got = bytearray()
        done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while len(got) < 10 or got.count(b"CEF:0") < 2:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got.extend(chunk)
            done.set()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = build_sink(SyslogSinkConfig(host="127.0.0.1", port=port, transport="tcp"))
        await sink.send(make_alert())
        await sink.send(make_alert(severity="low"))
        await asyncio.wait_for(done.wait(), 5)
        await sink.close()
        server.close()
        return bytes(got)

    data = asyncio.run(main())
    frames = []
    pos = 0
    while pos < len(data):
        size, _, rest = data[pos:].partition(b" ")
        frames.append(rest[: int(size)])
        pos += len(size) + 1 + int(size)
    assert len(frames) == 2 and all(f.startswith(b"<") for f in frames)
    assert frames[1].startswith(b"<85>1 ")  # facility 10, notice for a low alert


def test_webhook_retries_5xx_and_signs() -> None:
    """503 twice then 200: three attempts, same idempotency key, a valid HMAC signature."""
    receiver = Receiver([503, 503, 200])

    async def main() -> int:
        server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = build_sink(
            WebhookSinkConfig(
                url=f"http://127.0.0.1:{port}/hook", secret="s3cret", backoff_initial_s=0.01
            )
        )
        await sink.send(make_alert())
        await sink.close()
        server.close()
        return len(receiver.requests)

    assert asyncio.run(main()) == 3
    keys = {h["idempotency-key"] for h, _ in receiver.requests}
    assert len(keys) == 1
    headers, body = receiver.requests[-1]
    want = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["x-dronewatch-signature"] == f"sha256={want}"
    doc = json.loads(body)
    assert doc["alert"]["dest_name"] == "a|b=c\\d" and doc["ecs"]["event"]["kind"] == "alert"


def test_webhook_does_not_retry_400() -> None:
    """A 400 answer is final: one attempt and an error naming the status."""
    receiver = Receiver([400])

    async def main() -> None:
        server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sink = build_sink(
            WebhookSinkConfig(url=f"http://127.0.0.1:{port}/", backoff_initial_s=0.01)
        )
        try:
            await sink.send(make_alert())
        finally:
            await sink.close()
            server.close()

    with pytest.raises(SinkError, match="answered 400"):
        asyncio.run(main())
    assert len(receiver.requests) == 1


def test_jsonl_sink_writes_ecs(tmp_path: Path) -> None:
    """The file sink appends the alert's ECS document, one per line."""
    path = tmp_path / "sub" / "alerts.ecs.jsonl"

    async def main() -> None:
        sink = build_sink(JsonlSinkConfig(path=str(path)))
        await sink.send(make_alert())
        await sink.send(make_alert(bytes_out=1))
        await sink.close()

    asyncio.run(main())
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0] == json.loads(json.dumps(to_ecs(make_alert())))
    assert lines[1]["source"]["bytes"] == 1


def test_dispatcher_keeps_healthy_sink_going(tmp_path: Path) -> None:
    """A webhook whose receiver is down fails on its own; the file sink still gets every alert;
    a full queue drops and counts."""
    path = tmp_path / "a.jsonl"

    async def main() -> SinkDispatcher:
        dead = WebhookSinkConfig(
            url=f"http://127.0.0.1:{free_port()}/",
            max_retries=1,
            backoff_initial_s=0.01,
            queue_size=2,
        )
        d = SinkDispatcher.from_configs([JsonlSinkConfig(path=str(path)), dead])
        await d.start()
        for i in range(5):
            d.submit(make_alert(bytes_out=i))
        await d.stop(timeout_s=10)
        return d

    d = asyncio.run(main())
    assert len(path.read_text().splitlines()) == 5
    webhook = next(s for n, s in d.stats.items() if n.startswith("webhook"))
    assert webhook.sent == 0 and webhook.dropped == 3 and webhook.failed == 2


def test_bad_sink_config_is_named() -> None:
    """A sink entry with a bad type or field is refused with its position."""
    with pytest.raises(SinkError, match=r"sinks\[0"):
        parse_sink_configs([{"type": "carrier-pigeon"}])
    with pytest.raises(SinkError, match="url"):
        parse_sink_configs([{"type": "webhook", "url": "ftp://x"}])


def test_alert_from_dict_round_trip() -> None:
    """An alert's dict form (as stored, None fields left out) gives the same alert back."""
    alert = make_alert(uids=("C1", "C2"), device_name=None, device_mac=None)
    assert alert_from_dict({**alert.to_dict(), "seq": 4, "status": "open"}) == alert


def test_service_sends_alerts_to_sinks(tmp_path: Path) -> None:
    """The running service pushes alerts raised by ingest to its configured syslog sink."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    settings = sqlite_settings(
        tmp_path,
        sinks=[
            {"type": "syslog", "host": "127.0.0.1", "port": sock.getsockname()[1]},
            {"type": "jsonl", "path": str(tmp_path / "alerts.jsonl")},
        ],
    )
    for live in run_service(settings):
        with live.client() as c:
            dev = c.post("/api/v1/devices", json={"ip": "10.77.0.2"}).json()
            c.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": True, "at": 0})
            c.post(
                "/api/v1/ingest",
                json={
                    "batch_id": "b",
                    "records": list(records_of("dji_fly_ldm_on_violation.pcap")),
                },
            )
        try:
            msg = sock.recv(65535).decode()
        finally:
            sock.close()
    assert "dhost=mydjiflight.dji.com" in msg
    (line,) = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert json.loads(line)["destination"]["domain"] == "mydjiflight.dji.com"


def test_cef_of_an_alert_at_a_time_near_the_largest_float() -> None:
    """An alert whose times are finite but whose milliseconds are not (a record may say
    1e308) still becomes a CEF event and a syslog message: the times it cannot write are left
    out instead of raising OverflowError."""
    alert = make_alert(first_seen=1e308, last_seen=1.7e308, ts=1.7e308)
    event = to_cef(alert)
    assert " rt=" not in event and " start=" not in event and "dpt=443" in event
    assert to_rfc5424(alert, app_name="dronewatch", facility=10, hostname="h").endswith(event)
