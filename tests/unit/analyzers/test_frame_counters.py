"""The C frame counters (`dronewatch.fastpath`) and their Python twins count the same frames and
read the same values from any sequence of datagrams: valid, wrapped, cut, corrupted or random."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers import dji_wifi, mavlink, parrot, tello
from dronewatch.analyzers.parrot import ARSDK_CLASSES, ARSDK_COMMANDS, arsdk_command_name
from tests.unit.analyzers import test_mavlink as mav_frames
from tests.unit.analyzers.test_dji_wifi import duml
from tests.unit.analyzers.test_parrot import arnet

_fastpath = pytest.importorskip("dronewatch.fastpath._fastpath")


def mangle(data: bytes, cut: int, flip_at: int, flip: int) -> bytes:
    """`data` cut short by `cut` bytes and with one byte changed (when in range)."""
    out = bytearray(data[: max(0, len(data) - cut)])
    if flip_at < len(out):
        out[flip_at] ^= flip
    return bytes(out)


mangling = st.tuples(
    st.sampled_from([0, 0, 0, 1, 2, 5]), st.integers(0, 120), st.sampled_from([0, 0, 1, 0x80, 0xFF])
)

duml_frame = st.builds(
    duml,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.integers(0, 5),  # few command sets and ids, so commands repeat
    st.integers(0, 3),
    st.binary(max_size=30),
    cmd_type=st.sampled_from([0x00, 0x40, 0x80, 0xC0]),
)
duml_datagram = st.one_of(
    st.builds(
        lambda wrapper, frames, m: mangle(wrapper + b"".join(frames), *m),
        st.binary(max_size=20),
        st.lists(duml_frame, min_size=1, max_size=4),
        mangling,
    ),
    st.binary(max_size=60),
)


def duml_state(c: object) -> tuple[object, ...]:
    return tuple(
        getattr(c, name)
        for name in (
            "frames",
            "crc_errors",
            "responses",
            "wrapper_len",
            "senders",
            "receivers",
            "cmd_sets",
            "commands",
        )
    )


@settings(max_examples=400, deadline=None)
@given(st.lists(duml_datagram, min_size=1, max_size=8), st.integers(0, 24))
def test_duml_counters_agree(datagrams: list[bytes], window: int) -> None:
    twin, c = dji_wifi.DumlCounter(window), _fastpath.DumlCounter(window)
    for data in datagrams:
        assert c.feed(data) == twin.feed(data)
    assert duml_state(c) == duml_state(twin)


def test_duml_counter_reads_a_captured_frame() -> None:
    """Not only the twins agree: the published example frame counts as one GENERAL frame."""
    from tests.unit.analyzers.test_dji_wifi import PUBLISHED

    c = _fastpath.DumlCounter()
    assert c.feed(b"\x00\x01" + PUBLISHED) == 1
    assert (c.frames, c.crc_errors, c.wrapper_len, c.commands) == (1, 0, 2, {(0, 0x4F): 1})
    assert c.feed(PUBLISHED[:-1] + bytes([PUBLISHED[-1] ^ 1])) == 0
    assert c.crc_errors == 1


def test_duml_commands_are_bounded() -> None:
    """At most 256 distinct commands are kept per flow, by both twins."""
    frames = b"".join(duml(2, 3, 1, s, i) for s in range(4) for i in range(100))
    for c in (dji_wifi.DumlCounter(), _fastpath.DumlCounter()):
        for pos in range(0, len(frames), 13 * 20):
            c.feed(frames[pos : pos + 13 * 20])
        assert c.frames == 400 and len(c.commands) == 256


VALUE_COMMANDS = [
    (0, 5, 1, st.binary(max_size=2)),  # battery
    (1, 4, 8, st.one_of(st.binary(max_size=9), st.floats().map(lambda v: struct.pack("<d", v)))),
    (
        1,
        4,
        4,
        st.one_of(
            st.binary(max_size=25),
            st.tuples(st.sampled_from([500.0, 48.8, -1.5]), st.sampled_from([500.0, 2.3])).map(
                lambda ll: struct.pack("<ddd", ll[0], ll[1], 30.0)
            ),
        ),
    ),
    (
        1,
        4,
        1,
        st.one_of(st.binary(max_size=5), st.integers(-3, 9).map(lambda v: struct.pack("<i", v))),
    ),
]
arcommand = st.one_of(
    *(
        args.map(lambda a, p=p, k=k, c=c: bytes([p, k]) + struct.pack("<H", c) + a)
        for p, k, c, args in VALUE_COMMANDS
    ),
    st.tuples(st.integers(0, 3), st.integers(0, 6), st.integers(0, 12)).map(
        lambda t: bytes([t[0], t[1]]) + struct.pack("<H", t[2])
    ),
    st.binary(max_size=5),
)
arnet_frame = st.builds(
    arnet, st.integers(0, 5), st.sampled_from([0, 1, 10, 11, 127]), st.integers(0, 255), arcommand
)
arnet_datagram = st.one_of(
    st.builds(
        lambda frames, m: mangle(b"".join(frames), *m),
        st.lists(arnet_frame, min_size=1, max_size=4),
        mangling,
    ),
    st.binary(max_size=40),
)


def arsdk_state(c: object) -> tuple[object, ...]:
    names = (
        "messages",
        "commands",
        "battery",
        "altitude",
        "max_altitude",
        "position",
        "flying_state",
    )
    return tuple(getattr(c, name) for name in names)


@settings(max_examples=400, deadline=None)
@given(st.lists(arnet_datagram, min_size=1, max_size=8), st.integers(0, 6))
def test_arsdk_counters_agree(datagrams: list[bytes], max_names: int) -> None:
    twin, c = parrot.ArsdkCounter(max_names), _fastpath.ArsdkCounter(max_names)
    for data in datagrams:
        assert c.feed(data) == twin.feed(data)
    # NaN altitudes compare unequal to themselves: compare their text.
    assert repr(arsdk_state(c)) == repr(arsdk_state(twin))


def test_arsdk_counter_reads_values() -> None:
    c = _fastpath.ArsdkCounter()
    data = arnet(4, 127, 1, bytes([0, 5]) + struct.pack("<H", 1) + bytes([87])) + arnet(
        2, 127, 2, bytes([1, 4]) + struct.pack("<Hd", 8, 12.5)
    )
    assert c.feed(data) == 2
    assert c.feed(data[:-1]) == -1  # a cut frame: the datagram is not ARNetworkAL, none counted
    assert (c.messages, c.battery, c.altitude, c.max_altitude) == (2, 87, 12.5, 12.5)
    assert c.commands == [((0, 5, 1), 1), ((1, 4, 8), 1)]


def test_arsdk_command_names_are_distinct() -> None:
    """The counters count commands by id; the record counts them by name: one name per id."""
    ids = [(p, k, c) for (p, k), names in ARSDK_COMMANDS.items() for c in range(len(names) + 2)]
    ids += [(p, k, 0) for p, k in ARSDK_CLASSES] + [(9, 9, 9), (0, 99, 0)]
    names = [arsdk_command_name(*i) for i in set(ids)]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("kind", ["DumlCounter", "ArsdkCounter"])
def test_counters_refuse_bad_arguments(kind: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        getattr(_fastpath, kind)(-1)
    with pytest.raises(TypeError):
        _fastpath.FrameCounter()
    with pytest.raises(TypeError):
        getattr(_fastpath, kind)().feed("text, not bytes")


mav_frame = st.one_of(
    st.builds(
        lambda t, a, c, s, v: mav_frames.heartbeat(t, a, compid=c, sysid=s, version=v),
        st.sampled_from([2, 6, 13, 30]),  # quadrotor, GCS, hexarotor, camera
        st.sampled_from([3, 8, 12]),  # ArduPilot, invalid, PX4
        st.sampled_from([1, 100, 190]),
        st.sampled_from([1, 255]),
        st.sampled_from([1, 2]),
    ),
    st.builds(
        lambda lat, lon, v: mav_frames.position(lat, lon, 30.0, version=v),
        st.sampled_from([0.0, 0.00001, 47.39, -122.1]),
        st.sampled_from([0.0, 8.54, -3.2]),
        st.sampled_from([1, 2]),
    ),
    st.builds(
        lambda m, p, v, s: mav_frames.frame(m, p, version=v if m < 256 else 2, sysid=s),
        st.sampled_from([1, 24, 30, 74, 12920]),
        st.binary(max_size=40),
        st.sampled_from([1, 2]),
        st.integers(0, 255),
    ),
    st.builds(  # message ids without a CRC_EXTRA: counted unverified once recognised
        lambda m, p: mav_frames.frame(m, p, crc_extra=7),
        st.sampled_from([3, 9999, 70000]),
        st.binary(max_size=10),
    ),
    st.builds(
        lambda p: mav_frames.frame(1, p, signature=bytes(13)),
        st.binary(max_size=10),
    ),
)
mav_data = st.one_of(
    st.builds(
        lambda gap, frames, m: mangle(gap + b"".join(frames), *m),
        st.sampled_from([b"", b"\x00", b"\xfd", b"\xfe\x01"]),
        st.lists(mav_frame, min_size=1, max_size=4),
        mangling,
    ),
    st.binary(max_size=60),
)
MAV_FIELDS = (
    "recognised",
    "frames",
    "crc_errors",
    "unverified",
    "heartbeats",
    "versions",
    "sysids",
    "compids",
    "msgs",
    "signed",
    "gcs_seen",
    "gcs_side",
    "vehicle",
    "position",
)


def mav_state(c: object) -> tuple[object, ...]:
    return tuple((name, getattr(c, name)) for name in MAV_FIELDS)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(mav_data, st.booleans(), st.booleans()), min_size=1, max_size=8),
    st.integers(0, 3),
)
def test_mavlink_counters_agree(chunks: list[tuple[bytes, bool, bool]], max_ids: int) -> None:
    """Datagrams fed whole, and TCP-like buffers scanned for what they hold so far, in both
    directions: the same frames, ids, heartbeats, positions, ground-station side and bytes used."""
    extras = mavlink.MAVLINK_CRC_EXTRAS
    twin, c = mavlink.MavlinkCounter(extras, max_ids), _fastpath.MavlinkCounter(extras, max_ids)
    for data, whole, from_orig in chunks:
        if whole:
            assert c.feed(data, from_orig) == twin.feed(data, from_orig)
        else:
            assert c.scan(data, False, from_orig) == twin.scan(data, False, from_orig)
    assert mav_state(c) == mav_state(twin)


def test_mavlink_counter_reads_a_captured_heartbeat() -> None:
    """Not only the twins agree: a real camera heartbeat recognises the flow, and a vehicle's
    heartbeat from the responder says the originator is the ground station."""
    from tests.unit.analyzers.test_mavlink import V2_CAMERA_HEARTBEAT

    c = _fastpath.MavlinkCounter(mavlink.MAVLINK_CRC_EXTRAS)
    assert c.feed(V2_CAMERA_HEARTBEAT, False) == 1
    assert (c.recognised, c.heartbeats, c.compids, c.gcs_side) == (True, 1, {100}, "orig")
    assert c.vehicle is not None and c.vehicle[1] == 30  # MAV_TYPE_CAMERA
    assert c.scan(V2_CAMERA_HEARTBEAT[:-1], False) == 0  # incomplete: kept for the next segment
    with pytest.raises(ValueError, match="crc_extras"):
        _fastpath.MavlinkCounter({1 << 24: 1})
    with pytest.raises(ValueError, match="max_ids"):
        _fastpath.MavlinkCounter({}, -1)


tello_value = st.one_of(
    st.integers(-300, 300).map(str),
    st.sampled_from(
        [
            "",
            "87",
            "-0",
            "+5",
            "007",
            "2.5",
            "3.5",
            "-2.5",
            "1e3",
            "1e400",
            "-1e400",
            "inf",
            "nan",
            "1_0",
            "0x10",
            " 12 ",
            "12 ",
            "1.",
            ".5",
            "9" * 16,
            "9" * 40,
            "1e-400",
            "x",
        ]
    ),
)
tello_key = st.sampled_from(
    ["bat", "h", "tof", "templ", "temph", "pitch", "roll", "yaw", "mid", "agz", "bat ", "foo"]
)
tello_good_piece = st.builds(
    lambda k, v, pad: f"{pad}{k}:{v}{pad}", tello_key, tello_value, st.sampled_from(["", " ", "  "])
)
tello_piece = st.one_of(  # mostly well formed: one bad piece refuses the whole datagram
    tello_good_piece,
    tello_good_piece,
    tello_good_piece,
    st.sampled_from(["", " ", "novalue", ":5", "a:b:c"]),
)
tello_datagram = st.one_of(
    st.builds(
        lambda core, pieces, end, lead, tail: (
            (lead + core + ";".join(pieces) + end).encode() + tail
        ),
        st.sampled_from(["", "pitch:0;roll:0;yaw:0;", "mid:-1;x:0;"]),  # three known keys, two
        st.lists(tello_piece, min_size=0, max_size=8),
        st.sampled_from(["", ";", ";\r\n"]),
        st.sampled_from(["", " ", "\t", "\x00"]),
        st.sampled_from(
            [b"", b"", b"", b"\x00", b"\r\n", b"\x7f", b"\xc3\xa9", b"\x01", b" " * 600]
        ),
    ),
    st.binary(max_size=40),
)


def tello_state(c: object) -> tuple[object, ...]:
    names = ("packets", "battery", "height", "tof", "temp_low", "temp_high")
    return tuple((name, getattr(c, name)) for name in names)


@settings(max_examples=600, deadline=None)
@given(st.lists(tello_datagram, min_size=1, max_size=6))
def test_tello_state_counters_agree(datagrams: list[bytes]) -> None:
    """State strings well formed or not (values no number, out of range, halves, keys repeated,
    pieces without a key, non-ASCII, control bytes, too long): the same count and values."""
    twin, c = tello.TelloStateCounter(), _fastpath.TelloStateCounter()
    for data in datagrams:
        assert c.feed(data) == twin.feed(data)
        assert tello_state(c) == tello_state(twin)


def test_tello_state_counter_reads_a_state_string() -> None:
    """Not only the twins agree: the SDK's state string gives its values, rounded as Python rounds
    (halves to even), and a value that is no finite number keeps the one before."""
    c = _fastpath.TelloStateCounter()
    line = b"mid:-1;x:0;y:0;z:0;pitch:0;roll:0;yaw:0;vgx:0;vgy:0;vgz:0;templ:62;temph:64;"
    assert c.feed(line + b"tof:10;h:2.5;bat:87;baro:183.41;time:0;agx:-6.00;\r\n") == 1
    assert tello_state(c)[1:] == (
        ("battery", 87),
        ("height", 2),
        ("tof", 10),
        ("temp_low", 62),
        ("temp_high", 64),
    )
    assert c.feed(b"pitch:0;roll:0;bat:inf;h:3.5;") == 1
    assert (c.packets, c.battery, c.height) == (2, 87, 4)
    assert c.feed(b"pitch:0;roll:0;") == -1  # two known fields: not a state string
    assert c.feed(b"pitch:0;roll:0;yaw;") == -1  # a piece without a key
    assert c.packets == 2
    with pytest.raises(TypeError):
        _fastpath.TelloStateCounter(1)
