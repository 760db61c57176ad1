"""Remote ID analyzer: message decoding with byte literals, the opendroneid captures, fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.remoteid import (
    OdidMessages,
    RemoteIdAnalyzer,
    RemoteIdRecord,
    decode_location,
    decode_message,
    decode_pack,
    find_pack,
)
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, capture_records, make_beacon
from tests.pcaps import THIRD_PARTY

ODID = THIRD_PARTY / "opendroneid"


def basic_id(serial: str, id_type: int = 1, ua_type: int = 2) -> bytes:
    return bytes([0x02, (id_type << 4) | ua_type]) + serial.encode().ljust(20, b"\0") + bytes(3)


def location(
    lat: float,
    lon: float,
    *,
    speed: int = 40,
    direction: int = 90,
    ew: bool = False,
    height: float = 50.0,
) -> bytes:
    status = (2 << 4) | (0x02 if ew else 0)
    alt = int((height + 1000) / 0.5)
    body = struct.pack(
        "<BBBbiiHHH", status, direction, speed, 4, int(lat * 1e7), int(lon * 1e7), alt, alt, alt
    )
    return bytes([0x12]) + body + bytes(25 - 1 - len(body))


def pack(*messages: bytes) -> bytes:
    return bytes([0xF2, 25, len(messages)]) + b"".join(messages)


def beacon_with(oui: bytes, payload: bytes, ssid: bytes = b"DRONE") -> bytes:
    fixed = bytes(8) + b"\x64\x00\x01\x04"
    ie = b"\x00" + bytes([len(ssid)]) + ssid
    vendor = oui + b"\x0d" + payload
    return fixed + ie + b"\xdd" + bytes([len(vendor)]) + vendor


def test_basic_id() -> None:
    """Basic ID: ID type, UA type and the serial number."""
    out = OdidMessages()
    decode_message(basic_id("1581F5FHD22AB00D0123"), out)
    assert (out.id_type, out.ua_type, out.uas_id) == (
        "serial_number",
        "helicopter_or_multirotor",
        "1581F5FHD22AB00D0123",
    )


def test_location_scales() -> None:
    """Location: 1e-7 degrees, 0.25 m/s speed, direction east/west segment, 0.5 m altitudes."""
    loc = decode_location(location(50.123, 8.456, speed=40, direction=30, ew=True, height=50.0))
    assert (loc.lat, loc.lon, loc.speed_mps, loc.direction_deg) == (50.123, 8.456, 10.0, 210.0)
    assert (loc.height_m, loc.vspeed_mps, loc.status) == (50.0, 2.0, "airborne")


def test_message_pack_of_several_messages() -> None:
    """A pack of Basic ID, Location and Operator ID folds into one result."""
    op = bytes([0x52, 0]) + b"FIN87astrdge12k8".ljust(20, b"\0") + bytes(3)
    out = decode_pack(pack(basic_id("SN1"), location(1.0, 2.0), op))
    assert (out.uas_id, out.operator_id, out.location.lat) == ("SN1", "FIN87astrdge12k8", 1.0)


@pytest.mark.parametrize(
    "bad",
    [
        bytes([0xF2, 24, 1]) + bytes(24),
        bytes([0xF2, 25, 2]) + bytes(25),
        bytes([0xF2, 25, 0]),
        bytes([0x72]) + bytes(24),
        b"\x02",
    ],
)
def test_bad_packs(bad: bytes) -> None:
    """Wrong message size, short packs, a zero count, unknown types and short messages fail."""
    with pytest.raises(DecodeError):
        decode_pack(bad)


def test_find_pack_in_nan_service_info() -> None:
    """The message pack is found inside NAN service info by its header."""
    data = b"\x03\x27\x00\x88\x69" + b"\x01" + pack(location(1.0, 2.0))
    assert find_pack(data) == 6


def test_analyzer_beacon_and_wrong_oui() -> None:
    """A beacon with the ASD-STAN OUI is read; the same element under another OUI is not."""
    ctx = RecordingContext()
    a = RemoteIdAnalyzer(ctx)
    a.frame(make_beacon(beacon_with(b"\xfa\x0b\xbc", b"\x07" + pack(basic_id("SN9"))), ts=1.0))
    a.frame(
        make_beacon(
            beacon_with(b"\x00\x11\x22", b"\x07" + pack(basic_id("X"))), ts=2.0, addr2=b"\x02" * 6
        )
    )
    a.done()
    (rec,) = [r for r in ctx.records if isinstance(r, RemoteIdRecord)]
    assert (rec.serial, rec.oui, rec.ssid, rec.frames) == ("SN9", "fa:0b:bc", "DRONE", 1)


def test_bcn_sample() -> None:
    """opendroneid beacon sample: serial, operator, self-ID and positions, 21 frames."""
    (rec,) = [
        r
        for r in capture_records(ODID / "odid_wifi_bcn_sample.pcap", RemoteIdAnalyzer)
        if isinstance(r, RemoteIdRecord)
    ]
    assert (rec.mac, rec.oui, rec.frames) == ("84:cc:a8:60:43:24", "fa:0b:bc", 21)
    assert (rec.serial, rec.operator_id, rec.self_id) == (
        "MFG1A0123456789",
        "GBR-OP-123ABCD",
        "Recreational",
    )
    assert (rec.operator_lat, rec.operator_lon) == (45.5443876, -122.9726866)
    assert rec.lat is not None and 45.5 < rec.lat < 45.6 and rec.height_m == 100.0
    assert rec.vspeed_mps is None


def test_nan_sample() -> None:
    """opendroneid NAN sample: messages from NAN action frames and beacons of one transmitter."""
    (rec,) = [
        r
        for r in capture_records(ODID / "odid_wifi_sample.pcap", RemoteIdAnalyzer)
        if isinstance(r, RemoteIdRecord)
    ]
    assert (rec.transport, rec.frames) == ("beacon+nan", 42)
    assert (rec.operator_id, rec.self_id) == ("GBR-OP-123ABCD", "Recreational")


def test_early_oui_sample() -> None:
    """Early-format beacons (OUI 90:3A:E6) among home Wi-Fi noise: 4 frames, one transmitter."""
    (rec,) = [
        r
        for r in capture_records(ODID / "beacon_sample.pcap", RemoteIdAnalyzer)
        if isinstance(r, RemoteIdRecord)
    ]
    assert (rec.oui, rec.frames, rec.self_id) == ("90:3a:e6", 4, "Recreational")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 40))
def test_fuzz_decoders_raise_only_decode_error(data: bytes, pos: int) -> None:
    """Arbitrary bytes into the decoders raise only DecodeError."""
    try:
        decode_pack(data, pos)
    except DecodeError:
        pass
    find_pack(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([5, 8, 13]))
def test_fuzz_analyzer_raises_nothing(body: bytes, subtype: int) -> None:
    """Arbitrary frame bodies (beacon, probe response, action) raise nothing."""
    ctx = RecordingContext()
    a = RemoteIdAnalyzer(ctx)
    pkt = make_beacon(body)
    assert pkt.dot11 is not None
    pkt.dot11.subtype = subtype
    a.frame(pkt)
    a.frame(make_beacon(beacon_with(b"\xfa\x0b\xbc", body)))
    a.done()
