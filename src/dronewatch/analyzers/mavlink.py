"""MAVLink v1 and v2 on UDP (any port; 14550, 14551, 14540 typical) and TCP (5760): the
telemetry and command link between a PX4/ArduPilot vehicle and its ground station.

Frame layouts (MAVLink serialization guide, mavlink.io/en/guide/serialization.html):

  v1: 0xFE len seq sysid compid msgid(1)            payload crc(2)
  v2: 0xFD len incompat compat seq sysid compid msgid(3, LE) payload crc(2) [signature(13)]

The checksum is CRC-16/MCRF4XX ("X.25") over every byte after the magic, then over the message's
CRC_EXTRA byte (a hash of its definition). A frame is verified only when its message id is in
`MAVLINK_MESSAGES`; one of another id is accepted on its framing alone and counted as unverified.
A flow is taken for MAVLink once one frame passes its checksum, so random UDP that happens to
start with 0xFE/0xFD is not. HEARTBEAT gives the vehicle type and autopilot, GLOBAL_POSITION_INT
its position. Over TCP frames may be split and merged across segments: each direction keeps a
bounded stream buffer.
"""

from __future__ import annotations

import binascii
import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from dronewatch.analyzers._probe import Misses
from dronewatch.core.flow import IP_PROTO_TCP, IP_PROTO_UDP, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError
from dronewatch.fastpath import counter_type

logger = logging.getLogger(__name__)

MAVLINK_V1_MAGIC = 0xFE
MAVLINK_V2_MAGIC = 0xFD
MAVLINK_V1_HEADER_LEN = 6
MAVLINK_V2_HEADER_LEN = 10
MAVLINK_CRC_LEN = 2
MAVLINK_SIGNATURE_LEN = 13
MAVLINK_IFLAG_SIGNED = 0x01
"""The only incompatibility flag defined: a 13-byte signature follows the checksum."""
MAVLINK_GCS_SYSID = 255
"""The system id ground stations send as, by convention."""
MAVLINK_MSG_HEARTBEAT = 0
MAVLINK_MSG_GLOBAL_POSITION_INT = 33
MAVLINK_TCP_PORTS = frozenset({5760, 5762, 5763})
"""TCP ports of ArduPilot SITL and companion-computer links, read even mid-stream."""
MAV_TYPE_GCS = 6
MAV_AUTOPILOT_INVALID = 8
MAV_MODE_FLAG_SAFETY_ARMED = 0x80
MAV_COMP_ID_AUTOPILOT1 = 1

# Message id -> (name, CRC_EXTRA), generated once from pymavlink's `ardupilotmega` dialect (which
# includes `common`): every message below 256 plus the common ones above it seen on drone links.
MAVLINK_MESSAGES: dict[int, tuple[str, int]] = {
    0: ("HEARTBEAT", 50),
    1: ("SYS_STATUS", 124),
    2: ("SYSTEM_TIME", 137),
    4: ("PING", 237),
    5: ("CHANGE_OPERATOR_CONTROL", 217),
    6: ("CHANGE_OPERATOR_CONTROL_ACK", 104),
    7: ("AUTH_KEY", 119),
    11: ("SET_MODE", 89),
    20: ("PARAM_REQUEST_READ", 214),
    21: ("PARAM_REQUEST_LIST", 159),
    22: ("PARAM_VALUE", 220),
    23: ("PARAM_SET", 168),
    24: ("GPS_RAW_INT", 24),
    25: ("GPS_STATUS", 23),
    26: ("SCALED_IMU", 170),
    27: ("RAW_IMU", 144),
    28: ("RAW_PRESSURE", 67),
    29: ("SCALED_PRESSURE", 115),
    30: ("ATTITUDE", 39),
    31: ("ATTITUDE_QUATERNION", 246),
    32: ("LOCAL_POSITION_NED", 185),
    33: ("GLOBAL_POSITION_INT", 104),
    34: ("RC_CHANNELS_SCALED", 237),
    35: ("RC_CHANNELS_RAW", 244),
    36: ("SERVO_OUTPUT_RAW", 222),
    37: ("MISSION_REQUEST_PARTIAL_LIST", 212),
    38: ("MISSION_WRITE_PARTIAL_LIST", 9),
    39: ("MISSION_ITEM", 254),
    40: ("MISSION_REQUEST", 230),
    41: ("MISSION_SET_CURRENT", 28),
    42: ("MISSION_CURRENT", 28),
    43: ("MISSION_REQUEST_LIST", 132),
    44: ("MISSION_COUNT", 221),
    45: ("MISSION_CLEAR_ALL", 232),
    46: ("MISSION_ITEM_REACHED", 11),
    47: ("MISSION_ACK", 153),
    48: ("SET_GPS_GLOBAL_ORIGIN", 41),
    49: ("GPS_GLOBAL_ORIGIN", 39),
    50: ("PARAM_MAP_RC", 78),
    51: ("MISSION_REQUEST_INT", 196),
    54: ("SAFETY_SET_ALLOWED_AREA", 15),
    55: ("SAFETY_ALLOWED_AREA", 3),
    61: ("ATTITUDE_QUATERNION_COV", 167),
    62: ("NAV_CONTROLLER_OUTPUT", 183),
    63: ("GLOBAL_POSITION_INT_COV", 119),
    64: ("LOCAL_POSITION_NED_COV", 191),
    65: ("RC_CHANNELS", 118),
    66: ("REQUEST_DATA_STREAM", 148),
    67: ("DATA_STREAM", 21),
    69: ("MANUAL_CONTROL", 243),
    70: ("RC_CHANNELS_OVERRIDE", 124),
    73: ("MISSION_ITEM_INT", 38),
    74: ("VFR_HUD", 20),
    75: ("COMMAND_INT", 158),
    76: ("COMMAND_LONG", 152),
    77: ("COMMAND_ACK", 143),
    81: ("MANUAL_SETPOINT", 106),
    82: ("SET_ATTITUDE_TARGET", 49),
    83: ("ATTITUDE_TARGET", 22),
    84: ("SET_POSITION_TARGET_LOCAL_NED", 143),
    85: ("POSITION_TARGET_LOCAL_NED", 140),
    86: ("SET_POSITION_TARGET_GLOBAL_INT", 5),
    87: ("POSITION_TARGET_GLOBAL_INT", 150),
    89: ("LOCAL_POSITION_NED_SYSTEM_GLOBAL_OFFSET", 231),
    90: ("HIL_STATE", 183),
    91: ("HIL_CONTROLS", 63),
    92: ("HIL_RC_INPUTS_RAW", 54),
    93: ("HIL_ACTUATOR_CONTROLS", 47),
    100: ("OPTICAL_FLOW", 175),
    101: ("GLOBAL_VISION_POSITION_ESTIMATE", 102),
    102: ("VISION_POSITION_ESTIMATE", 158),
    103: ("VISION_SPEED_ESTIMATE", 208),
    104: ("VICON_POSITION_ESTIMATE", 56),
    105: ("HIGHRES_IMU", 93),
    106: ("OPTICAL_FLOW_RAD", 138),
    107: ("HIL_SENSOR", 108),
    108: ("SIM_STATE", 32),
    109: ("RADIO_STATUS", 185),
    110: ("FILE_TRANSFER_PROTOCOL", 84),
    111: ("TIMESYNC", 34),
    112: ("CAMERA_TRIGGER", 174),
    113: ("HIL_GPS", 124),
    114: ("HIL_OPTICAL_FLOW", 237),
    115: ("HIL_STATE_QUATERNION", 4),
    116: ("SCALED_IMU2", 76),
    117: ("LOG_REQUEST_LIST", 128),
    118: ("LOG_ENTRY", 56),
    119: ("LOG_REQUEST_DATA", 116),
    120: ("LOG_DATA", 134),
    121: ("LOG_ERASE", 237),
    122: ("LOG_REQUEST_END", 203),
    123: ("GPS_INJECT_DATA", 250),
    124: ("GPS2_RAW", 87),
    125: ("POWER_STATUS", 203),
    126: ("SERIAL_CONTROL", 220),
    127: ("GPS_RTK", 25),
    128: ("GPS2_RTK", 226),
    129: ("SCALED_IMU3", 46),
    130: ("DATA_TRANSMISSION_HANDSHAKE", 29),
    131: ("ENCAPSULATED_DATA", 223),
    132: ("DISTANCE_SENSOR", 85),
    133: ("TERRAIN_REQUEST", 6),
    134: ("TERRAIN_DATA", 229),
    135: ("TERRAIN_CHECK", 203),
    136: ("TERRAIN_REPORT", 1),
    137: ("SCALED_PRESSURE2", 195),
    138: ("ATT_POS_MOCAP", 109),
    139: ("SET_ACTUATOR_CONTROL_TARGET", 168),
    140: ("ACTUATOR_CONTROL_TARGET", 181),
    141: ("ALTITUDE", 47),
    142: ("RESOURCE_REQUEST", 72),
    143: ("SCALED_PRESSURE3", 131),
    144: ("FOLLOW_TARGET", 127),
    146: ("CONTROL_SYSTEM_STATE", 103),
    147: ("BATTERY_STATUS", 154),
    148: ("AUTOPILOT_VERSION", 178),
    149: ("LANDING_TARGET", 200),
    150: ("SENSOR_OFFSETS", 134),
    151: ("SET_MAG_OFFSETS", 219),
    152: ("MEMINFO", 208),
    153: ("AP_ADC", 188),
    154: ("DIGICAM_CONFIGURE", 84),
    155: ("DIGICAM_CONTROL", 22),
    156: ("MOUNT_CONFIGURE", 19),
    157: ("MOUNT_CONTROL", 21),
    158: ("MOUNT_STATUS", 134),
    160: ("FENCE_POINT", 78),
    161: ("FENCE_FETCH_POINT", 68),
    162: ("FENCE_STATUS", 189),
    163: ("AHRS", 127),
    164: ("SIMSTATE", 154),
    165: ("HWSTATUS", 21),
    166: ("RADIO", 21),
    167: ("LIMITS_STATUS", 144),
    168: ("WIND", 1),
    169: ("DATA16", 234),
    170: ("DATA32", 73),
    171: ("DATA64", 181),
    172: ("DATA96", 22),
    173: ("RANGEFINDER", 83),
    174: ("AIRSPEED_AUTOCAL", 167),
    175: ("RALLY_POINT", 138),
    176: ("RALLY_FETCH_POINT", 234),
    177: ("COMPASSMOT_STATUS", 240),
    178: ("AHRS2", 47),
    179: ("CAMERA_STATUS", 189),
    180: ("CAMERA_FEEDBACK", 52),
    181: ("BATTERY2", 174),
    182: ("AHRS3", 229),
    183: ("AUTOPILOT_VERSION_REQUEST", 85),
    184: ("REMOTE_LOG_DATA_BLOCK", 159),
    185: ("REMOTE_LOG_BLOCK_STATUS", 186),
    186: ("LED_CONTROL", 72),
    191: ("MAG_CAL_PROGRESS", 92),
    192: ("MAG_CAL_REPORT", 36),
    193: ("EKF_STATUS_REPORT", 71),
    194: ("PID_TUNING", 98),
    195: ("DEEPSTALL", 120),
    200: ("GIMBAL_REPORT", 134),
    201: ("GIMBAL_CONTROL", 205),
    214: ("GIMBAL_TORQUE_CMD_REPORT", 69),
    215: ("GOPRO_HEARTBEAT", 101),
    216: ("GOPRO_GET_REQUEST", 50),
    217: ("GOPRO_GET_RESPONSE", 202),
    218: ("GOPRO_SET_REQUEST", 17),
    219: ("GOPRO_SET_RESPONSE", 162),
    225: ("EFI_STATUS", 208),
    226: ("RPM", 207),
    230: ("ESTIMATOR_STATUS", 163),
    231: ("WIND_COV", 105),
    232: ("GPS_INPUT", 151),
    233: ("GPS_RTCM_DATA", 35),
    234: ("HIGH_LATENCY", 150),
    235: ("HIGH_LATENCY2", 179),
    241: ("VIBRATION", 90),
    242: ("HOME_POSITION", 104),
    243: ("SET_HOME_POSITION", 85),
    244: ("MESSAGE_INTERVAL", 95),
    245: ("EXTENDED_SYS_STATE", 130),
    246: ("ADSB_VEHICLE", 184),
    247: ("COLLISION", 81),
    248: ("V2_EXTENSION", 8),
    249: ("MEMORY_VECT", 204),
    250: ("DEBUG_VECT", 49),
    251: ("NAMED_VALUE_FLOAT", 170),
    252: ("NAMED_VALUE_INT", 44),
    253: ("STATUSTEXT", 83),
    254: ("DEBUG", 46),
    259: ("CAMERA_INFORMATION", 92),
    260: ("CAMERA_SETTINGS", 146),
    261: ("STORAGE_INFORMATION", 179),
    262: ("CAMERA_CAPTURE_STATUS", 12),
    263: ("CAMERA_IMAGE_CAPTURED", 133),
    264: ("FLIGHT_INFORMATION", 49),
    265: ("MOUNT_ORIENTATION", 26),
    269: ("VIDEO_STREAM_INFORMATION", 109),
    270: ("VIDEO_STREAM_STATUS", 59),
    280: ("GIMBAL_MANAGER_INFORMATION", 70),
    281: ("GIMBAL_MANAGER_STATUS", 48),
    283: ("GIMBAL_DEVICE_INFORMATION", 74),
    285: ("GIMBAL_DEVICE_ATTITUDE_STATUS", 137),
    295: ("AIRSPEED", 234),
    331: ("ODOMETRY", 91),
    339: ("RAW_RPM", 199),
    340: ("UTM_GLOBAL_POSITION", 99),
    360: ("ORBIT_EXECUTION_STATUS", 11),
    370: ("SMART_BATTERY_INFO", 75),
    390: ("ONBOARD_COMPUTER_STATUS", 156),
    12900: ("OPEN_DRONE_ID_BASIC_ID", 114),
    12901: ("OPEN_DRONE_ID_LOCATION", 254),
    12902: ("OPEN_DRONE_ID_AUTHENTICATION", 140),
    12903: ("OPEN_DRONE_ID_SELF_ID", 249),
    12904: ("OPEN_DRONE_ID_SYSTEM", 77),
    12905: ("OPEN_DRONE_ID_OPERATOR_ID", 49),
    12915: ("OPEN_DRONE_ID_MESSAGE_PACK", 94),
    12918: ("OPEN_DRONE_ID_ARM_STATUS", 139),
    12919: ("OPEN_DRONE_ID_SYSTEM_UPDATE", 7),
    12920: ("HYGROMETER_SENSOR", 20),
}
"""MAVLink messages whose CRC_EXTRA is known: id -> (name, CRC_EXTRA)."""

MAV_TYPE_NAMES: tuple[str, ...] = tuple(
    (
        "generic fixed_wing quadrotor coaxial helicopter antenna_tracker gcs airship free_balloon "
        "rocket ground_rover surface_boat submarine hexarotor octorotor tricopter flapping_wing "
        "kite onboard_controller vtol_duorotor vtol_quadrotor vtol_tiltrotor vtol_reserved2 "
        "vtol_reserved3 vtol_reserved4 vtol_reserved5 gimbal adsb parafoil dodecarotor camera "
        "charging_station flarm servo odid decarotor battery parachute log osd imu gps winch "
        "generic_multirotor illuminator spacecraft_orbiter ground_quadruped vtol_gyrodyne gripper"
    ).split()
)
"""MAV_TYPE names by value (common.xml), lower case without the prefix."""
MAV_AUTOPILOT_NAMES: tuple[str, ...] = tuple(
    (
        "generic reserved slugs ardupilotmega openpilot generic_waypoints_only "
        "generic_waypoints_and_simple_navigation_only generic_mission_full invalid ppz udb fp px4 "
        "smaccmpilot autoquad armazila aerob asluav smartap airrails reflex"
    ).split()
)
"""MAV_AUTOPILOT names by value (common.xml)."""
MAV_STATE_NAMES: tuple[str, ...] = tuple(
    "uninit boot calibrating standby active critical emergency poweroff flight_termination".split()
)
"""MAV_STATE names by value (common.xml)."""

MAVLINK_CRC_EXTRAS: dict[int, int] = {
    msgid: extra for msgid, (_, extra) in MAVLINK_MESSAGES.items()
}
"""Message id -> CRC_EXTRA, for the frame counters."""
_MAGICS = frozenset({MAVLINK_V1_MAGIC, MAVLINK_V2_MAGIC})
_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_HEARTBEAT = struct.Struct("<IBBBBB")
_GLOBAL_POSITION_INT = struct.Struct("<IiiiihhhH")
_NO_FIX_DEG = 1e-3
# A position within ~100 m of 0/0 (open sea) is a vehicle without a fix: the AR.Drone 2.0 sends
# GLOBAL_POSITION_INT with lat/lon of a few 1e-7 degrees while it has no GPS.


def _reflect16(value: int) -> int:
    return (_BIT_REVERSED[value & 0xFF] << 8) | _BIT_REVERSED[value >> 8]


def mavlink_crc(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/MCRF4XX (MAVLink's "X.25" checksum) of `data`, continuing from `crc`.

    MCRF4XX is the bit-reflected form of the CCITT CRC that `binascii.crc_hqx` computes, so the
    bytes are bit-reversed, run through it in C, and the result reflected back.
    """
    raw = bytes(data).translate(_BIT_REVERSED)
    return _reflect16(binascii.crc_hqx(raw, _reflect16(crc)))


def mavlink_msg_name(msgid: int) -> str:
    """The message's name (HEARTBEAT) or, for an id not in the table, its number as text."""
    known = MAVLINK_MESSAGES.get(msgid)
    return known[0] if known else str(msgid)


def _enum_name(names: tuple[str, ...], value: int) -> str:
    return names[value] if value < len(names) else str(value)


class MavlinkCrcError(DecodeError):
    """A well-framed MAVLink frame whose checksum does not match."""


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class MavlinkFrame:
    """One MAVLink frame."""

    version: int
    """1 (magic 0xFE) or 2 (magic 0xFD)."""
    seq: int
    sysid: int
    compid: int
    msgid: int
    payload: bytes
    """As sent: a v2 sender drops the payload's trailing zero bytes."""
    size: int
    """Bytes on the wire: header, payload, checksum and signature."""
    signed: bool = False
    crc_verified: bool = True
    """False for a message id without a known CRC_EXTRA: accepted on its framing only."""

    @property
    def name(self) -> str:
        """The message name, or its id as text."""
        return mavlink_msg_name(self.msgid)


def mavlink_frame_size(data: bytes | bytearray, offset: int = 0) -> int | None:
    """The wire size of the frame starting at `offset`; None while its header is incomplete.

    Raises:
        DecodeError: no MAVLink magic at `offset`.
    """
    if offset >= len(data):
        return None
    magic = data[offset]
    if magic == MAVLINK_V1_MAGIC:
        if offset + 2 > len(data):
            return None
        return MAVLINK_V1_HEADER_LEN + data[offset + 1] + MAVLINK_CRC_LEN
    if magic == MAVLINK_V2_MAGIC:
        if offset + 3 > len(data):
            return None
        size = MAVLINK_V2_HEADER_LEN + data[offset + 1] + MAVLINK_CRC_LEN
        if data[offset + 2] & MAVLINK_IFLAG_SIGNED:
            size += MAVLINK_SIGNATURE_LEN
        return size
    raise DecodeError(f"no MAVLink magic ({magic:#04x})")


def parse_mavlink_frame(
    data: bytes | bytearray, offset: int = 0, crc_extras: Mapping[int, int] | None = None
) -> MavlinkFrame:
    """Decode the frame at `offset` and check its CRC when the message id is known (in
    `crc_extras`, MAVLINK_CRC_EXTRAS by default).

    Raises:
        MavlinkCrcError: the checksum does not match the message's CRC_EXTRA.
        DecodeError: no magic, a truncated frame, or unknown incompatibility flags.
    """
    size = mavlink_frame_size(data, offset)
    if size is None or offset + size > len(data):
        raise DecodeError("truncated MAVLink frame")
    length = data[offset + 1]
    if data[offset] == MAVLINK_V1_MAGIC:
        version, signed = 1, False
        seq, sysid, compid, msgid = data[offset + 2 : offset + 6]
        header_len = MAVLINK_V1_HEADER_LEN
    else:
        incompat = data[offset + 2]
        if incompat & ~MAVLINK_IFLAG_SIGNED:
            raise DecodeError(f"unknown MAVLink 2 incompatibility flags {incompat:#04x}")
        version, signed = 2, bool(incompat & MAVLINK_IFLAG_SIGNED)
        seq, sysid, compid = data[offset + 4 : offset + 7]
        msgid = int.from_bytes(data[offset + 7 : offset + 10], "little")
        header_len = MAVLINK_V2_HEADER_LEN
    body_end = offset + header_len + length
    extra = (MAVLINK_CRC_EXTRAS if crc_extras is None else crc_extras).get(msgid)
    if extra is not None:
        crc = mavlink_crc(data[offset + 1 : body_end])
        crc = mavlink_crc(bytes((extra,)), crc)
        sent = data[body_end] | (data[body_end + 1] << 8)
        if crc != sent:
            name = mavlink_msg_name(msgid)
            raise MavlinkCrcError(f"{name}: checksum {sent:#06x}, expected {crc:#06x}")
    return MavlinkFrame(
        version=version,
        seq=seq,
        sysid=sysid,
        compid=compid,
        msgid=msgid,
        payload=bytes(data[offset + header_len : body_end]),
        size=size,
        signed=signed,
        crc_verified=extra is not None,
    )


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class Heartbeat:
    """HEARTBEAT (#0): what a component is and what state it is in."""

    custom_mode: int
    type: int
    """MAV_TYPE (2 quadrotor, 6 ground station...)."""
    autopilot: int
    """MAV_AUTOPILOT (3 ArduPilot, 12 PX4, 8 none)."""
    base_mode: int
    system_status: int
    mavlink_version: int

    @property
    def type_name(self) -> str:
        return _enum_name(MAV_TYPE_NAMES, self.type)

    @property
    def autopilot_name(self) -> str:
        return _enum_name(MAV_AUTOPILOT_NAMES, self.autopilot)

    @property
    def status_name(self) -> str:
        return _enum_name(MAV_STATE_NAMES, self.system_status)

    @property
    def armed(self) -> bool:
        return bool(self.base_mode & MAV_MODE_FLAG_SAFETY_ARMED)


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class GlobalPosition:
    """GLOBAL_POSITION_INT (#33): the fused global position."""

    time_boot_ms: int
    lat: float
    """Degrees (sent as 1e-7 degrees)."""
    lon: float
    alt_m: float
    """Altitude above mean sea level (sent in millimetres)."""
    relative_alt_m: float
    """Altitude above home."""


def _padded(payload: bytes, size: int) -> bytes:
    # MAVLink 2 drops trailing zero bytes of the payload; they are restored before unpacking.
    return payload if len(payload) >= size else payload + bytes(size - len(payload))


def decode_heartbeat(payload: bytes) -> Heartbeat:
    """Unpack a HEARTBEAT payload (a short v2 payload is zero-filled)."""
    fields = _HEARTBEAT.unpack_from(_padded(payload, _HEARTBEAT.size))
    return Heartbeat(*fields)


def decode_global_position_int(payload: bytes) -> GlobalPosition:
    """Unpack a GLOBAL_POSITION_INT payload (a short v2 payload is zero-filled)."""
    boot_ms, lat, lon, alt, rel_alt, *_ = _GLOBAL_POSITION_INT.unpack_from(
        _padded(payload, _GLOBAL_POSITION_INT.size)
    )
    return GlobalPosition(boot_ms, lat / 1e7, lon / 1e7, alt / 1000.0, rel_alt / 1000.0)


@dataclass(frozen=True, slots=True)
class MavlinkOptions:
    """Tunables of the MAVLink analyzer."""

    probe_packets: int = 8
    """Payload packets read for a checksum-valid frame before a flow is given up (datagrams and
    segments that start with no MAVLink magic count too)."""
    top_messages: int = 20
    """Most frequent message types listed in `msg_counts`."""
    max_ids: int = 32
    """Most system ids and component ids listed per flow."""
    max_tcp_buffer_bytes: int = 4096
    """Most bytes buffered per direction of a TCP flow while a frame is incomplete."""
    follow_flow: bool = True
    """Follow a recognised flow to its end, so every frame of it is counted."""


@dataclass(frozen=True, slots=True)
class MavlinkRecord(ConnRecord):
    """One MAVLink flow, written when it ends; `ts` is the time of its first valid frame."""

    log: ClassVar[str] = "mavlink"
    version: str
    """`1`, `2`, or `1+2` when both were seen."""
    frames: int
    """Frames read: checksum-valid ones plus unverified ones of unknown message ids."""
    crc_errors: int
    """Well-framed frames, at a frame boundary, whose checksum did not match."""
    crc_unverified: int
    """Frames of message ids without a known CRC_EXTRA."""
    sysids: tuple[int, ...] = ()
    compids: tuple[int, ...] = ()
    msg_counts: dict[str, int] = field(default_factory=dict)
    """Frames per message name (id as text when unknown), most frequent first."""
    heartbeats: int = 0
    vehicle_type: str | None = None
    """MAV_TYPE of the vehicle's HEARTBEAT (`quadrotor`, `fixed_wing`...)."""
    autopilot: str | None = None
    """MAV_AUTOPILOT of the vehicle's HEARTBEAT (`ardupilotmega`, `px4`, `generic`)."""
    system_status: str | None = None
    """MAV_STATE of the vehicle's last HEARTBEAT (`standby`, `active`...)."""
    armed: bool | None = None
    """The safety-armed flag of the vehicle's last HEARTBEAT."""
    gcs_seen: bool = False
    """A ground station's HEARTBEAT (MAV_TYPE_GCS) was seen on the flow."""
    last_lat: float | None = None
    """Last GLOBAL_POSITION_INT latitude, degrees (positions near 0/0, no fix, are skipped)."""
    last_lon: float | None = None
    last_alt_m: float | None = None
    """Altitude above mean sea level of that position."""
    last_relative_alt_m: float | None = None
    signed: bool = False
    """A MAVLink 2 frame carried a signature."""


class _Stream:
    """One direction of a TCP flow: bytes not yet framed."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes, gap: int) -> None:
        """Append the direction's next bytes; after lost bytes (`gap`) the frame being buffered
        cannot be completed, and framing resynchronises on the next magic byte."""
        if gap:
            self.buf.clear()
        self.buf += data


class MavlinkCounter:
    """The MAVLink frames of one flow, counted, and what its heartbeats and positions say.

    The Python twin of the C `MavlinkCounter`, which the bulk path feeds itself;
    the tests hold both to the same results. A frame is verified when its message id is in
    `crc_extras` and its checksum matches; the flow is recognised at its first verified frame,
    and frames of unknown ids count (as unverified) only from then on."""

    __slots__ = (
        "_extras",
        "compids",
        "crc_errors",
        "frames",
        "gcs_seen",
        "gcs_side",
        "heartbeats",
        "max_ids",
        "msgs",
        "position",
        "recognised",
        "signed",
        "sysids",
        "unverified",
        "vehicle",
        "vehicle_rank",
        "versions",
    )

    def __init__(self, crc_extras: dict[int, int], max_ids: int = 32) -> None:
        if max_ids < 0:
            raise ValueError("MavlinkCounter: max_ids must be 0 or more")
        if any(not 0 <= k < 1 << 24 or not 0 <= v <= 255 for k, v in crc_extras.items()):
            raise ValueError("MavlinkCounter: crc_extras maps message ids (24 bits) to bytes")
        self._extras = dict(crc_extras)
        self.max_ids = max_ids
        self.recognised = False
        self.frames = self.crc_errors = self.unverified = self.heartbeats = 0
        self.versions: set[int] = set()
        self.sysids: set[int] = set()
        self.compids: set[int] = set()
        self.msgs: dict[int, int] = {}
        self.signed = False
        self.gcs_seen = False
        self.gcs_side: str | None = None
        """Which end the content says is the ground station: `orig`, `resp` or None."""
        self.vehicle: tuple[int, int, int, int, int, int] | None = None
        """The vehicle's HEARTBEAT fields (see `Heartbeat`)."""
        self.vehicle_rank = -1
        self.position: tuple[int, float, float, float, float] | None = None
        """The last GLOBAL_POSITION_INT with a fix (see `GlobalPosition`)."""

    def feed(self, data: bytes, from_orig: bool = True) -> int:
        """Account the frames of a datagram; returns how many were counted."""
        before = self.frames
        self.scan(data, True, from_orig)
        return self.frames - before

    def scan(self, data: bytes | bytearray, whole: bool, from_orig: bool = True) -> int:
        """Account the frames in `data`; returns the bytes used (the rest is incomplete).

        `whole` is True for a datagram, which never continues in the next one."""
        pos, end = 0, len(data)
        aligned = True  # at the start of the data or right after a valid frame
        while pos < end:
            if data[pos] not in _MAGICS:
                pos = _next_magic(data, pos + 1)
                if pos < 0:
                    return end
                aligned = False
                continue
            size = mavlink_frame_size(data, pos)
            if size is None or pos + size > end:
                if not whole:
                    return pos  # wait for the segments that complete it
                pos += 1  # a datagram holds whole frames: this magic was not one
                aligned = False
                continue
            try:
                frame = parse_mavlink_frame(data, pos, self._extras)
            except MavlinkCrcError:
                if aligned:
                    self.crc_errors += 1
                pos += 1
                aligned = False
                continue
            except DecodeError:  # unknown incompatibility flags
                pos += 1
                aligned = False
                continue
            self._count(frame, from_orig)
            pos += size
            aligned = True
        return pos

    def _count(self, frame: MavlinkFrame, from_orig: bool) -> None:
        if not frame.crc_verified:
            if not self.recognised:
                return  # an unknown id proves nothing until a checksum has matched
            self.unverified += 1
        self.recognised = True
        self.frames += 1
        self.versions.add(frame.version)
        if frame.sysid not in self.sysids and len(self.sysids) < self.max_ids:
            self.sysids.add(frame.sysid)
        if frame.compid not in self.compids and len(self.compids) < self.max_ids:
            self.compids.add(frame.compid)
        if frame.msgid in self.msgs:
            self.msgs[frame.msgid] += 1
        elif len(self.msgs) < 256:
            self.msgs[frame.msgid] = 1
        self.signed = self.signed or frame.signed
        if not frame.crc_verified:
            return
        if frame.sysid == MAVLINK_GCS_SYSID and self.gcs_side is None:
            # By convention a ground station sends as system 255 (QGroundControl, Mission Planner).
            self.gcs_side = "orig" if from_orig else "resp"
        if frame.msgid == MAVLINK_MSG_HEARTBEAT:
            gcs = self._heartbeat(frame)
            # Who sends which heartbeat says which end is the vehicle, whatever the addresses.
            if self.gcs_side is None:
                self.gcs_side = "orig" if from_orig == gcs else "resp"
        elif frame.msgid == MAVLINK_MSG_GLOBAL_POSITION_INT:
            p = decode_global_position_int(frame.payload)
            if abs(p.lat) >= _NO_FIX_DEG or abs(p.lon) >= _NO_FIX_DEG:
                self.position = (p.time_boot_ms, p.lat, p.lon, p.alt_m, p.relative_alt_m)

    def _heartbeat(self, frame: MavlinkFrame) -> bool:
        """Account a heartbeat; True when a ground station sent it."""
        self.heartbeats += 1
        beat = decode_heartbeat(frame.payload)
        if beat.type == MAV_TYPE_GCS:
            self.gcs_seen = True
            return True
        # The vehicle is the autopilot component; a camera or gimbal only stands in for it.
        rank = (beat.autopilot != MAV_AUTOPILOT_INVALID) * 2 + (
            frame.compid == MAV_COMP_ID_AUTOPILOT1
        )
        if rank >= self.vehicle_rank:
            self.vehicle_rank = rank
            self.vehicle = (
                beat.custom_mode,
                beat.type,
                beat.autopilot,
                beat.base_mode,
                beat.system_status,
                beat.mavlink_version,
            )
        return False


@dataclass(slots=True)
class _MavState:
    """What one flow has shown so far."""

    counter: MavlinkCounter
    first_ts: float | None = None
    probed: int = 0
    streams: dict[bool, _Stream] = field(default_factory=dict)


def _next_magic(data: bytes | bytearray, start: int) -> int:
    v1 = data.find(b"\xfe", start)
    v2 = data.find(b"\xfd", start)
    if v1 < 0:
        return v2
    return v1 if v2 < 0 else min(v1, v2)


class MavlinkAnalyzer:
    """Read MAVLink frames on UDP and TCP into one mavlink.jsonl record per flow."""

    name = "mavlink"
    wants_ports: frozenset[int] = frozenset()
    """The ports `wants` reads (`WantsHook`)."""
    tcp_stream = True
    """Its packet hook reads MAVLink over TCP in order (`dronewatch.core.stream`)."""

    def __init__(self, ctx: Context, options: MavlinkOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or MavlinkOptions()
        self._state: dict[str, _MavState] = {}  # keyed by flow.uid, dropped in flow_end
        self._rejected: set[str] = set()  # flows probed without a valid frame
        self._misses = Misses(self.options.probe_packets)
        """UDP datagrams that start with no MAVLink magic, of flows not probed yet (`Misses`)."""
        self._counter = counter_type("MavlinkCounter", MavlinkCounter)

    def wants(self, flow: Flow) -> bool:
        """MAVLink runs over UDP or TCP on any port."""
        return flow.proto in (IP_PROTO_UDP, IP_PROTO_TCP)

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Frame the datagram or segment and account every frame in it (a followed UDP flow:
        only `counter.feed`, see `Flow.follow`).

        The analyzer never waits (`Flow.wait`), not even on a flow where nothing is recognised
        yet and one side speaks: MAVLink is that one side's own stream (a vehicle's telemetry,
        often mirrored one way), each segment may start a frame, and no answer is needed to read
        it; a flow with no frame is bounded by `MavlinkOptions.probe_packets` and
        `EngineOptions.inspect_packets`."""
        payload = pkt.payload
        if not payload:
            return
        state = self._state.get(flow.uid)
        if state is None:
            if flow.uid in self._rejected or flow.proto not in (IP_PROTO_UDP, IP_PROTO_TCP):
                return
            if flow.service and flow.service != "mavlink":
                flow.decline(self.name)  # another protocol was recognised on it
                return
            if payload[0] not in _MAGICS and not (
                flow.proto == IP_PROTO_TCP
                and (flow.resp_p in MAVLINK_TCP_PORTS or flow.orig_p in MAVLINK_TCP_PORTS)
            ):
                # A MAVLink datagram starts with a frame, and so does a TCP stream's first segment
                # and most later ones (a sender writes whole frames): these count towards the
                # probe, for a TCP flow seen from its middle too.
                self._misses.miss(flow, self.name)
                return
            self._misses.drop(flow)
            counter = self._counter(MAVLINK_CRC_EXTRAS, self.options.max_ids)
            state = self._state[flow.uid] = _MavState(counter)
        counter = state.counter
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        udp = flow.proto == IP_PROTO_UDP
        if udp and state.first_ts is not None:
            counter.feed(payload, from_orig)
            return
        errors = counter.crc_errors
        if udp:
            counter.feed(payload, from_orig)
        else:
            stream = state.streams.get(from_orig)
            if stream is None:
                stream = state.streams[from_orig] = _Stream()
            stream.feed(payload, pkt.gap)
            used = counter.scan(stream.buf, False, from_orig)
            del stream.buf[:used]
            if len(stream.buf) > self.options.max_tcp_buffer_bytes:
                stream.buf.clear()
        if counter.crc_errors != errors:
            logger.debug("%s: a MAVLink frame checksum does not match", flow.uid)
        if state.first_ts is None and counter.recognised:
            state.first_ts = pkt.ts
            follower = self.name if self.options.follow_flow else None
            flow.recognise_link("mavlink", follower, counter if udp else None)
        if counter.gcs_side is not None:
            flow.add_meta("link_gcs_side", counter.gcs_side)
        if state.first_ts is None:
            state.probed += 1
            if state.probed >= self.options.probe_packets:
                logger.debug("%s: no valid MAVLink frame, not followed", flow.uid)
                del self._state[flow.uid]
                self._rejected.add(flow.uid)
                flow.decline(self.name)

    def flow_end(self, flow: Flow) -> None:
        """Write the flow's record if it carried MAVLink, and drop its state."""
        self._rejected.discard(flow.uid)
        self._misses.drop(flow)
        state = self._state.pop(flow.uid, None)
        if state is None or state.first_ts is None:
            return
        counter = state.counter
        if counter.gcs_side is not None:  # the bulk path may have fed the counter itself
            flow.add_meta("link_gcs_side", counter.gcs_side)
        top = sorted(counter.msgs.items(), key=lambda kv: (-kv[1], kv[0]))
        vehicle = Heartbeat(*counter.vehicle) if counter.vehicle is not None else None
        position = GlobalPosition(*counter.position) if counter.position is not None else None
        self.ctx.emit(
            MavlinkRecord(
                ts=state.first_ts,
                **conn(flow),
                version="+".join(str(v) for v in sorted(counter.versions)),
                frames=counter.frames,
                crc_errors=counter.crc_errors,
                crc_unverified=counter.unverified,
                sysids=tuple(sorted(counter.sysids)),
                compids=tuple(sorted(counter.compids)),
                msg_counts={
                    mavlink_msg_name(msgid): n for msgid, n in top[: self.options.top_messages]
                },
                heartbeats=counter.heartbeats,
                vehicle_type=vehicle.type_name if vehicle else None,
                autopilot=vehicle.autopilot_name if vehicle else None,
                system_status=vehicle.status_name if vehicle else None,
                armed=vehicle.armed if vehicle else None,
                gcs_seen=counter.gcs_seen,
                last_lat=position.lat if position else None,
                last_lon=position.lon if position else None,
                last_alt_m=position.alt_m if position else None,
                last_relative_alt_m=position.relative_alt_m if position else None,
                signed=counter.signed,
            )
        )


__all__ = [
    "MAVLINK_CRC_EXTRAS",
    "MAVLINK_MESSAGES",
    "MAV_AUTOPILOT_NAMES",
    "MAV_STATE_NAMES",
    "MAV_TYPE_NAMES",
    "GlobalPosition",
    "Heartbeat",
    "MavlinkAnalyzer",
    "MavlinkCounter",
    "MavlinkCrcError",
    "MavlinkFrame",
    "MavlinkOptions",
    "MavlinkRecord",
    "decode_global_position_int",
    "decode_heartbeat",
    "mavlink_crc",
    "mavlink_frame_size",
    "mavlink_msg_name",
    "parse_mavlink_frame",
]
