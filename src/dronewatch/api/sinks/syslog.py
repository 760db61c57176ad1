"""A sink that sends each alert as an RFC 5424 syslog message whose text is a CEF event.

UDP sends one datagram per message; TCP frames messages by octet counting (RFC 6587 3.4.1) and
reconnects after a failure.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dronewatch import __version__
from dronewatch.judge.alert import SEVERITY_SCORE, Alert

if TYPE_CHECKING:
    from dronewatch.api.sinks.config import SyslogSinkConfig

SYSLOG_SEVERITY = {"info": 6, "low": 5, "medium": 4, "high": 3, "critical": 2}
"""Alert severity -> syslog severity (informational ... critical)."""


def cef_header(value: str) -> str:
    """Escape a CEF header field: backslash and pipe."""
    return value.replace("\\", "\\\\").replace("|", "\\|")


def cef_value(value: object) -> str:
    """Escape a CEF extension value: backslash, equals sign and line breaks."""
    text = str(value)
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def to_cef(alert: Alert) -> str:
    """The alert as one CEF event."""
    ext: list[tuple[str, object | None]] = [
        ("rt", int(alert.last_seen * 1000)),
        ("start", int(alert.first_seen * 1000)),
        ("end", int(alert.last_seen * 1000)),
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


def to_rfc5424(alert: Alert, *, app_name: str, facility: int, hostname: str) -> str:
    """An RFC 5424 message: PRI, version, timestamp, host, app, procid, msgid, no SD, CEF text."""
    pri = facility * 8 + SYSLOG_SEVERITY.get(alert.severity, 4)
    stamp = datetime.fromtimestamp(alert.last_seen, UTC).isoformat(timespec="microseconds")
    stamp = stamp.replace("+00:00", "Z")
    return f"<{pri}>1 {stamp} {hostname or '-'} {app_name} - {alert.note} - {to_cef(alert)}"


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
