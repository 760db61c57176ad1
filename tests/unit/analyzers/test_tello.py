"""Tests for the Tello analyzer: SDK text, state strings, video counting, the binary protocol."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.tello import (
    TelloAnalyzer,
    TelloCrcError,
    TelloOptions,
    TelloRecord,
    parse_tello_packet,
    parse_tello_state,
    parse_tello_text,
    tello_command_verb,
    tello_crc8,
    tello_crc16,
    tello_msg_name,
)
from dronewatch.core.engine import Engine
from dronewatch.core.flow import Flow, Packet
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, make_flow, make_udp

DRONE = "192.168.10.1"
PHONE = "192.168.10.2"

# Binary packets as published by Tello client projects (seq and checksums included).
TAKEOFF = bytes.fromhex("cc58007c685400e401c216")
"""Take-off (0x0054), packet type 0x68, sequence 0x01E4."""
LAND = bytes.fromhex("cc600027685500e50100bac7")
"""Land (0x0055), sequence 0x01E5, one payload byte 0."""
TAKEOFF_SEQ0 = bytes.fromhex("cc58007c6854000000b289")
REQUEST_IFRAME = bytes.fromhex("cc58007c60250000006c95")
"""Video start (0x0025), packet type 0x60: asks the drone for an I-frame."""

STATE = (
    b"mid:-1;x:0;y:0;z:0;mpry:0,0,0;pitch:0;roll:-1;yaw:12;vgx:0;vgy:0;vgz:0;templ:63;temph:66;"
    b"tof:10;h:0;bat:87;baro:207.52;time:0;agx:-4.00;agy:17.00;agz:-998.00;\r\n"
)
"""An SDK 2.0 state string, as the drone sends it to port 8890."""


def binary(msg_id: int, payload: bytes = b"", *, pkt_type: int = 0x68, seq: int = 1) -> bytes:
    """A binary Tello packet packed by hand."""
    length = 11 + len(payload)
    head = b"\xcc" + struct.pack("<H", length << 3)
    head += bytes([tello_crc8(head)])
    body = head + struct.pack("<BHH", pkt_type, msg_id, seq) + payload
    return body + struct.pack("<H", tello_crc16(body))


def to_drone(payload: bytes, ts: float = 1.0, sport: int = 50602) -> Packet:
    """A datagram from the controller to the drone's port 8889."""
    return make_udp(payload, src=PHONE, dst=DRONE, sport=sport, dport=8889, ts=ts)


def from_drone(payload: bytes, ts: float = 1.1, dport: int = 50602) -> Packet:
    """A datagram from the drone's port 8889 back to the controller."""
    return make_udp(payload, src=DRONE, dst=PHONE, sport=8889, dport=dport, ts=ts)


def state_packet(payload: bytes = STATE, ts: float = 2.0) -> Packet:
    """A state datagram from the drone to the controller's port 8890."""
    return make_udp(payload, src=DRONE, dst=PHONE, sport=8889, dport=8890, ts=ts)


def feed(
    packets: list[Packet], analyzer: TelloAnalyzer | None = None
) -> tuple[Flow, list[TelloRecord]]:
    """Run packets of one flow through an analyzer; the flow and the records written."""
    ctx = RecordingContext()
    analyzer = analyzer or TelloAnalyzer(ctx)
    analyzer.ctx = ctx
    flow = make_flow(packets[0])
    for pkt in packets:
        analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    records = [r for r in ctx.of("tello") if isinstance(r, TelloRecord)]
    assert len(records) == len(ctx.records)
    return flow, records


def test_published_binary_packets_pass_both_checksums() -> None:
    """Take-off, land and I-frame request packets published by Tello clients decode."""
    takeoff, land = parse_tello_packet(TAKEOFF), parse_tello_packet(LAND)
    assert (takeoff.name, takeoff.pkt_type, takeoff.seq, takeoff.payload) == (
        "takeoff",
        0x68,
        0x01E4,
        b"",
    )
    assert (land.name, land.seq, land.payload) == ("land", 0x01E5, b"\x00")
    assert parse_tello_packet(TAKEOFF_SEQ0).seq == 0
    assert parse_tello_packet(REQUEST_IFRAME).name == "video_start"


def test_checksums() -> None:
    """The header CRC-8 and the packet CRC-16 are the DUML ones (init 0x77 and 0x3692)."""
    assert tello_crc8(TAKEOFF[:3]) == 0x7C
    assert tello_crc16(TAKEOFF[:-2]) == 0x16C2
    assert tello_crc8(b"") == 0x77 and tello_crc16(b"") == 0x3692


def test_bad_packet_checksum_raises_crc_error() -> None:
    """A changed sequence byte fails the CRC-16 with TelloCrcError, a DecodeError."""
    bad = bytearray(TAKEOFF)
    bad[7] ^= 0x01
    with pytest.raises(TelloCrcError):
        parse_tello_packet(bytes(bad))
    assert issubclass(TelloCrcError, DecodeError)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        TAKEOFF[:10],  # shorter than a packet
        b"\xcd" + TAKEOFF[1:],  # no start byte
        TAKEOFF[:3] + b"\x00" + TAKEOFF[4:],  # header checksum
        LAND[:-1],  # length longer than the datagram
    ],
)
def test_malformed_packets_raise_decode_error(data: bytes) -> None:
    """Short packets, no 0xCC, a bad header checksum and a cut packet raise DecodeError."""
    with pytest.raises(DecodeError) as info:
        parse_tello_packet(data)
    assert not isinstance(info.value, TelloCrcError)


def test_message_names() -> None:
    """Binary message ids have names; unknown ones are shown in hex."""
    assert [tello_msg_name(n) for n in (0x56, 0x50, 0x1050, 0x7777)] == [
        "flight_data",
        "stick",
        "log_header",
        "0x7777",
    ]


def test_text_and_verbs() -> None:
    """SDK text is stripped; command words are found, case-insensitively for plain words."""
    assert parse_tello_text(b"battery?\r\n") == "battery?"
    assert tello_command_verb("rc 0 0 10 0") == "rc"
    assert tello_command_verb("TAKEOFF") == "takeoff"
    assert tello_command_verb("EXT led 255 0 0") == "EXT"
    assert tello_command_verb("hello") is None
    for bad in (b"", b"\xff\xfe", b"a\x01b", b"x" * 600, b"\r\n"):
        with pytest.raises(DecodeError):
            parse_tello_text(bad)


def test_state_string() -> None:
    """A state string splits into its fields."""
    fields = parse_tello_state(STATE)
    assert (fields["bat"], fields["h"], fields["tof"], fields["templ"]) == ("87", "0", "10", "63")
    assert fields["mpry"] == "0,0,0" and fields["agz"] == "-998.00"
    for bad in (b"ok", b"pitch:0;roll", b"a:1;b:2;c:3", b"\x00\x00\x00\x01\x67"):
        with pytest.raises(DecodeError):
            parse_tello_state(bad)


def test_sdk_session_record() -> None:
    """SDK commands and answers give one record: commands in order, counts, answers, battery."""
    packets = [
        to_drone(b"command", ts=1.0),
        from_drone(b"ok", ts=1.1),
        to_drone(b"battery?", ts=1.2),
        from_drone(b"87\r\n", ts=1.3),
        to_drone(b"takeoff", ts=1.4),
        from_drone(b"ok", ts=1.5),
        to_drone(b"rc 0 0 0 0", ts=1.6),
        to_drone(b"rc 0 0 10 0", ts=1.7),
        to_drone(b"land", ts=2.0),
        from_drone(b"error Motor stop", ts=2.1),
    ]
    flow, (rec,) = feed(packets)
    assert rec.to_dict() == {
        "ts": 1.0,
        "uid": flow.uid,
        "orig_h": PHONE,
        "orig_p": 50602,
        "resp_h": DRONE,
        "resp_p": 8889,
        "channel": "sdk",
        "commands": ["command", "battery?", "takeoff", "rc 0 0 0 0", "rc 0 0 10 0", "land"],
        "command_counts": {"rc": 2, "command": 1, "battery?": 1, "takeoff": 1, "land": 1},
        "responses": ["ok", "87", "ok", "error Motor stop"],
        "battery_pct": 87,
    }
    assert flow.service == "tello" and flow.meta == {"link": "tello"} and flow.sticky


def test_commands_are_bounded() -> None:
    """Only the first max_commands command lines are listed; all are counted."""
    analyzer = TelloAnalyzer(RecordingContext(), TelloOptions(max_commands=3))
    packets = [to_drone(b"command")] + [to_drone(f"rc 0 0 {i} 0".encode()) for i in range(10)]
    _, (rec,) = feed(packets, analyzer)
    assert rec.commands == ("command", "rc 0 0 0 0", "rc 0 0 1 0")
    assert rec.command_counts == {"rc": 10, "command": 1}


def test_unknown_text_on_8889_is_not_tello() -> None:
    """Text that is no SDK command, and answers alone, make no record."""
    flow, records = feed([to_drone(b"hello there"), from_drone(b"ok")])
    assert records == [] and flow.meta == {}


def test_state_flow_record() -> None:
    """State strings to 8890 give the last battery, height, distance and temperatures."""
    later = STATE.replace(b"bat:87", b"bat:85").replace(b"h:0;", b"h:120;")
    flow, (rec,) = feed([state_packet(ts=2.0), state_packet(later, ts=2.1)])
    assert (rec.channel, rec.state_packets, rec.battery_pct, rec.height_cm) == ("state", 2, 85, 120)
    assert (rec.tof_cm, rec.temp_low_c, rec.temp_high_c) == (10, 63, 66)
    assert rec.commands is None and rec.video_bytes is None
    assert flow.sticky and flow.meta == {"link": "tello"}


def test_video_counted_from_the_flow() -> None:
    """A video flow on 11111 starting with an H.264 start code is counted, not decoded."""
    nal = b"\x00\x00\x00\x01\x67" + bytes(1455)
    first = make_udp(nal, src=DRONE, dst=PHONE, sport=62512, dport=11111, ts=3.0)
    rest = make_udp(bytes(800), src=DRONE, dst=PHONE, sport=62512, dport=11111, ts=3.1)
    ctx = RecordingContext()
    analyzer = TelloAnalyzer(ctx)
    flow = make_flow(first)
    for pkt in (first, rest):
        flow.orig_pkts += 1
        flow.orig_payload_bytes += len(pkt.payload)
        analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    (rec,) = ctx.of("tello")
    assert isinstance(rec, TelloRecord)
    assert (rec.channel, rec.video_packets, rec.video_bytes) == ("video", 2, 1460 + 800)
    assert not flow.sticky


def test_video_from_a_known_tello_without_start_code() -> None:
    """A flow on 11111 from an address already seen as a Tello is video even mid-stream."""
    analyzer = TelloAnalyzer(RecordingContext())
    feed([to_drone(b"command"), to_drone(b"streamon")], analyzer)
    mid = make_udp(b"\x41\x9a" + bytes(500), src=DRONE, dst=PHONE, sport=62512, dport=11111)
    _, (rec,) = feed([mid], analyzer)
    assert rec.channel == "video"


def test_random_traffic_on_11111_is_not_video() -> None:
    """Datagrams on 11111 from an unknown host without a start code make no record."""
    pkt = make_udp(b"\x41\x9a" + bytes(500), src="10.0.0.5", dst="10.0.0.6", dport=11111)
    _, records = feed([pkt] * 3)
    assert records == []


def test_binary_session_record() -> None:
    """The app's handshake and binary packets give a binary record with message counts."""
    packets = [
        to_drone(b"conn_req:\x96\x17", ts=4.0),
        from_drone(b"conn_ack:\x96\x17", ts=4.1),
        to_drone(TAKEOFF, ts=4.2),
        from_drone(binary(0x56, bytes(24), pkt_type=0x10), ts=4.3),
        from_drone(binary(0x56, bytes(24), pkt_type=0x10, seq=2), ts=4.4),
        to_drone(LAND, ts=5.0),
    ]
    flow, (rec,) = feed(packets)
    assert (rec.channel, rec.packets, rec.crc_errors, rec.video_port) == ("binary", 4, 0, 6038)
    assert rec.messages == {"flight_data": 2, "conn_ack": 1, "takeoff": 1, "land": 1}
    assert rec.commands is None and flow.meta == {"link": "tello"}


def test_binary_crc_errors() -> None:
    """A binary packet with a bad CRC-16 is counted as an error on a recognised flow."""
    bad = bytearray(LAND)
    bad[9] = 1
    _, (rec,) = feed([to_drone(TAKEOFF), to_drone(bytes(bad))])
    assert (rec.packets, rec.crc_errors) == (1, 1)


def test_video_port_from_the_handshake() -> None:
    """The video flow to the port named in conn_req is recognised as Tello video."""
    analyzer = TelloAnalyzer(RecordingContext())
    feed([to_drone(b"conn_req:\x96\x17")], analyzer)
    video = make_udp(bytes(1000), src=DRONE, dst=PHONE, sport=62000, dport=6038)
    _, (rec,) = feed([video], analyzer)
    assert rec.channel == "video"


def test_other_ports_are_ignored() -> None:
    """SDK text away from the Tello ports is not read."""
    _, records = feed([make_udp(b"takeoff", src=PHONE, dst=DRONE, dport=9999)])
    assert records == []


def test_probe_gives_up() -> None:
    """A flow on 8889 that shows no Tello datagram in its first probe packets is dropped."""
    analyzer = TelloAnalyzer(RecordingContext(), TelloOptions(probe_packets=2))
    _, records = feed(
        [to_drone(b"\x00\x01"), to_drone(b"\x00\x02"), to_drone(b"command")], analyzer
    )
    assert records == []


def test_through_the_engine() -> None:
    """Run by the engine, the command, state and video flows each give one record."""
    ctx = RecordingContext()
    engine = Engine([TelloAnalyzer(ctx)], ctx)
    engine.process(to_drone(b"command", ts=1.0))
    engine.process(from_drone(b"ok", ts=1.1))
    engine.process(to_drone(b"streamon", ts=1.2))
    engine.process(state_packet(ts=1.3))
    video = make_udp(bytes(1400), src=DRONE, dst=PHONE, sport=62512, dport=11111, ts=1.4)
    engine.process(video)
    engine.finish()
    records = sorted((r for r in ctx.records if isinstance(r, TelloRecord)), key=lambda r: r.ts)
    assert [r.channel for r in records] == ["sdk", "state", "video"]
    assert records[0].responses == ("ok",) and records[1].battery_pct == 87
    assert records[2].video_bytes == 1400


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decoders_raise_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes into the binary, text and state decoders raise only DecodeError."""
    for fn in (parse_tello_packet, parse_tello_text, parse_tello_state):
        try:
            fn(data)
        except DecodeError:
            pass


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([8889, 8890, 11111]),
            st.booleans(),
            st.one_of(
                st.binary(min_size=1, max_size=120),
                st.sampled_from([b"command", b"ok", STATE, TAKEOFF, b"conn_req:"]),
                st.binary(max_size=20).map(lambda b: b"\xcc" + b),
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_fuzz_analyzer_raises_nothing(datagrams: list[tuple[int, bool, bytes]]) -> None:
    """Arbitrary datagrams on the Tello ports raise nothing from the analyzer."""
    ctx = RecordingContext()
    engine = Engine([TelloAnalyzer(ctx)], ctx)
    for i, (port, outbound, payload) in enumerate(datagrams):
        src, dst = (PHONE, DRONE) if outbound else (DRONE, PHONE)
        engine.process(make_udp(payload, src=src, dst=dst, sport=40000, dport=port, ts=float(i)))
    engine.finish()
    assert len(ctx.records) <= len(datagrams)
