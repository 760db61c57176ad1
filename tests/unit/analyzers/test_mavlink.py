"""Tests for the MAVLink analyzer: frame decoding, CRC_EXTRA checks, TCP reassembly, captures."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.mavlink import (
    MAVLINK_MESSAGES,
    MavlinkAnalyzer,
    MavlinkCrcError,
    MavlinkOptions,
    MavlinkRecord,
    decode_global_position_int,
    decode_heartbeat,
    mavlink_crc,
    mavlink_frame_size,
    mavlink_msg_name,
    parse_mavlink_frame,
)
from dronewatch.core.engine import Engine
from dronewatch.core.flow import Flow, Packet
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, capture_records, make_flow, make_packet, make_udp
from tests.pcaps import PCAPS, THIRD_PARTY, capture
from tests.unit.core.tcpconv import TcpConversation

IPAL = THIRD_PARTY / "mavlink" / "ipal_MAVLink.pcap"
TCP5760 = THIRD_PARTY / "mavlink" / "judep90_mavlink_tcp5760.pcapng"
QGC = PCAPS / "scenarios" / "qgc_mavlink.pcap"
TAKEOFF = THIRD_PARTY / "wsensing2021" / "Normal_Takeoff_and_landing_01.pcapng"
FLIGHT5 = THIRD_PARTY / "wsensing2021" / "Normal_Flights_Flight5.pcapng.gz"

pytestmark = pytest.mark.usefixtures("both_counters")

# Real frames, copied from the captures.
V2_CAMERA_HEARTBEAT = bytes.fromhex("fd090000020164000000000000001e00000303754a")
"""ipal_MAVLink.pcap frame 1: sysid 1, compid 100 (camera), HEARTBEAT, MAV_TYPE_CAMERA."""
V1_GPS_RAW_INT = bytes.fromhex(
    "fe1e1701be180ab1a23300000000000000000000000000000000000000000000000000007b69"
)
"""Normal_Takeoff_and_landing_01.pcapng frame 12: the AR.Drone 2.0's GPS_RAW_INT (no fix)."""
# Encoded by pymavlink (the reference encoder) and pasted.
V2_GLOBAL_POSITION = bytes.fromhex("fd12000000070121000040e201000008d0eb48b5205a90e20000d43045e1")
"""sysid 7: time_boot_ms 123456, lat -33.8688, lon 151.2093, alt 58 m, relative 12.5 m; the
trailing zero bytes of the payload are cut (MAVLink 2 truncation)."""
V1_PX4_HEARTBEAT = bytes.fromhex("fe090003010000000000010c510403a6b0")
"""sysid 3: fixed wing, PX4, base_mode 0x51, status active."""


def frame(
    msgid: int,
    payload: bytes,
    *,
    version: int = 2,
    seq: int = 0,
    sysid: int = 1,
    compid: int = 1,
    crc_extra: int | None = None,
    signature: bytes | None = None,
) -> bytes:
    """A MAVLink frame packed by hand, its checksum from `mavlink_crc`."""
    if version == 1:
        head = struct.pack("<BBBBBB", 0xFE, len(payload), seq, sysid, compid, msgid)
    else:
        flags = 1 if signature is not None else 0
        head = struct.pack("<BBBBBBB", 0xFD, len(payload), flags, 0, seq, sysid, compid)
        head += msgid.to_bytes(3, "little")
    extra = MAVLINK_MESSAGES[msgid][1] if crc_extra is None else crc_extra
    crc = mavlink_crc(head[1:] + payload + bytes([extra]))
    return head + payload + struct.pack("<H", crc) + (signature or b"")


def heartbeat(mav_type: int = 2, autopilot: int = 12, **kw: Any) -> bytes:
    """A HEARTBEAT frame: custom mode 0, base mode armed, status active, MAVLink 3."""
    return frame(0, struct.pack("<IBBBBB", 0, mav_type, autopilot, 0x80 | 0x01, 4, 3), **kw)


def position(lat: float, lon: float, alt_m: float, **kw: Any) -> bytes:
    """A GLOBAL_POSITION_INT frame."""
    payload = struct.pack(
        "<IiiiihhhH", 1000, round(lat * 1e7), round(lon * 1e7), round(alt_m * 1000), 0, 0, 0, 0, 0
    )
    return frame(33, payload, **kw)


def udp(payload: bytes, ts: float = 10.0) -> Packet:
    """A datagram from a vehicle to a ground station's port 14550."""
    return make_udp(payload, src="192.168.2.1", dst="192.168.2.20", sport=14555, dport=14550, ts=ts)


def feed(
    packets: list[Packet], options: MavlinkOptions | None = None
) -> tuple[Flow, list[MavlinkRecord]]:
    """Run packets of one flow through a fresh analyzer; the flow and the records written."""
    ctx = RecordingContext()
    analyzer = MavlinkAnalyzer(ctx, options)
    flow = make_flow(packets[0])
    for pkt in packets:
        analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    records = [r for r in ctx.of("mavlink") if isinstance(r, MavlinkRecord)]
    assert len(records) == len(ctx.records)
    return flow, records


def run_capture(path: Path) -> list[MavlinkRecord]:
    """The mavlink records of a capture read through the engine."""
    records = capture_records(capture(path), MavlinkAnalyzer)
    return [r for r in records if isinstance(r, MavlinkRecord)]


def test_crc_check_value() -> None:
    """The checksum is CRC-16/MCRF4XX: its catalogue check value over "123456789" is 0x6F91."""
    assert mavlink_crc(b"123456789") == 0x6F91
    assert mavlink_crc(b"56789", mavlink_crc(b"1234")) == 0x6F91


def test_crc_extra_table_holds_the_common_messages() -> None:
    """The CRC_EXTRA of the messages drone links use are in the table, with their names."""
    expected = {
        0: ("HEARTBEAT", 50),
        1: ("SYS_STATUS", 124),
        2: ("SYSTEM_TIME", 137),
        4: ("PING", 237),
        20: ("PARAM_REQUEST_READ", 214),
        21: ("PARAM_REQUEST_LIST", 159),
        22: ("PARAM_VALUE", 220),
        24: ("GPS_RAW_INT", 24),
        27: ("RAW_IMU", 144),
        29: ("SCALED_PRESSURE", 115),
        30: ("ATTITUDE", 39),
        31: ("ATTITUDE_QUATERNION", 246),
        32: ("LOCAL_POSITION_NED", 185),
        33: ("GLOBAL_POSITION_INT", 104),
        35: ("RC_CHANNELS_RAW", 244),
        36: ("SERVO_OUTPUT_RAW", 222),
        39: ("MISSION_ITEM", 254),
        40: ("MISSION_REQUEST", 230),
        42: ("MISSION_CURRENT", 28),
        44: ("MISSION_COUNT", 221),
        47: ("MISSION_ACK", 153),
        62: ("NAV_CONTROLLER_OUTPUT", 183),
        65: ("RC_CHANNELS", 118),
        66: ("REQUEST_DATA_STREAM", 148),
        74: ("VFR_HUD", 20),
        76: ("COMMAND_LONG", 152),
        77: ("COMMAND_ACK", 143),
        111: ("TIMESYNC", 34),
        116: ("SCALED_IMU2", 76),
        125: ("POWER_STATUS", 203),
        147: ("BATTERY_STATUS", 154),
        148: ("AUTOPILOT_VERSION", 178),
        242: ("HOME_POSITION", 104),
        245: ("EXTENDED_SYS_STATE", 130),
        253: ("STATUSTEXT", 83),
    }
    assert {k: MAVLINK_MESSAGES[k] for k in expected} == expected
    assert mavlink_msg_name(30) == "ATTITUDE" and mavlink_msg_name(60000) == "60000"


def test_crc_extra_table_matches_pymavlink() -> None:
    """Every entry of the table agrees with pymavlink's generated dialect, when it is installed."""
    dialect = pytest.importorskip("pymavlink.dialects.v20.ardupilotmega")
    for msgid, (name, extra) in MAVLINK_MESSAGES.items():
        ref = dialect.mavlink_map[msgid]
        assert (ref.msgname, ref.crc_extra) == (name, extra), msgid


def test_real_v2_heartbeat() -> None:
    """A captured MAVLink 2 HEARTBEAT decodes, passes its CRC and names a camera component."""
    f = parse_mavlink_frame(V2_CAMERA_HEARTBEAT)
    assert (f.version, f.sysid, f.compid, f.msgid, f.name) == (2, 1, 100, 0, "HEARTBEAT")
    assert f.crc_verified and not f.signed and f.size == len(V2_CAMERA_HEARTBEAT)
    beat = decode_heartbeat(f.payload)
    assert (beat.type_name, beat.autopilot_name, beat.status_name) == (
        "camera",
        "generic",
        "standby",
    )
    assert (beat.mavlink_version, beat.armed) == (3, False)


def test_real_v1_frame() -> None:
    """A captured MAVLink 1 GPS_RAW_INT decodes with its sequence and ids."""
    f = parse_mavlink_frame(V1_GPS_RAW_INT)
    assert (f.version, f.seq, f.sysid, f.compid, f.msgid) == (1, 0x17, 1, 190, 24)
    assert len(f.payload) == 30 and f.crc_verified


def test_v1_heartbeat_fields() -> None:
    """A pymavlink-encoded v1 HEARTBEAT gives type, autopilot, mode and status."""
    beat = decode_heartbeat(parse_mavlink_frame(V1_PX4_HEARTBEAT).payload)
    assert (beat.type_name, beat.autopilot_name, beat.base_mode, beat.status_name) == (
        "fixed_wing",
        "px4",
        0x51,
        "active",
    )
    assert not beat.armed


def test_truncated_v2_payload_is_zero_filled() -> None:
    """A MAVLink 2 GLOBAL_POSITION_INT with its trailing zeros cut decodes to full values."""
    f = parse_mavlink_frame(V2_GLOBAL_POSITION)
    assert len(f.payload) == 18 < 28
    pos = decode_global_position_int(f.payload)
    assert (pos.time_boot_ms, pos.lat, pos.lon) == (123456, -33.8688, 151.2093)
    assert (pos.alt_m, pos.relative_alt_m) == (58.0, 12.5)


def test_frame_at_an_offset() -> None:
    """A frame is read at an offset inside a larger buffer."""
    data = b"\x00\x01" + V1_PX4_HEARTBEAT + b"\xff"
    assert mavlink_frame_size(data, 2) == len(V1_PX4_HEARTBEAT)
    assert parse_mavlink_frame(data, 2).sysid == 3


def test_bad_checksum_raises_crc_error() -> None:
    """One flipped payload bit fails the checksum with MavlinkCrcError (a DecodeError)."""
    bad = bytearray(V2_CAMERA_HEARTBEAT)
    bad[12] ^= 0x01
    with pytest.raises(MavlinkCrcError):
        parse_mavlink_frame(bytes(bad))
    assert issubclass(MavlinkCrcError, DecodeError)


def test_wrong_crc_extra_fails() -> None:
    """A frame checksummed with another message's CRC_EXTRA is rejected."""
    with pytest.raises(MavlinkCrcError):
        parse_mavlink_frame(frame(0, bytes(9), crc_extra=51))


def test_unknown_message_id_is_accepted_unverified() -> None:
    """A frame of an id with no known CRC_EXTRA is framed but marked unverified."""
    f = parse_mavlink_frame(frame(44444, b"\x01\x02", crc_extra=7))
    assert (f.msgid, f.crc_verified, f.name) == (44444, False, "44444")


def test_signed_frame() -> None:
    """The signed flag adds 13 signature bytes after the checksum."""
    raw = heartbeat(signature=bytes(range(13)))
    assert mavlink_frame_size(raw) == 10 + 9 + 2 + 13 == len(raw)
    f = parse_mavlink_frame(raw)
    assert f.signed and f.size == len(raw)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x55" + V1_PX4_HEARTBEAT[1:], "no magic"),
        (V1_PX4_HEARTBEAT[:-1], "truncated"),
        (V2_CAMERA_HEARTBEAT[:5], "header only"),
        (b"\xfd\x00\x04" + bytes(9), "unknown incompatibility flag"),
    ],
)
def test_malformed_frames_raise_decode_error(data: bytes, why: str) -> None:
    """Missing magic, truncation and unknown incompatibility flags raise DecodeError."""
    with pytest.raises(DecodeError):
        parse_mavlink_frame(data)


def test_frame_size_waits_for_the_header() -> None:
    """The size is unknown until the length byte (and v2 flags) arrive; no magic raises."""
    assert mavlink_frame_size(b"\xfe") is None
    assert mavlink_frame_size(b"\xfd\x09") is None
    assert mavlink_frame_size(b"\xfe\x09") == 17
    with pytest.raises(DecodeError):
        mavlink_frame_size(b"\x00\x09")


def test_udp_flow_record() -> None:
    """HEARTBEATs and positions on UDP give one record with the vehicle and its last position."""
    packets = [
        udp(heartbeat(seq=0), ts=10.0),
        udp(position(47.3977, 8.5456, 488.5, seq=1), ts=10.5),
        udp(heartbeat(seq=2) + position(47.3978, 8.5457, 489.0, seq=3), ts=11.0),
    ]
    flow, (rec,) = feed(packets)
    assert rec.to_dict() == {
        "ts": 10.0,
        "uid": flow.uid,
        "orig_h": "192.168.2.1",
        "orig_p": 14555,
        "resp_h": "192.168.2.20",
        "resp_p": 14550,
        "version": "2",
        "frames": 4,
        "crc_errors": 0,
        "crc_unverified": 0,
        "sysids": [1],
        "compids": [1],
        "msg_counts": {"HEARTBEAT": 2, "GLOBAL_POSITION_INT": 2},
        "heartbeats": 2,
        "vehicle_type": "quadrotor",
        "autopilot": "px4",
        "system_status": "active",
        "armed": True,
        "gcs_seen": False,
        "last_lat": 47.3978,
        "last_lon": 8.5457,
        "last_alt_m": 489.0,
        "last_relative_alt_m": 0.0,
        "signed": False,
    }
    # The vehicle's heartbeats came from the originator: the ground station is the responder.
    assert flow.meta == {"link": "mavlink", "link_gcs_side": "resp"}
    assert flow.service == "mavlink" and flow.sticky


def test_ground_station_heartbeat_is_not_the_vehicle() -> None:
    """A GCS HEARTBEAT is noted; the autopilot's one names the vehicle, over a camera's."""
    packets = [
        udp(heartbeat(6, 8, sysid=255, compid=190)),
        udp(heartbeat(30, 0, compid=100)),
        udp(heartbeat(13, 3)),
        udp(heartbeat(30, 0, compid=100)),
    ]
    _, (rec,) = feed(packets)
    assert (rec.vehicle_type, rec.autopilot, rec.gcs_seen) == ("hexarotor", "ardupilotmega", True)
    assert rec.sysids == (1, 255) and rec.compids == (1, 100, 190)


def test_versions_mixed_and_position_without_fix() -> None:
    """v1 and v2 frames give version 1+2; a 0/0 position is not reported."""
    _, (rec,) = feed([udp(heartbeat(version=1)), udp(position(0.0, 0.0, 0.0))])
    assert rec.version == "1+2"
    assert rec.last_lat is None and rec.last_lon is None


def test_signed_flow() -> None:
    """A signed frame marks the flow signed."""
    _, (rec,) = feed([udp(heartbeat(signature=bytes(13)))])
    assert rec.signed and rec.frames == 1


def test_random_udp_starting_with_magic_is_not_mavlink() -> None:
    """Datagrams that start with 0xFE but fail the checksum make no record and no meta."""
    junk = [udp(b"\xfe\x05" + bytes(range(i, i + 30))) for i in range(8)]
    flow, records = feed(junk)
    assert records == [] and flow.meta == {} and flow.service == "" and not flow.sticky


def test_unknown_ids_alone_do_not_recognise() -> None:
    """Frames of unknown ids only (no checksum to match) do not make a flow MAVLink."""
    flow, records = feed([udp(frame(50000, b"abc", crc_extra=1)) for _ in range(3)])
    assert records == [] and flow.service == ""


def test_unknown_ids_counted_once_recognised() -> None:
    """After a valid frame, frames of unknown ids are counted as unverified."""
    _, (rec,) = feed([udp(heartbeat()), udp(frame(50000, b"abc", crc_extra=1))])
    assert (rec.frames, rec.crc_unverified) == (2, 1)
    assert rec.msg_counts == {"HEARTBEAT": 1, "50000": 1}


def test_crc_errors_counted_on_a_recognised_flow() -> None:
    """A corrupted frame counts as a checksum error; the next frame in the datagram is read."""
    bad = bytearray(heartbeat(seq=1))
    bad[14] ^= 0xFF
    _, (rec,) = feed([udp(heartbeat(seq=0)), udp(bytes(bad) + heartbeat(seq=2))])
    assert (rec.frames, rec.crc_errors, rec.heartbeats) == (2, 1, 2)


def test_garbage_between_frames_is_skipped() -> None:
    """Bytes that are not a frame are skipped to the next magic without counting an error."""
    data = heartbeat() + b"\x00\x11\x22" + heartbeat() + b"\x99\xfe\x30" + heartbeat()
    _, (rec,) = feed([udp(data)])
    assert (rec.frames, rec.crc_errors) == (3, 0)


def test_probe_gives_up() -> None:
    """A flow without a valid frame in its first probe packets is no longer read."""
    packets = [udp(b"\xfe\x01junkjunk") for _ in range(2)] + [udp(heartbeat())]
    flow, records = feed(packets, MavlinkOptions(probe_packets=2))
    assert records == [] and flow.service == ""


def test_follow_flow_off() -> None:
    """With follow_flow off a recognised flow is not made sticky."""
    flow, (rec,) = feed([udp(heartbeat())], MavlinkOptions(follow_flow=False))
    assert rec.frames == 1 and not flow.sticky


def test_top_messages_bound() -> None:
    """msg_counts keeps the most frequent message types only."""
    packets = [udp(heartbeat()) for _ in range(3)] + [udp(position(1.0, 1.0, 1.0))] * 2
    packets.append(udp(frame(30, bytes(28))))
    _, (rec,) = feed(packets, MavlinkOptions(top_messages=2))
    assert rec.msg_counts == {"HEARTBEAT": 3, "GLOBAL_POSITION_INT": 2}


def tcp(payload: bytes, seq: int, *, ts: float = 1.0) -> Packet:
    """A segment from a SITL vehicle on TCP 5760 to its ground station."""
    return make_packet(
        payload, src="127.0.0.1", dst="127.0.0.1", sport=5760, dport=52331, tcp_seq=seq, ts=ts
    )


def test_tcp_frames_split_and_merged_across_segments() -> None:
    """Frames cut across segments and several per segment are all read once."""
    stream = heartbeat(seq=0) + position(1.5, 2.5, 3.0, seq=1) + heartbeat(seq=2)
    cuts = [0, 7, 8, 40, len(stream)]
    packets = [tcp(stream[a:b], 5000 + a) for a, b in zip(cuts, cuts[1:], strict=False)]
    flow, (rec,) = feed(packets)
    assert (rec.frames, rec.heartbeats, rec.last_lat) == (3, 2, 1.5)
    assert flow.sticky


def test_a_tcp_flow_on_another_port_without_magic_is_given_up() -> None:
    """Off MAVLink's TCP ports, segments that start with no magic count towards the probe, as
    datagrams do: a TCP flow seen from its middle (an encrypted stream) is declined after
    `probe_packets` of them instead of being read to the engine's inspection bound; one whose
    segments start with frames is read."""
    ctx = RecordingContext()
    analyzer = MavlinkAnalyzer(ctx, MavlinkOptions(probe_packets=3))

    def segment(payload: bytes, seq: int) -> Packet:
        return make_packet(
            payload, src="10.0.0.2", dst="10.0.0.9", sport=40000, dport=8883, tcp_seq=seq
        )

    flow = make_flow(segment(b"\x17\x03\x03junk", 1))
    flow.inspector_names = ("mavlink",)
    for i in range(2):
        analyzer.packet(flow, segment(b"\x17\x03\x03junk", 1 + 100 * i))
    assert flow.inspector_names == ("mavlink",)
    analyzer.packet(flow, segment(b"\x17\x03\x03junk", 301))
    assert flow.inspector_names == ()
    framed = make_flow(segment(heartbeat(), 1), uid="CFRAMED")
    framed.inspector_names = ("mavlink",)
    analyzer.packet(framed, segment(heartbeat(seq=0) + heartbeat(seq=1), 1))
    assert framed.service == "mavlink"


def test_tcp_retransmission_not_counted_twice() -> None:
    """A retransmitted segment, whole or overlapping, adds no frame: the engine's stream layer
    hands the analyzer each byte once."""
    one, two = heartbeat(seq=0), heartbeat(seq=1)
    conv = TcpConversation(("127.0.0.1", 52331), ("127.0.0.1", 5760))
    first = conv.reply(one)
    packets = [
        first,
        conv.reply(one, seq=first.tcp_seq, advance=False),
        conv.reply(one[5:] + two, seq=first.tcp_seq + 5),
        conv.reply(two, seq=first.tcp_seq + len(one), advance=False),
    ]
    ctx = RecordingContext()
    engine = Engine([MavlinkAnalyzer(ctx)], ctx)
    for pkt in packets:
        engine.process(pkt)
    engine.finish()
    (rec,) = [r for r in ctx.of("mavlink") if isinstance(r, MavlinkRecord)]
    assert rec.frames == 2


def test_tcp_gap_resyncs() -> None:
    """After lost bytes the cut frame is dropped and the following frames are read."""
    one, two, three = heartbeat(seq=0), heartbeat(seq=1), heartbeat(seq=2)
    packets = [tcp(one + two[:6], 0), tcp(three, len(one) + len(two) + 50)]
    _, (rec,) = feed(packets)
    assert (rec.frames, rec.crc_errors) == (2, 0)


def test_tcp_buffer_is_bounded() -> None:
    """A frame that never completes does not grow the buffer past its limit."""
    ctx = RecordingContext()
    analyzer = MavlinkAnalyzer(ctx, MavlinkOptions(max_tcp_buffer_bytes=64, probe_packets=100))
    first = tcp(heartbeat(), 0)
    flow = make_flow(first)
    analyzer.packet(flow, first)
    seq = len(heartbeat())
    for _ in range(10):
        chunk = b"\xfe\xff" + b"\x00" * 38  # claims 263 bytes, then zeros
        analyzer.packet(flow, tcp(chunk, seq))
        seq += len(chunk)
    state = analyzer._state[flow.uid]
    assert all(len(s.buf) <= 64 for s in state.streams.values())
    analyzer.packet(flow, tcp(heartbeat(seq=9), seq + 300))
    analyzer.flow_end(flow)
    (rec,) = ctx.of("mavlink")
    assert isinstance(rec, MavlinkRecord) and rec.frames == 2


def test_other_protocols_are_ignored_cheaply() -> None:
    """A flow whose payload does not start with a magic gets no state at all."""
    ctx = RecordingContext()
    analyzer = MavlinkAnalyzer(ctx)
    pkt = make_udp(b"AT*REF=1,0\r", dport=5556)
    flow = make_flow(pkt)
    analyzer.packet(flow, pkt)
    assert analyzer._state == {}
    analyzer.flow_end(flow)
    assert ctx.records == []


def test_capture_ipal_udp() -> None:
    """ipal_MAVLink.pcap: a camera's MAVLink 2 stream to 14550 and one MANUAL_CONTROL back."""
    vehicle, gcs = run_capture(IPAL)
    assert (vehicle.orig_h, vehicle.orig_p, vehicle.resp_p) == ("192.168.2.2", 45815, 14550)
    assert (vehicle.version, vehicle.frames, vehicle.crc_errors) == ("2", 9, 0)
    assert vehicle.sysids == (1,) and vehicle.compids == (1, 100)
    assert vehicle.msg_counts == {
        "ATTITUDE": 2,
        "HEARTBEAT": 1,
        "SYS_STATUS": 1,
        "SYSTEM_TIME": 1,
        "GLOBAL_POSITION_INT": 1,
        "SERVO_OUTPUT_RAW": 1,
        "BATTERY_STATUS": 1,
        "NAMED_VALUE_FLOAT": 1,
    }
    assert (vehicle.vehicle_type, vehicle.autopilot, vehicle.system_status) == (
        "camera",
        "generic",
        "standby",
    )
    assert vehicle.last_lat is None  # its GLOBAL_POSITION_INT is all zeros
    assert (gcs.sysids, gcs.compids, gcs.msg_counts) == ((255,), (190,), {"MANUAL_CONTROL": 1})


def test_capture_tcp_5760() -> None:
    """judep90_mavlink_tcp5760.pcapng: 7 frames in 6 segments (two in one) over TCP 5760."""
    (rec,) = run_capture(TCP5760)
    assert (rec.orig_h, rec.orig_p, rec.resp_p) == ("127.0.0.1", 5760, 52331)
    assert (rec.version, rec.frames, rec.crc_errors, rec.crc_unverified) == ("2", 7, 0, 0)
    assert rec.sysids == (1, 51) and rec.compids == (1, 68)  # 51/68: a SiK radio's RADIO_STATUS
    assert rec.msg_counts == {
        "ATTITUDE": 3,
        "ATTITUDE_QUATERNION": 1,
        "VFR_HUD": 1,
        "HIGHRES_IMU": 1,
        "RADIO_STATUS": 1,
    }
    assert rec.heartbeats == 0 and rec.vehicle_type is None


def test_capture_qgc_scenario() -> None:
    """qgc_mavlink.pcap: an armed ArduPilot quadrotor and QGroundControl's GCS heartbeats."""
    (rec,) = run_capture(QGC)
    assert (rec.orig_h, rec.orig_p, rec.resp_h, rec.resp_p) == (
        "192.168.2.1",
        14555,
        "192.168.2.20",
        14550,
    )
    assert (rec.frames, rec.heartbeats, rec.crc_errors) == (110, 14, 0)
    assert rec.msg_counts == {
        "ATTITUDE": 60,
        "GLOBAL_POSITION_INT": 30,
        "HEARTBEAT": 14,
        "SYS_STATUS": 6,
    }
    assert rec.sysids == (1, 255) and rec.compids == (1, 190)
    assert (rec.vehicle_type, rec.autopilot, rec.system_status, rec.armed) == (
        "quadrotor",
        "ardupilotmega",
        "active",
        True,
    )
    assert rec.gcs_seen
    assert (rec.last_lat, rec.last_lon, rec.last_alt_m) == (47.3977478, 8.545594, 488.584)


def test_capture_ardrone_mavlink_v1() -> None:
    """wsensing2021 take-off: the AR.Drone 2.0 sends MAVLink 1 from 14551 with no GPS fix."""
    (rec,) = run_capture(TAKEOFF)
    assert (rec.orig_h, rec.orig_p, rec.resp_h, rec.resp_p) == (
        "192.168.1.1",
        14551,
        "192.168.1.3",
        14550,
    )
    assert (rec.version, rec.frames, rec.heartbeats) == ("1", 143, 8)
    assert rec.msg_counts == {
        "ATTITUDE": 56,
        "GPS_RAW_INT": 32,
        "GLOBAL_POSITION_INT": 31,
        "HEARTBEAT": 8,
        "SYS_STATUS": 8,
        "MISSION_CURRENT": 8,
    }
    assert (rec.sysids, rec.compids) == ((1,), (190,))
    assert (rec.vehicle_type, rec.autopilot, rec.system_status, rec.armed) == (
        "quadrotor",
        "generic",
        "standby",
        False,
    )
    assert rec.last_lat is None


def test_capture_flight5() -> None:
    """Flight5: 113 MAVLink datagrams, cut in two flows by a pause longer than the UDP timeout."""
    first, second = run_capture(FLIGHT5)
    assert (first.frames, first.heartbeats, second.frames) == (108, 5, 5)
    assert first.resp_h == second.resp_h == "192.168.1.2"
    assert first.vehicle_type == "quadrotor" and second.last_lat is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decoders_raise_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes into the frame decoders raise only DecodeError."""
    for fn in (parse_mavlink_frame, mavlink_frame_size):
        try:
            fn(data)
        except DecodeError:
            pass
    decode_heartbeat(data)
    decode_global_position_int(data)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=120),
            st.binary(max_size=40).map(lambda b: heartbeat() + b),
            st.binary(min_size=1, max_size=40).map(lambda b: b"\xfd" + b),
        ),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_fuzz_analyzer_raises_nothing(chunks: list[bytes], over_tcp: bool) -> None:
    """Arbitrary datagrams or segments, with or without valid frames, raise nothing."""
    seq = 0
    packets = []
    for chunk in chunks:
        packets.append(tcp(chunk, seq) if over_tcp else udp(chunk))
        seq += len(chunk)
    _, records = feed([p for p in packets if p.payload] or [udp(b"\xfe")])
    assert len(records) <= 1


def test_heartbeat_and_system_255_say_which_end_is_the_gcs(tmp_path: Path) -> None:
    """ipal_MAVLink.pcap through analyze: the camera's heartbeats make 192.168.2.2 the aircraft
    and the MANUAL_CONTROL from system 255 makes 192.168.2.1 the ground station, although
    192.168.2.1 is the address a DJI aircraft takes on its own Wi-Fi."""
    import json

    from dronewatch.cli.app import main

    assert main(["analyze", "--out", str(tmp_path), str(capture(IPAL))]) == 0
    roles = {
        d["ip"]: d["roles"]
        for d in map(json.loads, (tmp_path / "devices.jsonl").read_text().splitlines())
    }
    assert roles == {"192.168.2.1": ["ground_station"], "192.168.2.2": ["aircraft"]}
