"""DJI DroneID in Wi-Fi beacons (Wi-Fi-linked DJI aircraft such as the Mavic Air and Spark), into
dji_droneid.jsonl.

The aircraft adds a vendor-specific element (id 221) with DJI's OUI 26:37:12 to its beacons. Its
payload, as described by Department 13's "Anatomy of DJI's Drone Identification Implementation"
(2017) and read by Kismet's DJI DroneID parser, is: a 3-byte vendor header (0x58 0x62 0x13), then

    subcommand u8      0x10 flight telemetry, 0x11 user-entered flight information
    version    u8
    sequence   u16 LE
    state      u16 LE  state flags (bit 0: serial valid ... ), not decoded further
    serial     16 bytes ASCII, NUL-padded
    longitude  i32 LE  radians * 1e7 (degrees = value / 174533.0)
    latitude   i32 LE  radians * 1e7
    altitude   i16 LE  metres
    height     i16 LE  metres above take-off
    v_north, v_east, v_up   i16 LE each, cm/s
    pitch, roll, yaw        i16 LE each (yaw in centidegrees)
    home longitude, home latitude   i32 LE each, radians * 1e7
    product type u8
    uuid length u8, uuid (up to 20 bytes)

Payloads without the 3-byte vendor header are accepted too. No public capture of DroneID was
available to this project, so the decoder is tested on frames built from that layout; positions of
0 or outside the valid range are reported as unknown. Like Remote ID, these are the aircraft's
broadcasts, never data leaving a ground station.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass
from typing import ClassVar

from dronewatch.core.flow import SUBTYPE_BEACON, SUBTYPE_PROBE_RESP, Packet, mac_str
from dronewatch.core.hooks import Context, FrameInterest, Record
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

DJI_OUI = b"\x26\x37\x12"
VENDOR_HEADER = b"\x58\x62\x13"
SUB_TELEMETRY = 0x10
SUB_USER_INFO = 0x11
_TELEMETRY = struct.Struct("<BBHH16siihhhhhhhhii B")
RADIANS_1E7 = 1e7 * math.pi / 180.0
"""Raw units per degree: the raw value is radians x 1e7 (174532.925...)."""


@dataclass(slots=True)
class DroneIdTelemetry:
    version: int
    sequence: int
    state: int
    serial: str | None
    lat: float | None
    lon: float | None
    alt_m: int
    height_m: int
    v_north_cms: int
    v_east_cms: int
    v_up_cms: int
    yaw_deg: float
    home_lat: float | None
    home_lon: float | None
    product_type: int
    uuid: str | None


def _angle(raw: int, limit: float) -> float | None:
    value = raw / RADIANS_1E7
    return round(value, 7) if raw != 0 and abs(value) <= limit else None


def decode_droneid(payload: bytes) -> DroneIdTelemetry | None:
    """The telemetry of a DroneID element payload (after the OUI); None for other subcommands."""
    if payload.startswith(VENDOR_HEADER):
        payload = payload[len(VENDOR_HEADER) :]
    if not payload:
        raise DecodeError("empty DroneID element")
    if payload[0] != SUB_TELEMETRY:
        if payload[0] == SUB_USER_INFO:
            return None
        raise DecodeError(f"unknown DroneID subcommand 0x{payload[0]:02x}")
    if len(payload) < _TELEMETRY.size:
        raise DecodeError("DroneID telemetry shorter than its layout")
    (
        _,
        version,
        seq,
        state,
        serial,
        lon,
        lat,
        alt,
        height,
        vn,
        ve,
        vu,
        _pitch,
        _roll,
        yaw,
        home_lon,
        home_lat,
        product,
    ) = _TELEMETRY.unpack_from(payload)
    uuid = None
    pos = _TELEMETRY.size
    if pos < len(payload):
        n = payload[pos]
        raw = payload[pos + 1 : pos + 1 + min(n, 20)]
        uuid = raw.split(b"\x00", 1)[0].decode("ascii", "replace") or None
    text = serial.split(b"\x00", 1)[0].decode("ascii", "replace").strip()
    return DroneIdTelemetry(
        version,
        seq,
        state,
        text or None,
        _angle(lat, 90.0),
        _angle(lon, 180.0),
        alt,
        height,
        vn,
        ve,
        vu,
        yaw / 100.0,
        _angle(home_lat, 90.0),
        _angle(home_lon, 180.0),
        product,
        uuid,
    )


@dataclass(frozen=True, slots=True)
class DjiDroneIdRecord(Record):
    """One DJI aircraft broadcasting DroneID: its serial and the last position sent."""

    log: ClassVar[str] = "dji_droneid"
    mac: str
    last_ts: float
    frames: int
    serial: str | None = None
    product_type: int | None = None
    lat: float | None = None
    lon: float | None = None
    alt_m: int | None = None
    height_m: int | None = None
    speed_mps: float | None = None
    """Horizontal speed from the north and east components."""
    vspeed_mps: float | None = None
    yaw_deg: float | None = None
    home_lat: float | None = None
    home_lon: float | None = None
    """The home point, usually the pilot's take-off position."""
    uuid: str | None = None


@dataclass(slots=True)
class _Seen:
    first_ts: float
    last_ts: float
    frames: int = 0
    last: DroneIdTelemetry | None = None


@dataclass(frozen=True, slots=True)
class DjiDroneIdOptions:
    """Tunables of the DJI DroneID analyzer."""

    max_aircraft: int = 1024
    """Transmitters tracked at once; beacons of further ones are skipped."""


class DjiDroneIdAnalyzer:
    """Collect DJI DroneID beacons per transmitter into dji_droneid.jsonl records."""

    name = "dji_droneid"
    frame_interest = FrameInterest(frozenset({DJI_OUI}))
    """Beacons and probe responses with a DJI vendor element."""

    def __init__(self, ctx: Context, options: DjiDroneIdOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or DjiDroneIdOptions()
        self._seen: dict[str, _Seen] = {}

    def frame(self, pkt: Packet) -> None:
        f = pkt.dot11
        if f is None or f.subtype not in (SUBTYPE_BEACON, SUBTYPE_PROBE_RESP):
            return
        for head, rest in f.vendor_elements():
            if head[:3] != DJI_OUI:
                continue
            try:
                telemetry = decode_droneid(head[3:] + rest)
            except DecodeError as exc:
                logger.debug("frame %d: DroneID not decoded: %s", pkt.frame, exc)
                continue
            mac = mac_str(f.addr2)
            seen = self._seen.get(mac)
            if seen is None:
                if len(self._seen) >= self.options.max_aircraft:
                    return
                seen = self._seen[mac] = _Seen(pkt.ts, pkt.ts)
            seen.frames += 1
            seen.last_ts = pkt.ts
            if telemetry is not None:
                seen.last = telemetry

    def done(self) -> None:
        for mac, s in sorted(self._seen.items(), key=lambda kv: kv[1].first_ts):
            t = s.last
            self.ctx.emit(
                DjiDroneIdRecord(
                    ts=s.first_ts,
                    mac=mac,
                    last_ts=s.last_ts,
                    frames=s.frames,
                    serial=t.serial if t else None,
                    product_type=t.product_type if t else None,
                    lat=t.lat if t else None,
                    lon=t.lon if t else None,
                    alt_m=t.alt_m if t else None,
                    height_m=t.height_m if t else None,
                    speed_mps=round(math.hypot(t.v_north_cms, t.v_east_cms) / 100, 2)
                    if t
                    else None,
                    vspeed_mps=t.v_up_cms / 100 if t else None,
                    yaw_deg=t.yaw_deg if t else None,
                    home_lat=t.home_lat if t else None,
                    home_lon=t.home_lon if t else None,
                    uuid=t.uuid if t else None,
                )
            )
        self._seen.clear()
