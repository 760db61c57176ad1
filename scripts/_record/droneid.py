"""Crafted DJI DroneID beacons: what a Wi-Fi monitor on channel 6 hears from two Wi-Fi-linked DJI
aircraft (a Mavic Air taking off and flying away, a Spark hovering) and a home access point.

No public capture of DroneID over Wi-Fi could be used, so the frames are BUILT here, field by field,
from the published layout (Department 13, "Anatomy of DJI's Drone Identification Implementation",
2017; Kismet's description of the element), never copied from a capture: a radiotap header (flags
with FCS, rate, channel, antenna signal, antenna), an 802.11 beacon (fixed fields, SSID, rates,
DS parameter set, TIM, ERP, extended rates, RSN for WPA2-PSK) and, from the aircraft, one
vendor-specific element (221) with DJI's OUI 26:37:12 and the vendor header 58 62 13:

    0x10 flight telemetry: version u8, sequence u16, state u16, serial 16 bytes ASCII, longitude
         and latitude i32 (radians x 1e7), altitude and height i16 (m), v_north, v_east, v_up i16
         (cm/s), pitch, roll, yaw i16 (centidegrees), home longitude and latitude i32, product
         type u8, UUID length u8 and UUID (20 bytes)
    0x11 flight information (entered by the pilot): serial 16 bytes, drone-id length u8 and
         drone id (10 bytes), purpose length u8 and purpose

Product types follow the public DroneID decoders' table (21 Spark, 24 Mavic Air). The Mavic Air
keeps DJI's defaults (no UUID, no flight information); the Spark's pilot opted in to both, so it
sends its UUID and, in every tenth beacon, the flight information. Serials, UUID, SSIDs, MACs (DJI's
OUI 60:60:1f for the aircraft) and the flights are made up. Every value comes from this script and
a fixed seed, so each run writes the same bytes.

    python scripts/_record/droneid.py pcaps/lab/dji_droneid.pcap
"""

from __future__ import annotations

import math
import random
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

START = 1781343000.0
"""2026-06-13 09:30:00 UTC, the capture's first instant (fixed: the bytes do not depend on when
the script runs)."""
SECONDS = 24.0
BEACON_TU = 102.4e-3
"""A beacon interval of 100 TU (1 TU = 1024 us)."""
CHANNEL_MHZ = 2437
"""Channel 6."""
LINKTYPE_RADIOTAP = 127

DJI_OUI = b"\x26\x37\x12"
DRONEID_HEADER = b"\x58\x62\x13"
SUB_TELEMETRY = 0x10
SUB_FLIGHT_INFO = 0x11
PRODUCT_SPARK = 21
PRODUCT_MAVIC_AIR = 24

# DroneID state flags (Kismet's reading; the higher ones are marked there as guesses).
SERIAL_VALID, PRIVATE_OFF, HOME_SET, UUID_SET = 0x01, 0x02, 0x04, 0x08
MOTOR_ON, IN_AIR, GPS_VALID, ALT_VALID = 0x10, 0x20, 0x40, 0x80
HEIGHT_VALID, HORIZ_VALID, VUP_VALID, ATTITUDE_VALID = 0x100, 0x200, 0x400, 0x800

M_PER_DEG_LAT = 111_195.0


@dataclass(frozen=True)
class Telemetry:
    """One aircraft's state at one instant, in the units of the element."""

    state: int
    lat: float
    lon: float
    height_m: float
    v_north_cms: int = 0
    v_east_cms: int = 0
    v_up_cms: int = 0
    pitch_cdeg: int = 0
    yaw_deg: float = 0.0
    home: tuple[float, float] | None = None
    """(lat, lon) of the home point; None before it is set."""


@dataclass(frozen=True)
class Aircraft:
    """A DroneID transmitter: its identity and where it is at time t (seconds from START)."""

    mac: bytes
    ssid: bytes
    serial: bytes
    product: int
    ground_alt_m: int
    uuid: bytes
    flight_info: tuple[bytes, bytes] | None
    """(drone id, purpose) the pilot entered, or None (DJI's default: not sent)."""
    first_s: float
    """When the monitor first hears it."""
    phase_s: float
    """Its beacon times are first_s + phase_s + n x BEACON_TU."""
    boot_s: float
    """How long it had been up at START (its TSF counter)."""
    fly: Callable[[float], Telemetry]
    rssi: Callable[[float], float]


def _offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (
        lat + north_m / M_PER_DEG_LAT,
        lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat))),
    )


MAVIC_HOME = (47.397800, 8.545600)
SPARK_SPOT = _offset(*MAVIC_HOME, -30.0, -250.0)


def mavic_air(t: float) -> Telemetry:
    """No GPS fix for 2 s; home set; motors on at 4 s; climbs at 4 m/s to 20 m from 5 s; then flies
    north-east at 8 m/s, nose 8 degrees down."""
    base = SERIAL_VALID | PRIVATE_OFF
    if t < 2.0:
        return Telemetry(base, 0.0, 0.0, 0.0)
    ready = base | HOME_SET | GPS_VALID | ALT_VALID | HEIGHT_VALID
    if t < 4.0:
        return Telemetry(ready, *MAVIC_HOME, 0.0, home=MAVIC_HOME)
    if t < 5.0:
        return Telemetry(ready | MOTOR_ON, *MAVIC_HOME, 0.0, home=MAVIC_HOME)
    flying = ready | MOTOR_ON | IN_AIR | HORIZ_VALID | VUP_VALID | ATTITUDE_VALID
    if t < 10.0:
        return Telemetry(flying, *MAVIC_HOME, 4.0 * (t - 5.0), v_up_cms=400, home=MAVIC_HOME)
    leg = 8.0 * (t - 10.0) / math.sqrt(2.0)
    return Telemetry(
        flying,
        *_offset(*MAVIC_HOME, leg, leg),
        20.0,
        v_north_cms=566,
        v_east_cms=566,
        pitch_cdeg=-800,
        yaw_deg=45.0,
        home=MAVIC_HOME,
    )


def spark(t: float) -> Telemetry:
    """Hovering at 15 m, turning slowly on the spot."""
    state = (
        SERIAL_VALID | PRIVATE_OFF | HOME_SET | UUID_SET | MOTOR_ON | IN_AIR | GPS_VALID
        | ALT_VALID | HEIGHT_VALID | HORIZ_VALID | VUP_VALID | ATTITUDE_VALID
    )  # fmt: skip
    yaw = (10.0 * t + 180.0) % 360.0
    return Telemetry(state, *SPARK_SPOT, 15.0, yaw_deg=yaw, home=SPARK_SPOT)


def _mavic_rssi(t: float) -> float:
    moved = 0.0 if t < 10.0 else 8.0 * (t - 10.0)
    return -38.0 - 20.0 * math.log10(1.0 + moved / 10.0)


AIRCRAFT = (
    Aircraft(
        mac=bytes.fromhex("60601f5e21a4"),
        ssid=b"MavicAir-5E21A4",
        serial=b"08QDE3R00209TF",
        product=PRODUCT_MAVIC_AIR,
        ground_alt_m=488,
        uuid=b"",
        flight_info=None,
        first_s=0.0,
        phase_s=0.013,
        boot_s=412.5,
        fly=mavic_air,
        rssi=_mavic_rssi,
    ),
    Aircraft(
        mac=bytes.fromhex("60601f710b3d"),
        ssid=b"Spark-710B3D",
        serial=b"0K1DE5H0030KC7",
        product=PRODUCT_SPARK,
        ground_alt_m=491,
        uuid=b"48213977",
        flight_info=(b"LAB-SPK-07", b"Roof inspection"),
        first_s=5.0,
        phase_s=0.061,
        boot_s=1260.0,
        fly=spark,
        rssi=lambda t: -71.0,
    ),
)

HOME_AP = (bytes.fromhex("021a11f04c7e"), b"HomeNet-2G", 0.037, 86_400.0)
"""(MAC, SSID, phase, uptime) of a home access point: beacons with no DroneID."""


def _rad(deg: float) -> int:
    """Degrees as the element's radians x 1e7."""
    return round(math.radians(deg) * 1e7)


def telemetry_element(a: Aircraft, seq: int, t: Telemetry) -> bytes:
    """The vendor-specific element (id, length, OUI, header, 0x10 payload) of one beacon."""
    home_lat, home_lon = t.home or (0.0, 0.0)
    yaw = round(t.yaw_deg * 100)
    yaw = yaw - 36000 if yaw > 18000 else yaw
    body = struct.pack(
        "<BBHH16siihhhhhhhhiiBB20s",
        SUB_TELEMETRY,
        2,
        seq & 0xFFFF,
        t.state,
        a.serial.ljust(16, b"\x00"),
        _rad(t.lon),
        _rad(t.lat),
        a.ground_alt_m + round(t.height_m) if t.home else 0,
        round(t.height_m),
        t.v_north_cms,
        t.v_east_cms,
        t.v_up_cms,
        t.pitch_cdeg,
        0,
        yaw,
        _rad(home_lon),
        _rad(home_lat),
        a.product,
        len(a.uuid),
        a.uuid.ljust(20, b"\x00"),
    )
    return _element(221, DJI_OUI + DRONEID_HEADER + body)


def flight_info_element(a: Aircraft) -> bytes:
    """The vendor-specific element carrying the pilot's flight information (0x11)."""
    assert a.flight_info is not None
    drone_id, purpose = a.flight_info
    body = (
        bytes([SUB_FLIGHT_INFO])
        + a.serial.ljust(16, b"\x00")
        + bytes([len(drone_id)])
        + drone_id.ljust(10, b"\x00")
        + bytes([len(purpose)])
        + purpose
    )
    return _element(221, DJI_OUI + DRONEID_HEADER + body)


def _element(eid: int, data: bytes) -> bytes:
    return bytes([eid, len(data)]) + data


def beacon(mac: bytes, ssid: bytes, tsf_us: int, seq: int, extra: bytes = b"") -> bytes:
    """An 802.11 beacon (header, fixed fields, elements) of a WPA2-PSK network on channel 6."""
    header = struct.pack("<HH6s6s6sH", 0x0080, 0, b"\xff" * 6, mac, mac, (seq & 0xFFF) << 4)
    fixed = struct.pack("<QHH", tsf_us, 100, 0x0431)  # ESS, privacy, short preamble and slot
    rsn = bytes.fromhex("0100000fac040100000fac040100000fac020c00")  # CCMP, PSK
    elements = (
        _element(0, ssid)
        + _element(1, bytes.fromhex("8284 8b96 0c12 1824"))
        + _element(3, bytes([6]))
        + _element(5, bytes.fromhex("00010000"))
        + _element(42, b"\x00")
        + _element(50, bytes.fromhex("3048606c"))
        + _element(48, rsn)
    )
    return header + fixed + elements + extra


def radiotap(frame: bytes, signal_dbm: int) -> bytes:
    """The frame with a radiotap header (flags: FCS at end; 1 Mb/s; channel 6, 2 GHz CCK; antenna
    signal; antenna 0) and its FCS appended."""
    present = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 11)
    head = struct.pack("<BBHI", 0, 0, 16, present)
    head += struct.pack("<BBHHbB", 0x10, 2, CHANNEL_MHZ, 0x00A0, signal_dbm, 0)
    return head + frame + struct.pack("<I", zlib.crc32(frame) & 0xFFFFFFFF)


def frames() -> list[tuple[float, bytes]]:
    """Every frame of the capture, (seconds from START, bytes), in time order."""
    rng = random.Random(0xD11D)
    out: list[tuple[float, bytes]] = []
    for a in AIRCRAFT:
        t = a.first_s + a.phase_s
        n = 0
        while t < SECONDS:
            tsf = round((a.boot_s + t) * 1e6)
            info = a.flight_info is not None and n % 10 == 9
            element = flight_info_element(a) if info else telemetry_element(a, n, a.fly(t))
            signal = round(a.rssi(t) + rng.uniform(-2.0, 2.0))
            out.append((t, radiotap(beacon(a.mac, a.ssid, tsf, n, element), signal)))
            n += 1
            t += BEACON_TU
    mac, ssid, phase, uptime = HOME_AP
    t, n = phase, 0
    while t < SECONDS:
        signal = round(-60.0 + rng.uniform(-1.5, 1.5))
        out.append((t, radiotap(beacon(mac, ssid, round((uptime + t) * 1e6), n), signal)))
        n += 1
        t += BEACON_TU
    return sorted(out, key=lambda f: f[0])


def write(path: Path) -> int:
    """Write the capture (classic pcap, radiotap link type) to `path`; returns its frame count."""
    records = frames()
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RADIOTAP))
        for t, data in records:
            usec = round((START + t) * 1e6)
            fh.write(
                struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(data), len(data))
            )
            fh.write(data)
    return len(records)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "dji_droneid.pcap")
    print(f"wrote {out} ({write(out)} frames)")
