"""DJI DroneID analyzer: frames built from the published layout, and fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.dji_droneid import (
    RADIANS_1E7,
    DjiDroneIdAnalyzer,
    DjiDroneIdRecord,
    decode_droneid,
)
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, make_beacon


def telemetry(
    serial: bytes = b"08RDD5H0020ABC", lat: float = 52.52, lon: float = 13.405, header: bool = True
) -> bytes:
    body = (
        struct.pack(
            "<BBHH16siihhhhhhhhiiB",
            0x10,
            2,
            7,
            0x0F,
            serial.ljust(16, b"\0"),
            int(lon * RADIANS_1E7),
            int(lat * RADIANS_1E7),
            120,
            45,
            300,
            400,
            -50,
            0,
            0,
            9000,
            int(13.4 * RADIANS_1E7),
            int(52.5 * RADIANS_1E7),
            16,
        )
        + b"\x04"
        + b"uuid"
    )
    return (b"\x58\x62\x13" if header else b"") + body


def beacon(payload: bytes) -> bytes:
    fixed = bytes(8) + b"\x64\x00\x01\x04"
    vendor = b"\x26\x37\x12" + payload
    return fixed + b"\x00\x00" + b"\xdd" + bytes([len(vendor)]) + vendor


@pytest.mark.parametrize("header", [True, False])
def test_telemetry(header: bool) -> None:
    """Serial, positions (radians x 1e7 to degrees), altitude, height, yaw, home, product."""
    t = decode_droneid(telemetry(header=header))
    assert t is not None
    assert (t.serial, t.alt_m, t.height_m, t.yaw_deg, t.product_type, t.uuid) == (
        "08RDD5H0020ABC",
        120,
        45,
        90.0,
        16,
        "uuid",
    )
    assert t.lat == pytest.approx(52.52, abs=1e-5) and t.lon == pytest.approx(13.405, abs=1e-5)
    assert t.home_lat == pytest.approx(52.5, abs=1e-5)


def test_zero_position_is_unknown() -> None:
    """A position of 0 (no GPS fix) is reported as unknown, not as 0,0."""
    t = decode_droneid(telemetry(lat=0.0, lon=0.0))
    assert t is not None and (t.lat, t.lon) == (None, None)


def test_user_info_subcommand_is_not_telemetry() -> None:
    """The user-entered information subcommand gives no telemetry."""
    assert decode_droneid(b"\x58\x62\x13\x11\x01") is None


@pytest.mark.parametrize("bad", [b"", b"\x58\x62\x13", b"\x10\x02\x00", b"\x42" + bytes(60)])
def test_bad_payloads(bad: bytes) -> None:
    """Empty, truncated and unknown-subcommand payloads are decode errors."""
    with pytest.raises(DecodeError):
        decode_droneid(bad)


def test_analyzer_summarises_per_transmitter() -> None:
    """Three beacons of one aircraft: one record with the last position and the speed."""
    ctx = RecordingContext()
    a = DjiDroneIdAnalyzer(ctx)
    for i in range(3):
        a.frame(make_beacon(beacon(telemetry(lat=52.52 + i * 0.001)), ts=float(i)))
    a.done()
    (rec,) = [r for r in ctx.records if isinstance(r, DjiDroneIdRecord)]
    assert (rec.frames, rec.serial, rec.last_ts, rec.speed_mps) == (3, "08RDD5H0020ABC", 2.0, 5.0)
    assert rec.lat == pytest.approx(52.522, abs=1e-5) and rec.vspeed_mps == -0.5


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_decoder_raises_only_decode_error(data: bytes) -> None:
    """Arbitrary payloads raise only DecodeError."""
    try:
        decode_droneid(data)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_analyzer_raises_nothing(payload: bytes) -> None:
    """Arbitrary DroneID elements and bodies raise nothing from the analyzer."""
    ctx = RecordingContext()
    a = DjiDroneIdAnalyzer(ctx)
    a.frame(make_beacon(beacon(payload[:240])))
    a.frame(make_beacon(payload))
    a.done()
