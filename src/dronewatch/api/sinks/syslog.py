r"""A sink that sends each alert as an RFC 5424 syslog message whose text is a CEF event.

UDP sends one datagram per message; TCP frames messages by octet counting (RFC 6587 3.4.1) and
reconnects after a failure.

Much of an alert comes off the wire (SNI, DNS and DHCP names, the message built from them), so
every field is escaped for where it goes and no message holds a raw line break or control
character: one alert is one line, and no name can forge a second syslog line, a CEF field or a
terminal escape.
- CEF (the ArcSight CEF specification): header fields escape `\` and `|`; extension values
  escape `\`, `=`, and CR and LF as `\r` and `\n`. CR and LF in a header field (where the
  specification allows none) are written the same way.
- RFC 5424: HOSTNAME, APP-NAME, PROCID and MSGID are printable US-ASCII without spaces, cut to
  their lengths (6.2); structured-data parameter values escape `"`, `\` and `]` (6.3.3); a MSG
  with anything beyond ASCII starts with the UTF-8 BOM (6.4).
- Other control characters (C0, DEL, C1, U+2028 and U+2029) become U+FFFD.
"""

from __future__ import annotations

import asyncio
import math
import re
import socket
from typing import TYPE_CHECKING

from dronewatch import __version__
from dronewatch.judge.alert import SEVERITY_SCORE, Alert, utc_time

if TYPE_CHECKING:
    from dronewatch.api.sinks.config import SyslogSinkConfig

SYSLOG_SEVERITY = {"info": 6, "low": 5, "medium": 4, "high": 3, "critical": 2}
"""Alert severity -> syslog severity (informational ... critical)."""


_CONTROL = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
"""Control characters other than CR and LF (those are escaped, not replaced)."""
_NOT_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")
_NOT_SD_NAME = re.compile(r'[^\x21-\x7e]|[=\]"]')
BOM = "\ufeff"
"""RFC 5424 6.4: a MSG in UTF-8 starts with the byte order mark."""

HOSTNAME_MAX, APP_NAME_MAX, PROCID_MAX, MSGID_MAX, SD_NAME_MAX = 255, 48, 128, 32, 32
"""RFC 5424 6.2: the longest HOSTNAME, APP-NAME, PROCID and MSGID; 6.3.3: SD-NAME."""


def _no_controls(text: str) -> str:
    return _CONTROL.sub("\ufffd", text)


def _breaks(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def cef_header(value: str) -> str:
    """Escape a CEF header field: backslash and pipe (and CR/LF, which a header may not hold)."""
    return _breaks(_no_controls(value).replace("\\", "\\\\").replace("|", "\\|"))


def cef_value(value: object) -> str:
    """Escape a CEF extension value: backslash, equals sign and line breaks."""
    text = _no_controls(str(value)).replace("\\", "\\\\").replace("=", "\\=")
    return _breaks(text)


def header_field(value: str, max_len: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces (others become `_`), at most
    `max_len` characters, `-` (NILVALUE) when empty."""
    return _NOT_PRINTUSASCII.sub("_", value)[:max_len] or "-"


def sd_param_value(value: object) -> str:
    """Escape an RFC 5424 structured-data parameter value: `"`, `\\` and `]` (6.3.3)."""
    text = _no_controls(str(value)).replace("\\", "\\\\")
    return _breaks(text.replace('"', '\\"').replace("]", "\\]"))


def sd_name(value: str) -> str:
    """An SD-NAME: printable US-ASCII but `=`, space, `]` and `"`, at most 32 characters."""
    return _NOT_SD_NAME.sub("_", value)[:SD_NAME_MAX] or "_"


def structured_data(sd_id: str | None, params: list[tuple[str, object | None]]) -> str:
    """One SD-ELEMENT `[sd_id name="value" ...]` (None values left out), or `-` without an
    SD-ID."""
    if not sd_id:
        return "-"
    body = "".join(f' {sd_name(k)}="{sd_param_value(v)}"' for k, v in params if v is not None)
    return f"[{sd_name(sd_id)}{body}]"


def _ms(ts: float) -> int | None:
    """Milliseconds of a time, None when there are none to write (not a finite number, or one
    so large that its milliseconds are not)."""
    ms = ts * 1000
    return int(ms) if math.isfinite(ms) else None


def to_cef(alert: Alert) -> str:
    """The alert as one CEF event."""
    ext: list[tuple[str, object | None]] = [
        ("rt", _ms(alert.last_seen)),
        ("start", _ms(alert.first_seen)),
        ("end", _ms(alert.last_seen)),
        ("src", alert.device_ip),
        ("smac", alert.device_mac),
        ("shost", alert.device_name),
        ("dst", alert.dest_ip),
        ("dpt", alert.dest_port),
        ("dhost", alert.dest_name),
        ("proto", alert.proto),
        ("out", alert.bytes_out),
        ("in", alert.bytes_in),
        ("cnt", alert.flows),
        ("deviceDirection", 1),
        ("cat", alert.category),
        ("act", alert.status),
        ("externalId", alert.id),
        ("cs1Label", "vendor"),
        ("cs1", alert.vendor),
        ("cs2Label", "rule"),
        ("cs2", alert.rule_id),
        ("cs3Label", "destinationCountry"),
        ("cs3", alert.dest_country),
        ("cs4Label", "ldm"),
        ("cs4", alert.ldm),
        ("cn1Label", "destinationAsn"),
        ("cn1", alert.dest_asn),
        ("msg", alert.msg),
    ]
    extension = " ".join(f"{k}={cef_value(v)}" for k, v in ext if v is not None)
    header = "|".join(
        cef_header(x)
        for x in ("dronewatch", "dronewatch", __version__, alert.note, alert.msg[:512])
    )
    return f"CEF:0|{header}|{SEVERITY_SCORE.get(alert.severity, 5)}|{extension}"


def to_rfc5424(
    alert: Alert, *, app_name: str, facility: int, hostname: str, sd_id: str | None = None
) -> str:
    """An RFC 5424 message: PRI, version, timestamp, host, app, procid, msgid, structured data
    (with `sd_id`: the alert's id, note, addresses and destination name; else none), and the
    CEF event as the MSG."""
    pri = facility * 8 + SYSLOG_SEVERITY.get(alert.severity, 4)
    stamp = utc_time(alert.last_seen).isoformat(timespec="microseconds").replace("+00:00", "Z")
    sd = structured_data(
        sd_id,
        [
            ("id", alert.id),
            ("note", alert.note),
            ("src", alert.device_ip),
            ("dst", alert.dest_ip),
            ("dhost", alert.dest_name),
            ("cat", alert.category),
        ],
    )
    msg = to_cef(alert)
    if not msg.isascii():
        msg = BOM + msg
    head = " ".join(
        (
            header_field(hostname, HOSTNAME_MAX),
            header_field(app_name, APP_NAME_MAX),
            "-",
            header_field(alert.note, MSGID_MAX),
        )
    )
    return f"<{pri}>1 {stamp} {head} {sd} {msg}"


class SyslogSink:
    def __init__(self, config: SyslogSinkConfig) -> None:
        self.config = config
        self.name = f"syslog:{config.transport}://{config.host}:{config.port}"
        self.hostname = socket.gethostname()
        self._writer: asyncio.StreamWriter | None = None
        self._udp: asyncio.DatagramTransport | None = None

    def _message(self, alert: Alert) -> bytes:
        return to_rfc5424(
            alert,
            app_name=self.config.app_name,
            facility=self.config.facility,
            hostname=self.hostname,
            sd_id=self.config.sd_id,
        ).encode("utf-8")

    async def send(self, alert: Alert) -> None:
        data = self._message(alert)
        if self.config.transport == "udp":
            if self._udp is None:
                loop = asyncio.get_running_loop()
                self._udp, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, remote_addr=(self.config.host, self.config.port)
                )
            self._udp.sendto(data)
            return
        framed = str(len(data)).encode() + b" " + data
        for attempt in (1, 2):
            try:
                if self._writer is None or self._writer.is_closing():
                    _, self._writer = await asyncio.open_connection(
                        self.config.host, self.config.port
                    )
                self._writer.write(framed)
                await self._writer.drain()
                return
            except OSError:
                self._writer = None
                if attempt == 2:
                    raise

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._udp is not None:
            self._udp.close()
