"""Tests for the DJI Wi-Fi analyzer: DUML checksums and frames, wrappers, the scenario captures."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.dji_wifi import (
    DjiWifiAnalyzer,
    DjiWifiOptions,
    DjiWifiRecord,
    DumlCrcError,
    duml_cmd_set_name,
    duml_crc8,
    duml_crc16,
    duml_device_name,
    find_duml,
    parse_duml_frame,
)
from dronewatch.core.flow import Flow, Packet
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, capture_records, make_flow, make_udp
from tests.pcaps import PCAPS, capture

SCENARIOS = PCAPS / "scenarios"
LDM_CLEAN = SCENARIOS / "dji_fly_ldm_on_clean.pcap"

PUBLISHED = bytes.fromhex("550e04662a28de2f40004f0154c8")
"""The example frame of the public duml-packet tool, which it prints as "Valid CRC: true": PC
(index 1) to the DM3xx air side (index 1), seq 0x2FDE, ack wanted, GENERAL 0x4F, payload 01."""
CAPTURED_REQUEST = bytes.fromhex("551104920203001240000e00000000cd07")
"""dji_fly_ldm_on_clean.pcap frame 3: the app asks the flight controller GENERAL 0x0E."""
CAPTURED_RESPONSE = bytes.fromhex("551204c70302001280000e0000000000df91")
"""Frame 4: the flight controller's response (response bit set, same sequence number)."""


pytestmark = pytest.mark.usefixtures("both_counters")


def duml(
    sender: int, receiver: int, seq: int, cmd_set: int, cmd_id: int, payload: bytes = b"", **kw: int
) -> bytes:
    """A DUML v1 frame packed by hand; `cmd_type` defaults to a request wanting an ack."""
    cmd_type = kw.get("cmd_type", 0x40)
    length = 13 + len(payload)
    head = b"\x55" + struct.pack("<H", length | (1 << 10))
    head += bytes([duml_crc8(head)])
    body = head + struct.pack("<BBHBBB", sender, receiver, seq, cmd_type, cmd_set, cmd_id) + payload
    return body + struct.pack("<H", duml_crc16(body))


def to_aircraft(payload: bytes, ts: float = 5.0) -> Packet:
    """A datagram from the phone to the aircraft's DUML port."""
    return make_udp(payload, src="192.168.2.20", dst="192.168.2.1", sport=12346, dport=9003, ts=ts)


def from_aircraft(payload: bytes, ts: float = 5.1) -> Packet:
    """A datagram from the aircraft's DUML port to the phone."""
    return make_udp(payload, src="192.168.2.1", dst="192.168.2.20", sport=9003, dport=12346, ts=ts)


def feed(
    packets: list[Packet], options: DjiWifiOptions | None = None
) -> tuple[Flow, list[DjiWifiRecord]]:
    """Run packets of one flow through a fresh analyzer; the flow and the records written."""
    ctx = RecordingContext()
    analyzer = DjiWifiAnalyzer(ctx, options)
    flow = make_flow(packets[0])
    for pkt in packets:
        analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    records = [r for r in ctx.of("dji_wifi") if isinstance(r, DjiWifiRecord)]
    assert len(records) == len(ctx.records)
    return flow, records


def run_capture(path: Path) -> list[DjiWifiRecord]:
    """The dji_wifi records of a capture read through the engine."""
    records = capture_records(capture(path), DjiWifiAnalyzer)
    return [r for r in records if isinstance(r, DjiWifiRecord)]


def test_checksums_match_the_published_frame() -> None:
    """CRC-8 (init 0x77) and CRC-16 (init 0x3692) reproduce the published example's checksums."""
    assert duml_crc8(PUBLISHED[:3]) == 0x66
    assert duml_crc16(PUBLISHED[:-2]) == 0xC854
    assert duml_crc8(b"") == 0x77 and duml_crc16(b"") == 0x3692


def test_parse_published_frame() -> None:
    """The published example decodes to its documented fields."""
    f = parse_duml_frame(PUBLISHED)
    assert (f.version, f.size, f.seq, f.cmd_set, f.cmd_id, f.payload) == (
        1,
        14,
        0x2FDE,
        0x00,
        0x4F,
        b"\x01",
    )
    assert (duml_device_name(f.sender), duml_device_name(f.receiver)) == ("pc", "dm36x_air")
    assert (f.is_response, f.ack) == (False, 2)


def test_parse_captured_request_and_response() -> None:
    """A captured request and its response: same sequence, response bit, devices swapped."""
    req, resp = parse_duml_frame(CAPTURED_REQUEST), parse_duml_frame(CAPTURED_RESPONSE)
    assert (duml_device_name(req.sender), duml_device_name(req.receiver)) == (
        "app",
        "flight_controller",
    )
    assert (req.seq, resp.seq) == (0x1200, 0x1200)
    assert (req.is_response, resp.is_response) == (False, True)
    assert (resp.sender, resp.receiver) == (req.receiver, req.sender)
    assert req.payload == bytes(4) and resp.payload == bytes(5)


def test_names() -> None:
    """Command sets and device types have names; unknown ones are numbers; the index is dropped."""
    assert [duml_cmd_set_name(n) for n in (0, 3, 4, 9, 40)] == [
        "general",
        "flight_control",
        "gimbal",
        "hd_link",
        "40",
    ]
    assert duml_device_name(0x2A) == "pc" and duml_device_name(0x03) == "flight_controller"
    assert duml_device_name(0x1F) == "31"


def test_bad_frame_checksum_raises_crc_error() -> None:
    """A payload bit flip fails the CRC-16 with DumlCrcError, a DecodeError."""
    bad = bytearray(PUBLISHED)
    bad[11] ^= 0x80
    with pytest.raises(DumlCrcError):
        parse_duml_frame(bytes(bad))
    assert issubclass(DumlCrcError, DecodeError)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x55\x0e",
        b"\xaa" + PUBLISHED[1:],  # no start byte
        PUBLISHED[:3] + b"\x67" + PUBLISHED[4:],  # header checksum
        PUBLISHED[:-1],  # truncated
        b"\x55\x05\x04" + bytes([duml_crc8(b"\x55\x05\x04")]) + bytes(9),  # length below 13
    ],
)
def test_malformed_frames_raise_decode_error(data: bytes) -> None:
    """No start byte, a bad header checksum, truncation and a tiny length raise DecodeError."""
    with pytest.raises(DecodeError) as info:
        parse_duml_frame(data)
    assert not isinstance(info.value, DumlCrcError)


def test_find_behind_a_wrapper() -> None:
    """A frame behind a wrapper header is found by its header checksum, not by any 0x55 byte."""
    wrapped = b"\x55\x00\x21\x00\x55\x99" + PUBLISHED
    assert find_duml(wrapped) == 6
    assert find_duml(PUBLISHED) == 0
    assert find_duml(bytes(16) + PUBLISHED) == -1  # beyond the window
    assert find_duml(bytes(16) + PUBLISHED, window=20) == 16


def test_link_record() -> None:
    """Requests and responses on UDP 9003 give one record with sets, commands and devices."""
    packets = [
        to_aircraft(duml(0x02, 0x03, 1, 0x00, 0x0E, b"\x00\x00\x00\x00"), ts=5.0),
        from_aircraft(duml(0x03, 0x02, 1, 0x00, 0x0E, b"\x00", cmd_type=0x80), ts=5.1),
        to_aircraft(duml(0x02, 0x04, 2, 0x04, 0x05, b"\x01"), ts=5.2),
        from_aircraft(duml(0x03, 0x02, 3, 0x03, 0x43, bytes(20), cmd_type=0x00), ts=5.3),
    ]
    flow, (rec,) = feed(packets)
    assert rec.to_dict() == {
        "ts": 5.0,
        "uid": flow.uid,
        "orig_h": "192.168.2.20",
        "orig_p": 12346,
        "resp_h": "192.168.2.1",
        "resp_p": 9003,
        "frames": 4,
        "crc_errors": 0,
        "requests": 3,
        "responses": 1,
        "cmd_sets": {"general": 2, "flight_control": 1, "gimbal": 1},
        "commands": {"general/0x0e": 2, "flight_control/0x43": 1, "gimbal/0x05": 1},
        "senders": ["app", "flight_controller"],
        "receivers": ["app", "flight_controller", "gimbal"],
    }
    assert flow.service == "dji_wifi" and flow.meta == {"link": "dji_wifi"} and flow.sticky


def test_wrapped_and_merged_frames() -> None:
    """Frames behind a wrapper, two in one datagram, are all read and the wrapper is noted."""
    two = duml(0x02, 0x03, 1, 0x03, 0x43) + duml(0x02, 0x01, 2, 0x02, 0x80, b"\x01")
    _, (rec,) = feed([to_aircraft(b"\x01\x02\x03\x04" + two)])
    assert (rec.frames, rec.wrapper_len, rec.cmd_sets) == (2, 4, {"camera": 1, "flight_control": 1})


def test_crc_errors_counted() -> None:
    """A frame with a good header and a bad CRC-16 counts as an error, not as a frame."""
    good = duml(0x02, 0x03, 1, 0x03, 0x43)
    bad = bytearray(duml(0x02, 0x03, 2, 0x03, 0x43, b"\x10"))
    bad[11] ^= 0x01
    _, (rec,) = feed([to_aircraft(good), to_aircraft(bytes(bad))])
    assert (rec.frames, rec.crc_errors) == (1, 1)


def test_no_valid_frame_no_record() -> None:
    """Datagrams on 9003 without a checksum-valid DUML frame make no record."""
    bad = bytearray(PUBLISHED)
    bad[-1] ^= 0xFF
    flow, records = feed([to_aircraft(b"\x55" * 20), to_aircraft(bytes(bad))])
    assert records == [] and flow.meta == {} and not flow.sticky


def test_probe_gives_up() -> None:
    """A flow on 9003 without DUML in its first probe datagrams is not read further."""
    packets = [to_aircraft(b"video" * 10)] * 2 + [to_aircraft(PUBLISHED)]
    _, records = feed(packets, DjiWifiOptions(probe_packets=2))
    assert records == []


def test_other_ports_are_ignored() -> None:
    """A DUML frame away from 9003/9004 is not read."""
    _, records = feed([make_udp(PUBLISHED, sport=40000, dport=9005)])
    assert records == []


def test_port_9004() -> None:
    """DUML on UDP 9004 is read too."""
    pkt = make_udp(PUBLISHED, src="192.168.2.20", dst="192.168.2.1", sport=40000, dport=9004)
    _, (rec,) = feed([pkt])
    assert rec.frames == 1 and rec.senders == ("pc",)


def test_capture_ldm_on_clean() -> None:
    """dji_fly_ldm_on_clean.pcap: 217 DUML frames between the phone and 192.168.2.1:9003."""
    (rec,) = run_capture(LDM_CLEAN)
    assert (rec.orig_h, rec.orig_p, rec.resp_h, rec.resp_p) == (
        "192.168.2.20",
        12346,
        "192.168.2.1",
        9003,
    )
    assert (rec.frames, rec.crc_errors, rec.requests, rec.responses) == (217, 0, 118, 99)
    assert rec.cmd_sets == {"flight_control": 67, "general": 50, "camera": 50, "gimbal": 50}
    assert rec.commands == {
        "flight_control/0x43": 67,
        "general/0x0e": 50,
        "camera/0x80": 50,
        "gimbal/0x05": 50,
    }
    assert rec.senders == rec.receivers == ("app", "camera", "flight_controller", "gimbal")
    assert rec.wrapper_len is None


@pytest.mark.parametrize(
    ("name", "frames"),
    [
        ("dji_fly_ldm_off", 125),
        ("dji_fly_ldm_on_violation", 134),
        ("dji_fly_ldm_on_maps_only", 112),
    ],
)
def test_capture_other_ldm_scenarios(name: str, frames: int) -> None:
    """Each DJI Fly scenario has one DUML flow with every frame valid."""
    path = SCENARIOS / f"{name}.pcap"
    (rec,) = run_capture(path)
    assert (rec.frames, rec.crc_errors, rec.resp_h) == (frames, 0, "192.168.2.1")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decoder_raises_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes into the DUML decoder raise only DecodeError."""
    try:
        parse_duml_frame(data)
    except DecodeError:
        pass
    assert -1 <= find_duml(data) < 16


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200),
            st.binary(max_size=30).map(lambda b: b + PUBLISHED),
            st.binary(max_size=30).map(lambda b: PUBLISHED + b),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_fuzz_analyzer_raises_nothing(datagrams: list[bytes]) -> None:
    """Arbitrary datagrams on 9003, with or without frames, raise nothing from the analyzer."""
    _, records = feed([to_aircraft(d) for d in datagrams if d] or [to_aircraft(b"\x55")])
    assert len(records) <= 1


def reference_count(data: bytes) -> tuple[int, int, list[tuple[int, int]]]:
    """Frames, CRC errors and (cmd set, cmd id) of one datagram, read with `parse_duml_frame`:
    what the analyzer's in-place counting must agree with."""
    frames, errors, commands = 0, 0, []
    pos = find_duml(data)
    while 0 <= pos < len(data) and data[pos] == 0x55:
        try:
            frame = parse_duml_frame(data, pos)
        except DumlCrcError:
            errors += 1
            break
        except DecodeError:
            break
        frames += 1
        commands.append((frame.cmd_set, frame.cmd_id))
        pos += frame.size
    return frames, errors, commands


frame_st = st.builds(
    duml,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(frame_st, min_size=1, max_size=4),
    st.binary(max_size=6),
    st.binary(max_size=6),
    st.integers(0, 200),
    st.integers(0, 255),
)
def test_in_place_counting_agrees_with_the_decoder(
    frames: list[bytes], wrapper: bytes, tail: bytes, flip_at: int, flip: int
) -> None:
    """Whole, wrapped, cut and corrupted datagrams: the analyzer counts exactly the frames,
    checksum errors and commands that `parse_duml_frame` reads (its fast path checks the same)."""
    data = bytearray(wrapper.replace(b"\x55", b"\x00") + b"".join(frames) + tail)
    if flip_at < len(data):
        data[flip_at] ^= flip
    datagram = bytes(data)
    n, errors, commands = reference_count(datagram)
    _, records = feed([to_aircraft(datagram)] * 3)
    if n == 0:
        assert records == []  # no valid frame: the flow is not a DUML link
        return
    (rec,) = records
    assert (rec.frames, rec.crc_errors) == (3 * n, 3 * errors)
    expected: dict[str, int] = {}
    for cmd_set, cmd_id in commands:
        key = f"{duml_cmd_set_name(cmd_set)}/{cmd_id:#04x}"
        expected[key] = expected.get(key, 0) + 3
    assert rec.commands == expected
