"""Tests for the Parrot analyzer: ARSDK discovery and ARNetworkAL, AR.Drone AT commands and
navdata, on hand-built bytes and on the FreeFlight and wsensing2021 captures."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.parrot import (
    ParrotAnalyzer,
    ParrotOptions,
    ParrotRecord,
    ardrone_state_flags,
    arsdk_command_name,
    decode_navdata_demo,
    parse_arcommand,
    parse_arnetworkal,
    parse_arsdk_json,
    parse_at_commands,
    parse_navdata,
)
from dronewatch.core.engine import Engine
from dronewatch.core.flow import Flow, Packet
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, capture_records, make_flow, make_packet, make_udp
from tests.pcaps import PCAPS, THIRD_PARTY, capture

FREEFLIGHT = PCAPS / "scenarios" / "parrot_freeflight.pcap"
WSENSING = THIRD_PARTY / "wsensing2021"
TAKEOFF = WSENSING / "Normal_Takeoff_and_landing_01.pcapng"
FLIGHT5 = WSENSING / "Normal_Flights_Flight5.pcapng.gz"

# Real datagrams, copied from the captures.
AT_FIRST = bytes.fromhex(
    "41542a4354524c3d302c352c300d41542a5245463d312c300d41542a50434d443d322c302c302c302c302c300d"
)
"""Normal_Takeoff_and_landing_01 frame 227: `AT*CTRL=0,5,0`, `AT*REF=1,0`, `AT*PCMD=2,0,0,0,0,0`."""
AT_CONFIG = bytes.fromhex(
    "41542a434f4e4649473d332c2267656e6572616c3a6e6176646174615f64656d6f222c2254525545220d"
)
"""Frame 228: `AT*CONFIG=3,"general:navdata_demo","TRUE"`."""
NAVDATA_BOOTSTRAP = bytes.fromhex("89776655d004800f1234000001000000ffff080065030000")
"""Frame 229: magic 0x55667789, no option but the checksum (0x365, the sum of the header)."""
D2C_DATAGRAM = bytes.fromhex(
    "027f001700000001040600e3eb023b0ad7233c863d9a3f027f0123000000010404000e31d31a83704840713d0a"
    "d7a3f002400000000000003940027f0213000000010408003c0c6e9b8e023940020000170000000000000000"
    "000000feabf60500000000047e000c0000000005010060"
)
"""parrot_freeflight.pcap frame 20: attitude, position, altitude, a ping, and battery 96 %."""


pytestmark = pytest.mark.usefixtures("both_counters")


def arnet(ftype: int, buffer: int, seq: int, payload: bytes) -> bytes:
    """An ARNetworkAL frame (its size counts the 7-byte header)."""
    return struct.pack("<BBBI", ftype, buffer, seq, 7 + len(payload)) + payload


def arcmd(project: int, klass: int, cmd: int, args: bytes = b"") -> bytes:
    """An ARCommand."""
    return struct.pack("<BBH", project, klass, cmd) + args


def navdata(state: int, ctrl_major: int, battery: int, altitude_mm: int, seq: int = 1) -> bytes:
    """A navdata packet with a demo option and a correct checksum option."""
    demo = struct.pack("<IIfffifffI", ctrl_major << 16, battery, 0, 0, 0, altitude_mm, 0, 0, 0, 0)
    demo += bytes(148 - 4 - len(demo))
    body = struct.pack("<IIII", 0x55667788, state, seq, 1) + struct.pack("<HH", 0, 148) + demo
    return body + struct.pack("<HHI", 0xFFFF, 8, sum(body) & 0xFFFFFFFF)


def feed(
    packets: list[Packet], analyzer: ParrotAnalyzer | None = None
) -> tuple[Flow, list[ParrotRecord]]:
    """Run packets of one flow through an analyzer; the flow and the records written."""
    ctx = RecordingContext()
    analyzer = analyzer or ParrotAnalyzer(ctx)
    analyzer.ctx = ctx
    flow = make_flow(packets[0])
    for pkt in packets:
        analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    records = [r for r in ctx.of("parrot") if isinstance(r, ParrotRecord)]
    assert len(records) == len(ctx.records)
    return flow, records


def run_capture(path: Path) -> dict[str, list[ParrotRecord]]:
    """The parrot records of a capture read through the engine, by protocol."""
    records = capture_records(capture(path), ParrotAnalyzer)
    out: dict[str, list[ParrotRecord]] = {}
    for rec in records:
        assert isinstance(rec, ParrotRecord)
        out.setdefault(rec.protocol, []).append(rec)
    return out


def at(payload: bytes, ts: float = 1.0) -> Packet:
    """An AT datagram from the phone to the AR.Drone's port 5556."""
    return make_udp(payload, src="192.168.1.3", dst="192.168.1.1", sport=44908, dport=5556, ts=ts)


def nav(payload: bytes, ts: float = 1.0) -> Packet:
    """A navdata datagram from the AR.Drone's port 5554 to the phone."""
    return make_udp(payload, src="192.168.1.1", dst="192.168.1.3", sport=5554, dport=43282, ts=ts)


def c2d(payload: bytes, ts: float = 1.0, dport: int = 2233) -> Packet:
    """An ARNetworkAL datagram from the controller's 9988 to the drone's c2d port."""
    return make_udp(
        payload, src="192.168.42.10", dst="192.168.42.1", sport=9988, dport=dport, ts=ts
    )


def d2c(payload: bytes, ts: float = 1.1, sport: int = 2233) -> Packet:
    """An ARNetworkAL datagram from the drone to the controller's 9988."""
    return make_udp(
        payload, src="192.168.42.1", dst="192.168.42.10", sport=sport, dport=9988, ts=ts
    )


# --- decoders -------------------------------------------------------------------------------


def test_real_at_datagram() -> None:
    """A captured datagram holds three AT commands with their arguments."""
    commands = parse_at_commands(AT_FIRST)
    assert [(c.name, c.args) for c in commands] == [
        ("CTRL", ("0", "5", "0")),
        ("REF", ("1", "0")),
        ("PCMD", ("2", "0", "0", "0", "0", "0")),
    ]


def test_config_arguments_keep_quoted_commas() -> None:
    """AT*CONFIG strings are split on commas outside quotes only."""
    (config,) = parse_at_commands(AT_CONFIG)
    assert config.args == ("3", '"general:navdata_demo"', '"TRUE"')
    (box,) = parse_at_commands(b'AT*CONFIG=9,"userbox:userbox_cmd","2,0,0,20171013"\r')
    assert box.args == ("9", '"userbox:userbox_cmd"', '"2,0,0,20171013"')
    assert parse_at_commands(b"AT*FTRIM=4,\rAT*COMWDG=5\r")[1].args == ("5",)


@pytest.mark.parametrize(
    "data", [b"", b"\r\r", b"AT*REF=1,0\rHELLO\r", b"AT*=1\r", b"AT*ref=1\r", b"AT*REF=\xff\r"]
)
def test_bad_at_commands_raise_decode_error(data: bytes) -> None:
    """Empty text, a piece without AT*, a bad name or non-ASCII bytes raise DecodeError."""
    with pytest.raises(DecodeError):
        parse_at_commands(data)


def test_real_navdata_checksum() -> None:
    """A captured navdata packet with magic 0x55667789 passes its checksum and has no option."""
    packet = parse_navdata(NAVDATA_BOOTSTRAP)
    assert (packet.magic, packet.state, packet.seq, packet.vision) == (
        0x55667789,
        0x0F8004D0,
        0x3412,
        1,
    )
    assert packet.options == () and packet.checksum_ok is True and packet.demo is None


def test_navdata_demo() -> None:
    """The demo option gives the control state, battery and altitude; a bad sum is caught."""
    data = navdata(state=0x0F8004B5, ctrl_major=4, battery=95, altitude_mm=732)
    packet = parse_navdata(data)
    assert packet.checksum_ok is True
    demo = packet.demo
    assert demo is not None
    assert (demo.ctrl_state_name, demo.battery_pct, demo.altitude_mm) == ("hovering", 95, 732)
    broken = bytearray(data)
    broken[30] ^= 1
    assert parse_navdata(bytes(broken)).checksum_ok is False


def test_state_flags() -> None:
    """Drone-state bits are named in bit order."""
    assert ardrone_state_flags(0x80000001 | 1 << 15) == ("flying", "vbat_low", "emergency")
    assert ardrone_state_flags(0) == ()


@pytest.mark.parametrize(
    "data",
    [
        b"\x01",  # the controller's wake-up
        bytes(16),  # no magic
        NAVDATA_BOOTSTRAP[:16] + b"\x00\x00\x02\x00",  # option size below its header
        NAVDATA_BOOTSTRAP[:16] + b"\x00\x00\x94\x00" + bytes(10),  # option past the end
    ],
)
def test_bad_navdata_raise_decode_error(data: bytes) -> None:
    """Short packets, no magic and options that do not fit raise DecodeError."""
    with pytest.raises(DecodeError):
        parse_navdata(data)


def test_short_demo_option_raises() -> None:
    """A demo option shorter than its fields raises DecodeError."""
    with pytest.raises(DecodeError):
        decode_navdata_demo(bytes(20))


def test_real_d2c_datagram() -> None:
    """A captured drone datagram splits into five frames and their ARCommands."""
    frames = parse_arnetworkal(D2C_DATAGRAM)
    assert [(f.type, f.buffer, f.seq) for f in frames] == [
        (2, 127, 0),
        (2, 127, 1),
        (2, 127, 2),
        (2, 0, 0),
        (4, 126, 0),
    ]
    names = [parse_arcommand(f.payload).name for f in frames if f.buffer != 0]
    assert names == [
        "ardrone3.PilotingState.AttitudeChanged",
        "ardrone3.PilotingState.PositionChanged",
        "ardrone3.PilotingState.AltitudeChanged",
        "common.CommonState.BatteryStateChanged",
    ]
    assert parse_arcommand(frames[4].payload).args == b"\x60"


def test_arsdk_names() -> None:
    """Command names come from arsdk-xml; unknown parts stay numbers."""
    assert arsdk_command_name(1, 0, 1) == "ardrone3.Piloting.TakeOff"
    assert arsdk_command_name(0, 2, 0) == "common.Settings.AllSettings"
    assert arsdk_command_name(1, 4, 40) == "ardrone3.PilotingState.40"
    assert arsdk_command_name(150, 9, 2) == "150.9.2"


@pytest.mark.parametrize(
    "data",
    [
        b"\x02\x0a\x00",  # shorter than a header
        arnet(5, 10, 0, b"abcd"),  # unknown frame type
        arnet(2, 10, 0, b"abcd") + b"\x02",  # trailing byte
        b"\x02\x0a\x00\x03\x00\x00\x00",  # size below the header
        b"\x02\x0a\x00\x40\x00\x00\x00abc",  # size past the datagram
    ],
)
def test_bad_arnetworkal_raise_decode_error(data: bytes) -> None:
    """Short data, unknown types, trailing bytes and sizes that do not fit raise DecodeError."""
    with pytest.raises(DecodeError):
        parse_arnetworkal(data)


def test_discovery_json() -> None:
    """Discovery messages are JSON objects with their NUL removed; others raise DecodeError."""
    assert parse_arsdk_json(b'{"status":0,"c2d_port":2233}\x00') == {"status": 0, "c2d_port": 2233}
    for bad in (b"[1,2]", b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000):
        with pytest.raises(DecodeError):
            parse_arsdk_json(bad)


# --- analyzer -------------------------------------------------------------------------------


def test_at_flow_record() -> None:
    """AT datagrams give command counts, config keys and take-off/landing requests."""
    packets = [
        at(AT_FIRST, ts=1.0),
        at(AT_CONFIG, ts=1.1),
        at(b"AT*REF=4,290718208\rAT*PCMD=5,0,0,0,0,0\r", ts=2.0),
        at(b"AT*REF=6,290718208\r", ts=2.1),
        at(b"AT*REF=7,290717696\r", ts=3.0),
    ]
    flow, (rec,) = feed(packets)
    assert rec.to_dict() == {
        "ts": 1.0,
        "uid": flow.uid,
        "orig_h": "192.168.1.3",
        "orig_p": 44908,
        "resp_h": "192.168.1.1",
        "resp_p": 5556,
        "protocol": "ardrone_at",
        "messages": 8,
        "commands": {"REF": 4, "PCMD": 2, "CTRL": 1, "CONFIG": 1},
        "config_keys": ["general:navdata_demo"],
        "takeoff_requests": 1,
        "land_requests": 1,
    }
    assert flow.service == "ardrone" and flow.meta == {"link": "ardrone"} and flow.sticky


def test_navdata_flow_record() -> None:
    """Navdata gives the last battery, altitude, control state and drone-state flags."""
    packets = [
        nav(navdata(0x0F800490, 2, 96, 0), ts=1.0),
        nav(navdata(0x0F8004B5, 4, 95, 890), ts=2.0),
        nav(navdata(0x0F808494, 2, 4, 0), ts=3.0),
    ]
    flow, (rec,) = feed(packets)
    assert (rec.protocol, rec.messages, rec.battery_pct, rec.checksum_errors) == (
        "ardrone_navdata",
        3,
        4,
        0,
    )
    assert (rec.altitude_m, rec.max_altitude_m, rec.flight_state) == (0.0, 0.89, "landed")
    assert (rec.flying, rec.flew) == (False, True)
    assert rec.state_flags is not None and "vbat_low" in rec.state_flags
    assert flow.meta == {"link": "ardrone"}


def test_navdata_bad_checksum_is_counted_not_used() -> None:
    """A navdata packet failing its checksum is counted and its values are ignored."""
    bad = bytearray(navdata(0x0F8004B5, 4, 10, 5000))
    bad[-1] ^= 0x01
    _, (rec,) = feed([nav(navdata(0x0F800490, 2, 96, 0)), nav(bytes(bad))])
    assert (rec.checksum_errors, rec.battery_pct, rec.max_altitude_m) == (1, 96, 0.0)


def test_wake_up_packets_do_not_use_up_the_probe() -> None:
    """The controller's 1-byte navdata wake-ups do not count against the probe."""
    analyzer = ParrotAnalyzer(RecordingContext(), ParrotOptions(probe_packets=2))
    wake = make_udp(b"\x01", src="192.168.1.3", dst="192.168.1.1", sport=43282, dport=5554)
    _, (rec,) = feed([wake, wake, wake, nav(NAVDATA_BOOTSTRAP)], analyzer)
    assert rec.messages == 1 and rec.checksum_errors == 0


def test_arsdk_flow_record() -> None:
    """ARNetworkAL both ways gives command counts, battery, altitude and position."""
    flying = struct.pack("<i", 3)
    packets = [
        c2d(arnet(4, 11, 0, arcmd(0, 4, 0)), ts=1.0),
        d2c(arnet(1, 139, 0, b"\x00"), ts=1.05),
        c2d(arnet(4, 11, 1, arcmd(1, 0, 1)), ts=1.1),
        d2c(D2C_DATAGRAM, ts=1.2),
        d2c(arnet(4, 126, 1, arcmd(1, 4, 1, flying)), ts=1.3),
        c2d(arnet(2, 0, 0, bytes(16)) + arnet(2, 10, 5, arcmd(1, 0, 2, bytes(9))), ts=1.4),
    ]
    flow, (rec,) = feed(packets)
    assert (rec.protocol, rec.messages) == ("arsdk", 11)
    assert rec.commands == {
        "common.Common.AllStates": 1,
        "ardrone3.Piloting.TakeOff": 1,
        "ardrone3.PilotingState.AttitudeChanged": 1,
        "ardrone3.PilotingState.PositionChanged": 1,
        "ardrone3.PilotingState.AltitudeChanged": 1,
        "common.CommonState.BatteryStateChanged": 1,
        "ardrone3.PilotingState.FlyingStateChanged": 1,
        "ardrone3.Piloting.PCMD": 1,
    }
    assert (rec.battery_pct, rec.flight_state) == (96, "flying")
    assert rec.altitude_m == pytest.approx(25.0099885, abs=1e-6)
    assert rec.last_lat == pytest.approx(48.879, abs=1e-3) and rec.last_lon == 2.3675
    assert flow.service == "parrot_arsdk" and flow.meta == {"link": "parrot_arsdk"}


def test_arsdk_unknown_position_is_skipped() -> None:
    """A PositionChanged of 500/500 (no GPS) leaves the position unset."""
    unknown = arcmd(1, 4, 4, struct.pack("<ddd", 500.0, 500.0, 500.0))
    _, (rec,) = feed([d2c(arnet(2, 127, 0, unknown))])
    assert rec.last_lat is None and rec.commands == {"ardrone3.PilotingState.PositionChanged": 1}


def test_arsdk_short_arguments_are_tolerated() -> None:
    """An AltitudeChanged without its double is counted and ignored."""
    _, (rec,) = feed([d2c(arnet(2, 127, 0, arcmd(1, 4, 8, b"\x01")))])
    assert rec.altitude_m is None and rec.messages == 1


def discovery(payload: bytes, *, from_drone: bool, seq: int, ts: float = 1.0) -> Packet:
    """A segment of the discovery connection to the drone's TCP 44444."""
    if from_drone:
        return make_packet(
            payload, src="192.168.42.1", dst="192.168.42.10", sport=44444, dport=52232, tcp_seq=seq
        )
    return make_packet(
        payload,
        src="192.168.42.10",
        dst="192.168.42.1",
        sport=52232,
        dport=44444,
        tcp_seq=seq,
        ts=ts,
    )


REQUEST = json.dumps(
    {"controller_type": "android", "controller_name": "FreeFlight", "d2c_port": 43210}
).encode()
ANSWER = json.dumps({"status": 0, "c2d_port": 54321, "qos_mode": 0}).encode()


def test_discovery_record_and_learned_ports() -> None:
    """The discovery exchange (request split over segments) is logged and its ports learned."""
    ctx = RecordingContext()
    analyzer = ParrotAnalyzer(ctx)
    request = REQUEST + b"\x00"
    packets = [
        discovery(request[:20], from_drone=False, seq=100),
        discovery(request[20:], from_drone=False, seq=120),
        discovery(request[20:], from_drone=False, seq=120),  # a retransmission
        discovery(ANSWER + b"\x00", from_drone=True, seq=7000),
    ]
    flow, (rec,) = feed(packets, analyzer)
    assert (rec.protocol, rec.messages) == ("arsdk_discovery", 2)
    assert (rec.controller_type, rec.controller_name) == ("android", "FreeFlight")
    assert (rec.d2c_port, rec.c2d_port, rec.discovery_status) == (43210, 54321, 0)
    assert flow.meta == {"link": "parrot_arsdk"}
    # Ports the exchange named are followed even when they are not the defaults.
    odd = make_udp(
        arnet(2, 10, 0, arcmd(1, 0, 2, bytes(9))),
        src="192.168.42.10",
        dst="192.168.42.1",
        sport=50000,
        dport=54321,
    )
    _, (data,) = feed([odd], analyzer)
    assert data.protocol == "arsdk" and data.commands == {"ardrone3.Piloting.PCMD": 1}


def test_discovery_answer_without_nul() -> None:
    """An answer sent without its terminating NUL is read once its object is complete."""
    packets = [
        discovery(REQUEST + b"\x00", from_drone=False, seq=1),
        discovery(ANSWER[:10], from_drone=True, seq=500),
        discovery(ANSWER[10:], from_drone=True, seq=510),
    ]
    _, (rec,) = feed(packets)
    assert rec.messages == 2 and rec.c2d_port == 54321


def test_non_json_on_44444_is_not_parrot() -> None:
    """Other traffic on TCP 44444 makes no record."""
    packets = [discovery(b"GET / HTTP/1.1\r\n\r\n\x00", from_drone=False, seq=1)] * 3
    flow, records = feed(packets)
    assert records == [] and flow.meta == {}


def test_other_ports_are_ignored() -> None:
    """AT commands and ARNetworkAL frames away from the Parrot ports are not read."""
    _, records = feed([make_udp(AT_FIRST, dport=7777)])
    assert records == []
    _, records = feed([make_udp(arnet(2, 10, 0, arcmd(1, 0, 1)), dport=7777)])
    assert records == []


def test_probe_gives_up() -> None:
    """A flow on 5556 without an AT command in its first probe packets is dropped."""
    analyzer = ParrotAnalyzer(RecordingContext(), ParrotOptions(probe_packets=2))
    _, records = feed([at(b"not at all" * 3)] * 2 + [at(AT_FIRST)], analyzer)
    assert records == []


# --- captures -------------------------------------------------------------------------------


def test_capture_freeflight_scenario() -> None:
    """parrot_freeflight.pcap: discovery on 44444, then ARSDK between 9988 and 2233."""
    records = run_capture(FREEFLIGHT)
    (disc,) = records["arsdk_discovery"]
    assert (disc.orig_h, disc.resp_h, disc.resp_p) == ("192.168.42.10", "192.168.42.1", 44444)
    assert (disc.controller_type, disc.controller_name) == ("computer", "dronewatch-lab")
    assert (disc.d2c_port, disc.c2d_port, disc.discovery_status) == (9988, 2233, 0)
    (data,) = records["arsdk"]
    assert (data.orig_p, data.resp_p, data.messages) == (9988, 2233, 406)
    assert data.commands == {
        "ardrone3.Piloting.PCMD": 127,
        "ardrone3.PilotingState.AttitudeChanged": 75,
        "ardrone3.PilotingState.PositionChanged": 75,
        "ardrone3.PilotingState.AltitudeChanged": 75,
        "common.CommonState.BatteryStateChanged": 8,
        "common.Common.AllStates": 1,
        "ardrone3.PilotingSettings.MaxAltitude": 1,
        "ardrone3.Piloting.TakeOff": 1,
        "ardrone3.Piloting.Landing": 1,
    }
    assert data.battery_pct == 89
    assert data.max_altitude_m == pytest.approx(25.09995, abs=1e-5)
    assert (round(data.last_lat or 0, 5), data.last_lon) == (48.87908, 2.3675)


def test_capture_ardrone_takeoff_and_landing() -> None:
    """wsensing2021 take-off/landing: 1361 AT commands in 680 datagrams, 317 navdata packets."""
    records = run_capture(TAKEOFF)
    (cmds,) = records["ardrone_at"]
    assert (cmds.orig_h, cmds.orig_p, cmds.resp_h, cmds.resp_p) == (
        "192.168.1.3",
        44908,
        "192.168.1.1",
        5556,
    )
    assert cmds.messages == 1361
    assert cmds.commands == {"REF": 679, "PCMD": 679, "CTRL": 2, "CONFIG": 1}
    assert cmds.config_keys == ("general:navdata_demo",)
    assert (cmds.takeoff_requests, cmds.land_requests) == (1, 1)
    (nd,) = records["ardrone_navdata"]
    assert (nd.resp_p, nd.messages, nd.checksum_errors) == (5554, 317, 0)
    assert (nd.battery_pct, nd.max_altitude_m, nd.altitude_m) == (96, 0.89, 0.0)
    assert (nd.flight_state, nd.flying, nd.flew) == ("landed", False, True)


def test_capture_flight5() -> None:
    """Flight5: three take-offs and landings, the battery drained to 4 %, 14.966 m at most."""
    records = run_capture(FLIGHT5)
    (cmds,) = records["ardrone_at"]
    assert (cmds.orig_p, cmds.resp_p, cmds.messages) == (5556, 5556, 54584)
    assert cmds.commands == {
        "PCMD_MAG": 27262,
        "REF": 27262,
        "CTRL": 32,
        "CONFIG_IDS": 14,
        "CONFIG": 14,
    }
    assert cmds.config_keys == (
        "custom:session_id",
        "general:navdata_demo",
        "general:navdata_options",
        "userbox:userbox_cmd",
    )
    assert (cmds.takeoff_requests, cmds.land_requests) == (3, 3)
    (nd,) = records["ardrone_navdata"]
    assert (nd.orig_h, nd.messages, nd.checksum_errors) == ("192.168.1.2", 3991, 0)
    assert (nd.battery_pct, nd.max_altitude_m, nd.flight_state) == (4, 14.966, "landed")
    assert nd.state_flags is not None and "vbat_low" in nd.state_flags


# --- fuzzing --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decoders_raise_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes into every Parrot decoder raise only DecodeError."""
    decoders = (
        parse_arsdk_json,
        parse_arnetworkal,
        parse_arcommand,
        parse_at_commands,
        parse_navdata,
        decode_navdata_demo,
    )
    for fn in decoders:
        try:
            fn(data)
        except DecodeError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([5556, 5554, 2233, 9988, 44444]),
            st.one_of(
                st.binary(min_size=1, max_size=120),
                st.binary(max_size=40).map(lambda b: AT_FIRST + b),
                st.binary(max_size=40).map(lambda b: NAVDATA_BOOTSTRAP[:16] + b),
                st.binary(max_size=12).map(lambda b: arnet(2, 127, 0, arcmd(1, 4, 8, b))),
                st.binary(max_size=12).map(lambda b: arnet(2, 127, 0, arcmd(1, 4, 1, b))),
                st.binary(max_size=20).map(lambda b: b'{"c2d_port":' + b),
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_fuzz_analyzer_raises_nothing(datagrams: list[tuple[int, bytes]]) -> None:
    """Arbitrary payloads on every Parrot port, UDP and TCP, raise nothing from the analyzer."""
    ctx = RecordingContext()
    engine = Engine([ParrotAnalyzer(ctx)], ctx)
    seq = 0
    for i, (port, payload) in enumerate(datagrams):
        if port == 44444:
            pkt = make_packet(payload, sport=50000, dport=port, tcp_seq=seq, ts=float(i))
            seq += len(payload)
        else:
            pkt = make_udp(payload, sport=50000, dport=port, ts=float(i))
        engine.process(pkt)
    engine.finish()
    assert len(ctx.records) <= len(datagrams)
