"""An alert through every sink's formatter, and readers of what they write (CEF, RFC 5424), for
tests that hand the sinks hostile text: each output must parse back into the alert's own fields
and stay one line."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dronewatch.api.sinks import JsonlSinkConfig, WebhookSinkConfig
from dronewatch.api.sinks.jsonl import JsonlSink
from dronewatch.api.sinks.syslog import BOM, to_cef, to_rfc5424
from dronewatch.api.sinks.webhook import WebhookSink
from dronewatch.judge.alert import Alert

SD_ID = "dronewatch@32473"
NOT_ON_A_SYSLOG_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""What no syslog message may hold raw: line breaks and every other control character."""
CEF_REPLACED = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
"""What the CEF and RFC 5424 writers replace by U+FFFD (CR and LF are escaped instead)."""
CEF_KEYS = (
    "rt start end src smac shost dst dpt dhost proto out in cnt deviceDirection cat act "
    "externalId cs1Label cs1 cs2Label cs2 cs3Label cs3 cs4Label cs4 cn1Label cn1 msg"
).split()
"""Every extension key `to_cef` may write."""


_UNESCAPE = {"n": "\n", "r": "\r"}


@dataclass
class Cef:
    """A CEF event read back: its seven header fields and its extension, unescaped."""

    header: list[str]
    extension: dict[str, str]


def cef_text(value: str) -> str:
    """What a reader of a CEF or RFC 5424 field gets back for a value the sink was given."""
    return CEF_REPLACED.sub("\ufffd", value)


def parse_cef(event: str) -> Cef:
    """Read a CEF event as a receiver does: the header is cut at unescaped `|`; in the extension
    a key is the word before an unescaped `=`; `\\\\`, `\\|`, `\\=`, `\\n` and `\\r` unescape."""
    assert event.startswith("CEF:0|"), event[:40]
    header: list[str] = []
    field, i = "", 0
    while len(header) < 7:
        c = event[i]
        if c == "\\":
            field += _UNESCAPE.get(event[i + 1], event[i + 1])
            i += 2
            continue
        if c == "|":
            header.append(field)
            field = ""
        else:
            field += c
        i += 1
    ext, key, buf = {}, None, ""
    rest = event[i:]
    j = 0
    while j < len(rest):
        c = rest[j]
        if c == "\\":
            buf += _UNESCAPE.get(rest[j + 1], rest[j + 1])
            j += 2
            continue
        if c == "=":
            head, _, word = buf.rpartition(" ")
            if key is not None:
                ext[key] = head
            key, buf = word, ""
        else:
            buf += c
        j += 1
    if key is not None:
        ext[key] = buf
    return Cef(header, ext)


def sd_params(message: str) -> dict[str, str]:
    """The parameters of the message's SD-ELEMENT, unescaped (RFC 5424 6.3.3)."""
    start = message.index(f"[{SD_ID} ")
    params: dict[str, str] = {}
    for m in re.finditer(r' ([^= \]"]+)="((?:[^"\\\]]|\\.)*)"', message[start:]):
        params[m.group(1)] = re.sub(r"\\(.)", lambda e: _UNESCAPE.get(e[1], e[1]), m.group(2))
        if message[start + m.end()] == "]":
            break
    return params


def expected_cef(alert: Alert) -> dict[str, str]:
    """The extension a receiver should read for `alert`: the fields `to_cef` writes."""
    doc = {
        "src": alert.device_ip,
        "smac": alert.device_mac,
        "shost": alert.device_name,
        "dst": alert.dest_ip,
        "dpt": alert.dest_port,
        "dhost": alert.dest_name,
        "proto": alert.proto,
        "cat": alert.category,
        "externalId": alert.id,
        "cs1": alert.vendor,
        "cs2": alert.rule_id,
        "msg": alert.msg,
    }
    return {k: cef_text(str(v)) for k, v in doc.items() if v is not None}


def check_syslog(alert: Alert) -> None:
    """The RFC 5424 message (with structured data) of `alert` is one line without a control
    character, ends with the alert's CEF event, and both read back to the alert's fields: no
    name forges a header field, an extension key, a structured-data parameter or a line."""
    message = to_rfc5424(
        alert, app_name="dronewatch", facility=10, hostname="sensor-1", sd_id=SD_ID
    )
    assert not NOT_ON_A_SYSLOG_LINE.search(message), repr(message[:200])
    cef = to_cef(alert)
    assert message.endswith((" " + cef, " " + BOM + cef))
    head = message[: message.index(f"[{SD_ID} ")].split(" ")
    assert head[0].startswith("<") and head[0].endswith(">1"), head
    assert head[2:6] == ["sensor-1", "dronewatch", "-", head[5]] and head[5].isascii()
    event = parse_cef(cef)
    assert len(event.header) == 7, event.header
    assert event.header[:4] == ["CEF:0", "dronewatch", "dronewatch", event.header[3]]
    assert event.header[4] == cef_text(alert.note)
    assert event.header[5] == cef_text(alert.msg[:512])
    assert set(event.extension) <= set(CEF_KEYS), sorted(set(event.extension) - set(CEF_KEYS))
    got = {k: event.extension[k] for k in expected_cef(alert) if k in event.extension}
    assert got == expected_cef(alert)
    params = sd_params(message)
    assert params.get("dhost", None) == (
        cef_text(alert.dest_name) if alert.dest_name is not None else None
    )
    assert params["id"] == cef_text(alert.id) and params["src"] == cef_text(alert.device_ip)


def check_webhook(alert: Alert) -> None:
    """The webhook body is JSON carrying the alert's exact fields, and its ECS form."""
    sink = WebhookSink(WebhookSinkConfig(url="http://127.0.0.1:9/hook"))
    try:
        body = sink.body(alert)
    finally:
        asyncio.run(sink.close())
    doc = json.loads(body)
    assert doc["alert"] == json.loads(json.dumps(alert.to_dict()))
    assert doc["ecs"]["destination"].get("domain") == alert.dest_name


def check_jsonl(alert: Alert, directory: Path) -> None:
    """The JSONL sink appends one line that reads back to the alert's ECS document."""
    path = directory / "sink.jsonl"
    path.unlink(missing_ok=True)
    sink = JsonlSink(JsonlSinkConfig(path=str(path)))

    async def send() -> None:
        await sink.send(alert)
        await sink.close()

    asyncio.run(send())
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and len(text.splitlines()) == 1
    assert json.loads(text)["destination"].get("domain") == alert.dest_name


def check_every_sink(alert: Alert, directory: Path) -> None:
    """`alert` through the syslog/CEF, webhook and JSONL sinks' writers: each reads back."""
    check_syslog(alert)
    check_webhook(alert)
    check_jsonl(alert, directory)


def as_alert(doc: dict[str, Any]) -> Alert:
    """An alert as the sinks get it from the store (`alert_from_dict`)."""
    from dronewatch.api.sinks import alert_from_dict

    return alert_from_dict(doc)
