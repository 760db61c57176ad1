"""ASTM F3411 / ASD-STAN prEN 4709-002 Remote ID broadcast over Wi-Fi, into remoteid.jsonl.

The aircraft broadcasts Open Drone ID messages in 802.11 frames:

- beacons (and probe responses) with a vendor-specific element (id 221): OUI FA:0B:BC (ASD-STAN),
  or 90:3A:E6 in the early drafts and the opendroneid samples, vendor type 0x0D, a message counter,
  then a message pack;
- Wi-Fi NAN service discovery frames (public action frames of the WFA OUI 50:6F:9A), whose service
  info holds the same counter and message pack; the pack is found by its header.

A message pack is a header byte (type 0xF, protocol version), the message size (25) and a count,
then `count` messages of 25 bytes. Decoded: Basic ID (ID type, UA type, UAS ID / serial), Location
(status, direction, speed, vertical speed, latitude, longitude, pressure and geodetic altitude,
height), Self-ID (text), System (operator position) and Operator ID; Authentication is counted.
Encodings follow ASTM F3411-22a section 5.4 as published with opendroneid-core-c (scales: speed
0.25 m/s or 0.75 m/s above 63.75, vertical speed 0.5 m/s, altitudes 0.5 m with -1000 m offset,
latitude/longitude 1e-7 degrees).

These are the aircraft's own broadcasts, required by regulation: they are reported, never treated
as data leaving a ground station. One record is written per (transmitter, UAS ID) when the source
ends, with the last position seen.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from dronewatch.core.flow import (
    SUBTYPE_ACTION,
    SUBTYPE_BEACON,
    SUBTYPE_PROBE_RESP,
    Packet,
    mac_str,
)
from dronewatch.core.hooks import Context, FrameInterest, Record
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

ODID_OUIS = {b"\xfa\x0b\xbc": "fa:0b:bc", b"\x90\x3a\xe6": "90:3a:e6"}
ODID_VENDOR_TYPE = 0x0D
WFA_OUI = b"\x50\x6f\x9a"
MESSAGE_SIZE = 25
MSG_BASIC_ID, MSG_LOCATION, MSG_AUTH, MSG_SELF_ID, MSG_SYSTEM, MSG_OPERATOR_ID = range(6)
MSG_PACK = 0xF

ID_TYPES = {
    0: "none",
    1: "serial_number",
    2: "caa_registration",
    3: "utm_assigned",
    4: "specific_session",
}
UA_TYPES = {
    0: "none",
    1: "aeroplane",
    2: "helicopter_or_multirotor",
    3: "gyroplane",
    4: "hybrid_lift",
    5: "ornithopter",
    6: "glider",
    7: "kite",
    8: "free_balloon",
    9: "captive_balloon",
    10: "airship",
    11: "free_fall_parachute",
    12: "rocket",
    13: "tethered_powered_aircraft",
    14: "ground_obstacle",
    15: "other",
}
STATUSES = {0: "undeclared", 1: "ground", 2: "airborne", 3: "emergency", 4: "remote_id_failure"}


@dataclass(slots=True)
class OdidLocation:
    status: str
    direction_deg: float | None
    speed_mps: float | None
    vspeed_mps: float | None
    lat: float | None
    lon: float | None
    pressure_alt_m: float | None
    geo_alt_m: float | None
    height_m: float | None


@dataclass(slots=True)
class OdidMessages:
    """What one message pack (or single message) says."""

    counter: int | None = None
    id_type: str | None = None
    ua_type: str | None = None
    uas_id: str | None = None
    location: OdidLocation | None = None
    self_id: str | None = None
    operator_id: str | None = None
    operator_lat: float | None = None
    operator_lon: float | None = None
    auth_pages: int = 0


def _text(raw: bytes) -> str | None:
    text = raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()
    return text or None


def _alt(raw: int) -> float | None:
    return None if raw == 0 else raw * 0.5 - 1000.0


def _coord(raw: int, limit: float) -> float | None:
    value = raw / 1e7
    return value if raw != 0 and abs(value) <= limit else None


def decode_location(msg: bytes) -> OdidLocation:
    """A Location/Vector message (25 bytes)."""
    status, direction, speed, vspeed, lat, lon, p_alt, g_alt, height = struct.unpack_from(
        "<BBBbiiHHH", msg, 1
    )
    ew, mult = status & 0x02, status & 0x01
    d = None if direction > 179 else float(direction + (180 if ew else 0))
    s = None if speed == 255 else (speed * 0.75 + 63.75 if mult else speed * 0.25)
    v = None if vspeed == 126 else vspeed * 0.5  # 126 (63 m/s) means unknown
    return OdidLocation(
        STATUSES.get(status >> 4, str(status >> 4)),
        d,
        s,
        v,
        _coord(lat, 90.0),
        _coord(lon, 180.0),
        _alt(p_alt),
        _alt(g_alt),
        _alt(height),
    )


def decode_message(msg: bytes, out: OdidMessages) -> None:
    """Fold one 25-byte message into `out`."""
    if len(msg) < MESSAGE_SIZE:
        raise DecodeError("Remote ID message shorter than 25 bytes")
    kind = msg[0] >> 4
    if kind == MSG_BASIC_ID:
        out.id_type = ID_TYPES.get(msg[1] >> 4, str(msg[1] >> 4))
        out.ua_type = UA_TYPES.get(msg[1] & 0x0F, str(msg[1] & 0x0F))
        out.uas_id = _text(msg[2:22]) or out.uas_id
    elif kind == MSG_LOCATION:
        out.location = decode_location(msg)
    elif kind == MSG_AUTH:
        out.auth_pages += 1
    elif kind == MSG_SELF_ID:
        out.self_id = _text(msg[2:25])
    elif kind == MSG_SYSTEM:
        lat, lon = struct.unpack_from("<ii", msg, 2)
        out.operator_lat, out.operator_lon = _coord(lat, 90.0), _coord(lon, 180.0)
    elif kind == MSG_OPERATOR_ID:
        out.operator_id = _text(msg[2:22])
    else:
        raise DecodeError(f"unknown Remote ID message type {kind}")


def decode_pack(data: bytes, pos: int = 0) -> OdidMessages:
    """A message pack (or a single message) starting at `pos`."""
    if pos >= len(data):
        raise DecodeError("empty Remote ID payload")
    out = OdidMessages()
    if data[pos] >> 4 != MSG_PACK:
        decode_message(data[pos : pos + MESSAGE_SIZE], out)
        return out
    if pos + 3 > len(data):
        raise DecodeError("truncated message pack header")
    size, count = data[pos + 1], data[pos + 2]
    if size != MESSAGE_SIZE or not 1 <= count <= 10:
        raise DecodeError(f"bad message pack: size {size}, count {count}")
    body = data[pos + 3 : pos + 3 + size * count]
    if len(body) < size * count:
        raise DecodeError("message pack shorter than its count")
    for i in range(count):
        decode_message(body[i * size : (i + 1) * size], out)
    return out


def ssid_of(body: bytes) -> str | None:
    """The SSID element of a beacon body (after its 12 fixed bytes)."""
    pos = 12
    while pos + 2 <= len(body):
        eid, length = body[pos], body[pos + 1]
        if eid == 0:
            return _text(body[pos + 2 : pos + 2 + length]) if length else None
        pos += 2 + length
    return None


def find_pack(data: bytes) -> int:
    """Where a message pack header (0xF?, 25, 1..10, whole messages) is in `data`, or -1."""
    for pos in range(len(data) - 2):
        if data[pos] >> 4 == MSG_PACK and data[pos + 1] == MESSAGE_SIZE:
            count = data[pos + 2]
            if 1 <= count <= 10 and pos + 3 + count * MESSAGE_SIZE <= len(data):
                return pos
    return -1


@dataclass(frozen=True, slots=True)
class RemoteIdRecord(Record):
    """One aircraft broadcasting Remote ID: its identity and the last position it sent."""

    log: ClassVar[str] = "remoteid"
    mac: str
    """Transmitter address."""
    transport: str
    """beacon, nan, or beacon+nan."""
    oui: str
    last_ts: float
    frames: int
    serial: str | None = None
    """The UAS ID (a serial number when id_type is serial_number)."""
    id_type: str | None = None
    ua_type: str | None = None
    operator_id: str | None = None
    self_id: str | None = None
    status: str | None = None
    lat: float | None = None
    lon: float | None = None
    geo_alt_m: float | None = None
    pressure_alt_m: float | None = None
    height_m: float | None = None
    speed_mps: float | None = None
    vspeed_mps: float | None = None
    direction_deg: float | None = None
    operator_lat: float | None = None
    operator_lon: float | None = None
    ssid: str | None = None
    auth_pages: int = 0


@dataclass(slots=True)
class _Aircraft:
    first_ts: float
    transport: str
    oui: str
    last_ts: float = 0.0
    frames: int = 0
    ssid: str | None = None
    seen: OdidMessages = field(default_factory=OdidMessages)


@dataclass(frozen=True, slots=True)
class RemoteIdOptions:
    max_aircraft: int = 1024
    """Transmitters tracked at once; beyond that new ones are counted only."""


class RemoteIdAnalyzer:
    """Collect Remote ID broadcasts per transmitter into remoteid.jsonl records."""

    name = "remoteid"
    frame_interest = FrameInterest(frozenset(ODID_OUIS), action=True)
    """Beacons and probe responses with an ASTM F3411 element, and NAN action frames."""

    def __init__(self, ctx: Context, options: RemoteIdOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or RemoteIdOptions()
        self._aircraft: dict[str, _Aircraft] = {}
        self.overflow = 0

    def frame(self, pkt: Packet) -> None:
        f = pkt.dot11
        if f is None:
            return
        try:
            if f.subtype in (SUBTYPE_BEACON, SUBTYPE_PROBE_RESP):
                self._beacon(pkt)
            elif f.subtype == SUBTYPE_ACTION:
                self._action(pkt)
        except DecodeError as exc:
            logger.debug("frame %d: Remote ID not decoded: %s", pkt.frame, exc)

    def _beacon(self, pkt: Packet) -> None:
        assert pkt.dot11 is not None
        body = pkt.dot11.body
        for head, rest in pkt.dot11.vendor_elements():
            oui = ODID_OUIS.get(head[:3])
            if oui is None or head[3] != ODID_VENDOR_TYPE or not rest:
                continue
            msgs = decode_pack(rest, 1)
            msgs.counter = rest[0]
            self._fold(pkt, "beacon", oui, msgs, ssid_of(body))

    def _action(self, pkt: Packet) -> None:
        assert pkt.dot11 is not None
        body = pkt.dot11.body
        # Public action (category 4), vendor specific (9), WFA OUI, NAN (0x13).
        if len(body) < 6 or body[0] != 4 or body[1] != 9 or body[2:5] != WFA_OUI:
            return
        if body[5] != 0x13:
            return
        pos = find_pack(body[6:])
        if pos < 0:
            return
        msgs = decode_pack(body[6:], pos)
        self._fold(pkt, "nan", "50:6f:9a", msgs, None)

    def _fold(
        self, pkt: Packet, transport: str, oui: str, msgs: OdidMessages, ssid: str | None
    ) -> None:
        assert pkt.dot11 is not None
        mac = mac_str(pkt.dot11.addr2)
        a = self._aircraft.get(mac)
        if a is None:
            if len(self._aircraft) >= self.options.max_aircraft:
                self.overflow += 1
                return
            a = self._aircraft[mac] = _Aircraft(pkt.ts, transport, oui)
        a.frames += 1
        a.last_ts = pkt.ts
        if transport not in a.transport.split("+"):
            a.transport = "+".join(sorted({*a.transport.split("+"), transport}))
        a.ssid = ssid or a.ssid
        seen = a.seen
        for name in (
            "id_type",
            "ua_type",
            "uas_id",
            "location",
            "self_id",
            "operator_id",
            "operator_lat",
            "operator_lon",
        ):
            value = getattr(msgs, name)
            if value is not None:
                setattr(seen, name, value)
        seen.auth_pages += msgs.auth_pages

    def done(self) -> None:
        for mac, a in sorted(self._aircraft.items(), key=lambda kv: kv[1].first_ts):
            s, loc = a.seen, a.seen.location
            self.ctx.emit(
                RemoteIdRecord(
                    ts=a.first_ts,
                    mac=mac,
                    transport=a.transport,
                    oui=a.oui,
                    last_ts=a.last_ts,
                    frames=a.frames,
                    serial=s.uas_id,
                    id_type=s.id_type,
                    ua_type=s.ua_type,
                    operator_id=s.operator_id,
                    self_id=s.self_id,
                    status=loc.status if loc else None,
                    lat=loc.lat if loc else None,
                    lon=loc.lon if loc else None,
                    geo_alt_m=loc.geo_alt_m if loc else None,
                    pressure_alt_m=loc.pressure_alt_m if loc else None,
                    height_m=loc.height_m if loc else None,
                    speed_mps=loc.speed_mps if loc else None,
                    vspeed_mps=loc.vspeed_mps if loc else None,
                    direction_deg=loc.direction_deg if loc else None,
                    operator_lat=s.operator_lat,
                    operator_lon=s.operator_lon,
                    ssid=a.ssid,
                    auth_pages=s.auth_pages,
                )
            )
        self._aircraft.clear()
