"""Parrot drone links: ARSDK (Bebop, ANAFI, FreeFlight 3+) and the older AR.Drone 1/2 protocol.

ARSDK (endpoints.md section 2, arsdk-xml):
  * discovery on TCP 44444: the controller sends a NUL-terminated JSON object
    (`controller_type`, `controller_name`, `d2c_port`, ...) and the drone answers with `status`,
    `c2d_port`, ...;
  * ARNetworkAL frames on UDP, controller to drone on `c2d_port` (2233 for arsdk-ng, 54321 for
    ARSDK3) and back on `d2c_port` (9988, 43210): type u8 (1 ack, 2 data, 3 low latency, 4 data
    with ack), buffer id u8, sequence u8, size u32 LE (header included), then for data frames an
    ARCommand: project u8, class u8, command u16 LE, arguments (enums as i32, LE).

AR.Drone 1/2 (ARDrone SDK 2.0 developer guide):
  * AT commands on UDP 5556, text such as `AT*REF=1,290718208\\r`, `AT*PCMD=2,0,0,0,0,0\\r`,
    `AT*CONFIG=3,"general:navdata_demo","TRUE"\\r`, several in one datagram;
  * navdata on UDP 5554: header 0x55667788 (0x55667789 is also sent), drone state u32, sequence,
    vision flag, then options tag u16 / size u16 (header included). Option 0 (demo) carries the
    control state, battery %, attitude and altitude; option 0xFFFF the checksum, the sum of every
    byte before it.
"""

from __future__ import annotations

import json
import logging
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from dronewatch.analyzers._probe import Misses
from dronewatch.core.flow import IP_PROTO_TCP, IP_PROTO_UDP, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError
from dronewatch.fastpath import counter_type
from dronewatch.judge.devices import AIRCRAFT_PORTS

logger = logging.getLogger(__name__)

ARSDK_DISCOVERY_PORT = 44444
ARSDK_C2D_PORTS = AIRCRAFT_PORTS["parrot_arsdk"] - {ARSDK_DISCOVERY_PORT}
"""The drone's default ARNetworkAL ports (2233 arsdk-ng, 54321 ARSDK3)."""
ARSDK_D2C_PORTS = frozenset({9988, 43210})
"""The controller's default ARNetworkAL ports."""
ARDRONE_NAVDATA_PORTS = AIRCRAFT_PORTS["ardrone"]
"""The AR.Drone's navdata port (5554)."""
ARDRONE_AT_PORT = 5556

ARNETWORKAL_ACK = 1
ARNETWORKAL_DATA = 2
ARNETWORKAL_LOW_LATENCY = 3
ARNETWORKAL_DATA_WITH_ACK = 4
ARNETWORKAL_HEADER_LEN = 7
ARNETWORK_PING_BUFFER = 0
ARNETWORK_PONG_BUFFER = 1
NAVDATA_MAGICS = frozenset({0x55667788, 0x55667789})
NAVDATA_TAG_DEMO = 0
NAVDATA_TAG_CHECKSUM = 0xFFFF
ARDRONE_REF_TAKEOFF = 1 << 9
ARSDK_POSITION_UNKNOWN = 500.0
"""Latitude/longitude sent by ARSDK drones without a position."""

ARSDK_PROJECTS = {0: "common", 1: "ardrone3", 2: "minidrone", 3: "jpsumo", 4: "skycontroller"}
ARSDK_CLASSES: dict[tuple[int, int], str] = {
    (0, 2): "Settings",
    (0, 3): "SettingsState",
    (0, 4): "Common",
    (0, 5): "CommonState",
    (1, 0): "Piloting",
    (1, 1): "Camera",
    (1, 2): "PilotingSettings",
    (1, 3): "MediaRecordEvent",
    (1, 4): "PilotingState",
    (1, 5): "Animations",
    (1, 6): "PilotingSettingsState",
    (1, 7): "MediaRecord",
    (1, 8): "MediaRecordState",
    (1, 13): "Network",
    (1, 14): "NetworkState",
    (1, 34): "PilotingEvent",
}
"""Class names of the `common` and `ardrone3` projects (arsdk-xml common.xml, ardrone3.xml)."""
ARSDK_COMMANDS: dict[tuple[int, int], tuple[str, ...]] = {
    (0, 2): ("AllSettings", "Reset", "ProductName", "Country", "AutoCountry"),
    (0, 3): tuple(
        (
            "AllSettingsChanged ResetChanged ProductNameChanged ProductVersionChanged "
            "ProductSerialHighChanged ProductSerialLowChanged CountryChanged AutoCountryChanged "
            "BoardIdChanged"
        ).split()
    ),
    (0, 4): ("AllStates", "CurrentDate", "CurrentTime", "Reboot", "CurrentDateTime", "PowerOff"),
    (0, 5): tuple(
        (
            "AllStatesChanged BatteryStateChanged MassStorageStateListChanged "
            "MassStorageInfoStateListChanged CurrentDateChanged CurrentTimeChanged "
            "MassStorageInfoRemainingListChanged WifiSignalChanged SensorsStatesListChanged"
        ).split()
    ),
    (1, 0): tuple(
        (
            "FlatTrim TakeOff PCMD Landing Emergency NavigateHome AutoTakeOffMode moveBy "
            "UserTakeOff Circle"
        ).split()
    ),
    (1, 1): ("Orientation",),
    (1, 2): ("MaxAltitude", "MaxTilt", "AbsolutControl", "MaxDistance", "NoFlyOverMaxDistance"),
    (1, 4): tuple(
        (
            "FlatTrimChanged FlyingStateChanged AlertStateChanged NavigateHomeStateChanged "
            "PositionChanged SpeedChanged AttitudeChanged AutoTakeOffModeChanged AltitudeChanged"
        ).split()
    ),
    (1, 5): ("Flip",),
    (1, 6): ("MaxAltitudeChanged", "MaxTiltChanged"),
    (1, 7): ("Picture", "Video", "PictureV2", "VideoV2"),
}
"""Command names by (project, class), in id order (arsdk-xml)."""
ARSDK_FLYING_STATES = tuple(
    "landed takingoff hovering flying landing emergency usertakeoff".split()
)
"""ardrone3.PilotingState.FlyingStateChanged states (arsdk-xml ardrone3.xml)."""

ARDRONE_CTRL_STATES = tuple(
    "default init landed flying hovering test takeoff goto_fix landing looping".split()
)
"""AR.Drone major control states (ARDroneLib control_states.h: CTRL_DEFAULT...TRANS_LOOPING).

The AR.Drone 2.0 of the wsensing2021 captures reports 7 while it climbs after take-off, 8
between flying and hovering and 9 while it lands, one later than these SDK names suggest; the
names are kept as published, and `flying`/`flew` come from the unambiguous fly bit instead."""
ARDRONE_STATE_FLAGS = tuple(
    (
        "flying video_enabled vision_enabled angular_speed_control altitude_control "
        "user_feedback_start command_ack camera_ready travelling usb_ready navdata_demo "
        "navdata_bootstrap motors_problem com_lost software_fault vbat_low user_emergency_landing "
        "timer_elapsed magneto_needs_calib angles_out_of_range too_much_wind ultrasound_deaf "
        "cutout_detected pic_version_ok atcodec_thread_on navdata_thread_on video_thread_on "
        "acq_thread_on ctrl_watchdog adc_watchdog com_watchdog emergency"
    ).split()
)
"""Bits 0..31 of the navdata drone state (ARDroneLib config.h ARDRONE_*_MASK)."""

_NAVDATA_HEADER = struct.Struct("<IIII")
_NAVDATA_DEMO = struct.Struct("<IIfffifff")
_ARNET_HEADER = struct.Struct("<BBBI")
_K = TypeVar("_K")
_DISCOVERY_KEYS = ("controller_type", "controller_name", "d2c_port", "c2d_port", "status")


def arsdk_command_name(project: int, klass: int, cmd: int) -> str:
    """`project.Class.Command` from the arsdk-xml names, with numbers for unknown parts."""
    names = ARSDK_COMMANDS.get((project, klass), ())
    return ".".join(
        (
            ARSDK_PROJECTS.get(project) or str(project),
            ARSDK_CLASSES.get((project, klass)) or str(klass),
            names[cmd] if cmd < len(names) else str(cmd),
        )
    )


def ardrone_state_flags(state: int) -> tuple[str, ...]:
    """Names of the bits set in a navdata drone state."""
    return tuple(name for bit, name in enumerate(ARDRONE_STATE_FLAGS) if state >> bit & 1)


# --- ARSDK ----------------------------------------------------------------------------------


def parse_arsdk_json(data: bytes) -> dict[str, object]:
    """A discovery message: one JSON object, NUL padding removed.

    Raises:
        DecodeError: not UTF-8 JSON, or not an object.
    """
    try:
        value = json.loads(data.rstrip(b"\x00").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError(f"ARSDK discovery message is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise DecodeError("ARSDK discovery message is not a JSON object")
    return value


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class ArNetFrame:
    """One ARNetworkAL frame."""

    type: int
    buffer: int
    seq: int
    payload: bytes


def parse_arnetworkal(data: bytes) -> list[ArNetFrame]:
    """The ARNetworkAL frames of a datagram, which must hold whole frames and nothing else.

    Raises:
        DecodeError: an unknown frame type, a size below the header or past the datagram.
    """
    if len(data) < ARNETWORKAL_HEADER_LEN:
        raise DecodeError(f"ARNetworkAL datagram of {len(data)} bytes")
    frames = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < ARNETWORKAL_HEADER_LEN:
            raise DecodeError("trailing bytes after the last ARNetworkAL frame")
        ftype, buffer, seq, size = _ARNET_HEADER.unpack_from(data, pos)
        if not ARNETWORKAL_ACK <= ftype <= ARNETWORKAL_DATA_WITH_ACK:
            raise DecodeError(f"ARNetworkAL frame type {ftype}")
        if size < ARNETWORKAL_HEADER_LEN or pos + size > len(data):
            raise DecodeError(f"ARNetworkAL frame size {size} at {pos} of {len(data)}")
        frames.append(
            ArNetFrame(ftype, buffer, seq, data[pos + ARNETWORKAL_HEADER_LEN : pos + size])
        )
        pos += size
    return frames


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class ArCommand:
    """An ARCommand carried by a data frame."""

    project: int
    klass: int
    cmd: int
    args: bytes

    @property
    def name(self) -> str:
        return arsdk_command_name(self.project, self.klass, self.cmd)


def parse_arcommand(payload: bytes) -> ArCommand:
    """Split an ARCommand into its id and arguments.

    Raises:
        DecodeError: shorter than the 4-byte command id.
    """
    if len(payload) < 4:
        raise DecodeError(f"ARCommand of {len(payload)} bytes")
    return ArCommand(payload[0], payload[1], payload[2] | (payload[3] << 8), payload[4:])


class ArsdkCounter:
    """The ARNetworkAL frames of one ARSDK flow, counted, and the state its commands report.

    The Python twin of the C `ArsdkCounter`, which the bulk path feeds itself; the
    tests hold both to the same results. A datagram that is not whole frames counts nothing."""

    __slots__ = (
        "_commands",
        "altitude",
        "battery",
        "flying_state",
        "max_altitude",
        "max_names",
        "messages",
        "position",
    )

    def __init__(self, max_names: int = 64) -> None:
        if not 0 <= max_names <= 1 << 20:
            raise ValueError("ArsdkCounter: max_names must be 0 to 1048576")
        self.max_names = max_names
        self.messages = 0
        self._commands: dict[tuple[int, int, int], int] = {}
        self.battery: int | None = None
        self.altitude: float | None = None
        self.max_altitude: float | None = None
        self.position: tuple[float, float] | None = None
        self.flying_state: int | None = None

    @property
    def commands(self) -> list[tuple[tuple[int, int, int], int]]:
        """((project, class, command), frames) in first-seen order, `max_names` of them."""
        return list(self._commands.items())

    def feed(self, data: bytes, from_orig: bool = True) -> int:
        """Count the frames of one datagram: how many, or -1 when it is not ARNetworkAL (either
        direction counts the same)."""
        try:
            frames = parse_arnetworkal(data)
        except DecodeError:
            return -1
        self.messages += len(frames)
        commands = self._commands
        for frame in frames:
            if frame.type not in (ARNETWORKAL_DATA, ARNETWORKAL_DATA_WITH_ACK):
                continue  # acks, and low-latency video
            if frame.buffer in (ARNETWORK_PING_BUFFER, ARNETWORK_PONG_BUFFER):
                continue
            try:
                command = parse_arcommand(frame.payload)
            except DecodeError:
                continue
            key = (command.project, command.klass, command.cmd)
            if key in commands:
                commands[key] += 1
            elif len(commands) < self.max_names:
                commands[key] = 1
            try:
                self._values(key, command.args)
            except struct.error:
                pass  # arguments too short for the command: nothing to read
        return len(frames)

    def _values(self, key: tuple[int, int, int], args: bytes) -> None:
        if key == (0, 5, 1):  # common.CommonState.BatteryStateChanged(percent u8)
            self.battery = args[0] if args else self.battery
        elif key == (1, 4, 8):  # ardrone3.PilotingState.AltitudeChanged(altitude double)
            (altitude,) = struct.unpack_from("<d", args)
            self.altitude = altitude
            if self.max_altitude is None or altitude > self.max_altitude:
                self.max_altitude = altitude
        elif key == (1, 4, 4):  # ardrone3.PilotingState.PositionChanged(lat, lon, alt double)
            lat, lon, _alt = struct.unpack_from("<ddd", args)
            if lat != ARSDK_POSITION_UNKNOWN and lon != ARSDK_POSITION_UNKNOWN:
                self.position = (lat, lon)
        elif key == (1, 4, 1):  # ardrone3.PilotingState.FlyingStateChanged(state enum i32)
            (self.flying_state,) = struct.unpack_from("<i", args)


def arsdk_flying_state_name(value: int) -> str:
    """The name of a FlyingStateChanged value, or its number as text."""
    names = ARSDK_FLYING_STATES
    return names[value] if 0 <= value < len(names) else str(value)


# --- AR.Drone 1/2 ---------------------------------------------------------------------------


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class AtCommand:
    """One AT command: `AT*NAME=seq,arg,...`."""

    name: str
    args: tuple[str, ...]
    """Arguments after the name, the sequence number first; strings keep their quotes."""


def _split_args(text: str) -> tuple[str, ...]:
    if '"' not in text:
        return tuple(text.split(","))
    args: list[str] = []
    start, quoted = 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            args.append(text[start:i])
            start = i + 1
    args.append(text[start:])
    return tuple(args)


def parse_at_commands(data: bytes) -> list[AtCommand]:
    """The AT commands of a datagram, separated by carriage returns.

    Raises:
        DecodeError: not ASCII, or a piece that is not `AT*NAME[=args]`.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DecodeError("AT commands are not ASCII") from exc
    commands = []
    for piece in text.replace("\n", "\r").split("\r"):
        if not piece:
            continue
        if not piece.startswith("AT*"):
            raise DecodeError(f"not an AT command: {piece[:16]!r}")
        name, sep, rest = piece[3:].partition("=")
        if not name or len(name) > 16 or not name.replace("_", "").isalnum() or not name.isupper():
            raise DecodeError(f"bad AT command name {name[:16]!r}")
        commands.append(AtCommand(name, _split_args(rest) if sep else ()))
    if not commands:
        raise DecodeError("no AT command")
    return commands


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class NavdataDemo:
    """Navdata option 0 (demo): the state a controller shows."""

    ctrl_state: int
    """Major state in the high 16 bits, minor in the low 16."""
    battery_pct: int
    theta: float
    """Pitch, millidegrees."""
    phi: float
    """Roll, millidegrees."""
    psi: float
    """Yaw, millidegrees."""
    altitude_mm: int
    """The SDK guide says centimetres; AR.Drone 2.0 sends millimetres (it hovers near 1 m)."""
    vx: float
    vy: float
    vz: float

    @property
    def ctrl_state_name(self) -> str:
        major = self.ctrl_state >> 16
        return ARDRONE_CTRL_STATES[major] if major < len(ARDRONE_CTRL_STATES) else str(major)


def decode_navdata_demo(option: bytes) -> NavdataDemo:
    """Unpack the body of navdata option 0.

    Raises:
        DecodeError: shorter than the demo fields.
    """
    if len(option) < _NAVDATA_DEMO.size:
        raise DecodeError(f"navdata demo option of {len(option)} bytes")
    return NavdataDemo(*_NAVDATA_DEMO.unpack_from(option))


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class Navdata:
    """One navdata packet."""

    magic: int
    state: int
    """Drone state bits (see `ARDRONE_STATE_FLAGS`)."""
    seq: int
    vision: int
    options: tuple[tuple[int, bytes], ...]
    """(tag, body) of each option before the checksum."""
    checksum_ok: bool | None
    """None when the packet carries no checksum option."""

    @property
    def demo(self) -> NavdataDemo | None:
        """The demo option, if present and whole."""
        for tag, body in self.options:
            if tag == NAVDATA_TAG_DEMO:
                try:
                    return decode_navdata_demo(body)
                except DecodeError:
                    return None
        return None


def parse_navdata(data: bytes) -> Navdata:
    """Decode a navdata packet and check its checksum option.

    Raises:
        DecodeError: no navdata magic, or an option that does not fit the packet.
    """
    if len(data) < _NAVDATA_HEADER.size:
        raise DecodeError(f"navdata of {len(data)} bytes")
    magic, state, seq, vision = _NAVDATA_HEADER.unpack_from(data)
    if magic not in NAVDATA_MAGICS:
        raise DecodeError(f"no navdata magic ({magic:#010x})")
    options: list[tuple[int, bytes]] = []
    checksum_ok = None
    pos = _NAVDATA_HEADER.size
    while pos + 4 <= len(data):
        tag, size = struct.unpack_from("<HH", data, pos)
        if size < 4 or pos + size > len(data):
            raise DecodeError(f"navdata option {tag} of size {size} at {pos}")
        if tag == NAVDATA_TAG_CHECKSUM:
            if size >= 8:
                (value,) = struct.unpack_from("<I", data, pos + 4)
                checksum_ok = sum(data[:pos]) & 0xFFFFFFFF == value
            break
        options.append((tag, data[pos + 4 : pos + size]))
        pos += size
    return Navdata(magic, state, seq, vision, tuple(options), checksum_ok)


# --- analyzer -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParrotOptions:
    """Tunables of the Parrot analyzer."""

    probe_packets: int = 8
    """Payload packets read before an unrecognised flow is given up: on a Parrot port, or (UDP)
    on none and no ARSDK end learned (discovery names the ends before the data flows)."""
    max_names: int = 64
    """Distinct command names (and config keys) kept per flow."""
    max_endpoints: int = 64
    """ARSDK data endpoints remembered from discovery exchanges."""
    max_discovery_bytes: int = 8192
    """Most bytes buffered per direction of a discovery connection."""
    follow_flow: bool = True
    """Follow recognised flows to their end, so every packet is read."""


@dataclass(frozen=True, slots=True)
class ParrotRecord(ConnRecord):
    """One Parrot link flow, written when it ends; `ts` is the time of its first message."""

    log: ClassVar[str] = "parrot"
    protocol: str
    """`arsdk_discovery`, `arsdk`, `ardrone_at` or `ardrone_navdata`."""
    messages: int
    """JSON messages, ARNetworkAL frames, AT commands or navdata packets."""
    commands: dict[str, int] | None = None
    """ARCommands (`ardrone3.Piloting.TakeOff`) or AT commands (`REF`, `PCMD`) per name."""
    controller_type: str | None = None
    controller_name: str | None = None
    d2c_port: int | None = None
    """The controller's ARNetworkAL port, from the discovery request."""
    c2d_port: int | None = None
    """The drone's ARNetworkAL port, from the discovery answer."""
    discovery_status: int | None = None
    """`status` of the discovery answer (0 accepted)."""
    config_keys: tuple[str, ...] | None = None
    """Keys set with AT*CONFIG (`general:navdata_demo`...)."""
    takeoff_requests: int | None = None
    """AT*REF changes that set the take-off bit."""
    land_requests: int | None = None
    """AT*REF changes that clear it."""
    battery_pct: int | None = None
    """Last battery level (navdata demo, or common.CommonState.BatteryStateChanged)."""
    altitude_m: float | None = None
    """Last altitude (navdata demo, or ardrone3.PilotingState.AltitudeChanged)."""
    max_altitude_m: float | None = None
    last_lat: float | None = None
    """Last ardrone3.PilotingState.PositionChanged latitude, when the drone had one."""
    last_lon: float | None = None
    flight_state: str | None = None
    """Last control state (AR.Drone: `landed`, `flying`, `hovering`, `goto_fix`...) or ARSDK
    flying state (`landed`, `takingoff`, `hovering`, `flying`, `landing`...)."""
    flying: bool | None = None
    """The fly bit of the last navdata drone state."""
    flew: bool | None = None
    """Any navdata packet had the fly bit set."""
    state_flags: tuple[str, ...] | None = None
    """Drone-state bits set in the last navdata packet."""
    checksum_errors: int | None = None
    """Navdata packets whose checksum option did not match."""


class _Stream:
    """One direction of the discovery connection: bytes not yet framed."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes, gap: int) -> None:
        """Append the direction's next bytes; lost bytes before them (`gap`) drop the partial
        message."""
        if gap:
            self.buf.clear()
        self.buf += data


@dataclass(slots=True)
class _ParrotState:
    protocol: str
    first_ts: float | None = None
    probed: int = 0
    messages: int = 0
    commands: Counter[str] = field(default_factory=Counter)
    discovery: dict[str, object] = field(default_factory=dict)
    config_keys: list[str] = field(default_factory=list)
    last_ref: int | None = None
    takeoffs: int = 0
    landings: int = 0
    battery: int | None = None
    altitude: float | None = None
    max_altitude: float | None = None
    position: tuple[float, float] | None = None
    flight_state: str | None = None
    drone_state: int | None = None
    flew: bool = False
    checksum_errors: int = 0
    streams: dict[bool, _Stream] = field(default_factory=dict)
    counter: ArsdkCounter | None = None
    """An ARSDK flow's frames and the state they report (the other protocols use the fields)."""


def _remember(table: dict[_K, None], key: _K, limit: int) -> None:
    table[key] = None
    while len(table) > limit:
        del table[next(iter(table))]


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: object) -> str | None:
    return value[:128] if isinstance(value, str) else None


class ParrotAnalyzer:
    """Read Parrot ARSDK and AR.Drone traffic into one parrot.jsonl record per flow."""

    name = "parrot"
    wants_ports = frozenset({ARSDK_DISCOVERY_PORT})
    """The ports `wants` reads (`WantsHook`)."""
    tcp_stream = True
    """Its packet hook reads the TCP discovery exchange in order (`dronewatch.core.stream`)."""

    def __init__(self, ctx: Context, options: ParrotOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or ParrotOptions()
        self._state: dict[str, _ParrotState] = {}  # keyed by flow.uid, dropped in flow_end
        self._rejected: set[str] = set()
        self._misses = Misses(self.options.probe_packets)
        """Datagrams of flows on no Parrot port nor learned ARSDK end (`Misses`)."""
        self._arsdk_ends: dict[tuple[bytes, int], None] = {}  # learned from discovery
        self._counter = counter_type("ArsdkCounter", ArsdkCounter)

    def _protocol(self, flow: Flow) -> str | None:
        """Which Parrot protocol a flow's ports (or a learned endpoint) point to."""
        orig_p, resp_p = flow.orig_p, flow.resp_p
        if flow.proto == IP_PROTO_TCP:
            return "arsdk_discovery" if ARSDK_DISCOVERY_PORT in (orig_p, resp_p) else None
        if flow.proto != IP_PROTO_UDP:
            return None
        if ARDRONE_AT_PORT in (orig_p, resp_p):
            return "ardrone_at"
        if orig_p in ARDRONE_NAVDATA_PORTS or resp_p in ARDRONE_NAVDATA_PORTS:
            return "ardrone_navdata"
        if orig_p in ARSDK_C2D_PORTS or resp_p in ARSDK_C2D_PORTS:
            return "arsdk"
        if orig_p in ARSDK_D2C_PORTS or resp_p in ARSDK_D2C_PORTS:
            return "arsdk"
        ends = self._arsdk_ends
        if ends and ((flow.orig_h, orig_p) in ends or (flow.resp_h, resp_p) in ends):
            return "arsdk"
        return None

    def wants(self, flow: Flow) -> bool:
        """UDP flows (ARSDK ends are learned later) and TCP discovery."""
        return flow.proto == IP_PROTO_UDP or (
            flow.proto == IP_PROTO_TCP and ARSDK_DISCOVERY_PORT in (flow.orig_p, flow.resp_p)
        )

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Read one datagram or segment of a flow on a Parrot port."""
        if not pkt.payload:
            return
        state = self._state.get(flow.uid)
        if state is None:
            if flow.service and flow.service not in ("ardrone", "parrot_arsdk"):
                flow.decline(self.name)  # another protocol was recognised on it
                return
            protocol = self._protocol(flow)
            if protocol is None:
                # ARSDK ends are learned from a discovery exchange that comes before the data: a
                # flow that keeps to other ports for `probe_packets` datagrams is no Parrot's.
                if flow.proto == IP_PROTO_UDP:
                    self._misses.miss(flow, self.name)
                return
            if flow.uid in self._rejected:
                return
            state = self._state[flow.uid] = _ParrotState(protocol)
            if protocol == "arsdk":
                state.counter = self._counter(self.options.max_names)
        protocol = state.protocol
        if protocol == "ardrone_at":
            self._at(flow, state, pkt)
        elif protocol == "ardrone_navdata":
            self._navdata(flow, state, pkt)
        elif protocol == "arsdk":
            self._arsdk(flow, state, pkt)
        else:
            self._discovery(flow, state, pkt)
        if state.first_ts is None and len(pkt.payload) >= 8:  # wake-up pings do not count
            state.probed += 1
            if state.probed >= self.options.probe_packets:
                del self._state[flow.uid]
                self._rejected.add(flow.uid)
                flow.decline(self.name)

    def _recognise(self, flow: Flow, state: _ParrotState, ts: float) -> None:
        if state.first_ts is not None:
            return
        state.first_ts = ts
        link = "ardrone" if state.protocol.startswith("ardrone") else "parrot_arsdk"
        follower = self.name if self.options.follow_flow else None
        flow.recognise_link(link, follower, state.counter)

    def _count(self, state: _ParrotState, name: str) -> None:
        if name in state.commands or len(state.commands) < self.options.max_names:
            state.commands[name] += 1

    def _at(self, flow: Flow, state: _ParrotState, pkt: Packet) -> None:
        try:
            commands = parse_at_commands(pkt.payload)
        except DecodeError:
            return
        self._recognise(flow, state, pkt.ts)
        for command in commands:
            state.messages += 1
            self._count(state, command.name)
            args = command.args
            if command.name == "REF" and len(args) >= 2:
                self._ref(state, args[1])
            elif command.name == "CONFIG" and len(args) >= 2:
                key = args[1].strip().strip('"')[:64]
                if key and key not in state.config_keys:
                    if len(state.config_keys) < self.options.max_names:
                        state.config_keys.append(key)

    @staticmethod
    def _ref(state: _ParrotState, arg: str) -> None:
        try:
            value = int(arg)
        except ValueError:
            return
        if state.last_ref is not None:
            before, now = state.last_ref & ARDRONE_REF_TAKEOFF, value & ARDRONE_REF_TAKEOFF
            state.takeoffs += bool(now and not before)
            state.landings += bool(before and not now)
        elif value & ARDRONE_REF_TAKEOFF:
            state.takeoffs += 1
        state.last_ref = value

    def _navdata(self, flow: Flow, state: _ParrotState, pkt: Packet) -> None:
        if len(pkt.payload) < _NAVDATA_HEADER.size:
            return  # the controller's 4-byte wake-up
        try:
            nav = parse_navdata(pkt.payload)
        except DecodeError:
            return
        self._recognise(flow, state, pkt.ts)
        state.messages += 1
        if nav.checksum_ok is False:
            state.checksum_errors += 1
            return
        state.drone_state = nav.state
        state.flew = state.flew or bool(nav.state & 1)
        demo = nav.demo
        if demo is not None:
            state.battery = demo.battery_pct
            state.flight_state = demo.ctrl_state_name
            self._altitude(state, demo.altitude_mm / 1000.0)

    @staticmethod
    def _altitude(state: _ParrotState, altitude: float) -> None:
        state.altitude = altitude
        if state.max_altitude is None or altitude > state.max_altitude:
            state.max_altitude = altitude

    def _arsdk(self, flow: Flow, state: _ParrotState, pkt: Packet) -> None:
        """An ARSDK datagram: counted by the flow's counter (all that happens once the flow is
        followed: see `Flow.follow`)."""
        assert state.counter is not None
        if state.counter.feed(pkt.payload) >= 0:
            self._recognise(flow, state, pkt.ts)

    def _discovery(self, flow: Flow, state: _ParrotState, pkt: Packet) -> None:
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        stream = state.streams.get(from_orig)
        if stream is None:
            stream = state.streams[from_orig] = _Stream()
        stream.feed(pkt.payload, pkt.gap)
        buf = stream.buf
        while buf:
            end = buf.find(b"\x00")
            if end >= 0:
                raw = bytes(buf[:end])
                del buf[: end + 1]
            else:
                raw = bytes(buf).rstrip()
                if not raw.endswith(b"}"):
                    break  # the rest of the object is still to come
                try:
                    message = parse_arsdk_json(raw)
                except DecodeError:
                    break
                buf.clear()  # a whole object sent without its NUL
                self._discovery_message(flow, state, pkt, message)
                continue
            if not raw.strip(b" \r\n"):
                continue
            try:
                message = parse_arsdk_json(raw)
            except DecodeError as exc:
                logger.debug("%s: %s", flow.uid, exc)
                continue
            self._discovery_message(flow, state, pkt, message)
        if len(buf) > self.options.max_discovery_bytes:
            buf.clear()

    def _discovery_message(
        self, flow: Flow, state: _ParrotState, pkt: Packet, message: dict[str, object]
    ) -> None:
        if not message.keys() & _DISCOVERY_KEYS:
            return
        self._recognise(flow, state, pkt.ts)
        state.messages += 1
        for key in _DISCOVERY_KEYS:
            if key in message and key not in state.discovery:
                state.discovery[key] = message[key]
        limit = self.options.max_endpoints
        d2c = _int_or_none(message.get("d2c_port"))
        if d2c is not None:
            _remember(self._arsdk_ends, (pkt.src, d2c), limit)
        c2d = _int_or_none(message.get("c2d_port"))
        if c2d is not None:
            _remember(self._arsdk_ends, (pkt.src, c2d), limit)

    def flow_end(self, flow: Flow) -> None:
        """Write the flow's record if it carried a Parrot protocol, and drop its state."""
        self._rejected.discard(flow.uid)
        self._misses.drop(flow)
        state = self._state.pop(flow.uid, None)
        if state is None or state.first_ts is None:
            return
        protocol = state.protocol
        at, navdata = protocol == "ardrone_at", protocol == "ardrone_navdata"
        disc = state.discovery
        drone_state = state.drone_state
        counter = state.counter
        if counter is not None:  # an ARSDK flow: what its frames said
            state.messages = counter.messages
            state.commands = Counter({arsdk_command_name(*key): n for key, n in counter.commands})
            state.battery, state.altitude = counter.battery, counter.altitude
            state.max_altitude, state.position = counter.max_altitude, counter.position
            if counter.flying_state is not None:
                state.flight_state = arsdk_flying_state_name(counter.flying_state)
        self.ctx.emit(
            ParrotRecord(
                ts=state.first_ts,
                **conn(flow),
                protocol=protocol,
                messages=state.messages,
                commands=dict(state.commands.most_common()) if state.commands else None,
                controller_type=_str_or_none(disc.get("controller_type")),
                controller_name=_str_or_none(disc.get("controller_name")),
                d2c_port=_int_or_none(disc.get("d2c_port")),
                c2d_port=_int_or_none(disc.get("c2d_port")),
                discovery_status=_int_or_none(disc.get("status")),
                config_keys=tuple(state.config_keys) if at else None,
                takeoff_requests=state.takeoffs if at else None,
                land_requests=state.landings if at else None,
                battery_pct=state.battery,
                altitude_m=state.altitude,
                max_altitude_m=state.max_altitude,
                last_lat=state.position[0] if state.position else None,
                last_lon=state.position[1] if state.position else None,
                flight_state=state.flight_state,
                flying=bool(drone_state & 1) if drone_state is not None else None,
                flew=state.flew if navdata else None,
                state_flags=ardrone_state_flags(drone_state) if drone_state is not None else None,
                checksum_errors=state.checksum_errors if navdata else None,
            )
        )


__all__ = [
    "ARDRONE_CTRL_STATES",
    "ARDRONE_STATE_FLAGS",
    "ARSDK_COMMANDS",
    "ArCommand",
    "ArNetFrame",
    "AtCommand",
    "Navdata",
    "NavdataDemo",
    "ParrotAnalyzer",
    "ParrotOptions",
    "ParrotRecord",
    "ArsdkCounter",
    "ardrone_state_flags",
    "arsdk_flying_state_name",
    "arsdk_command_name",
    "decode_navdata_demo",
    "parse_arcommand",
    "parse_arnetworkal",
    "parse_arsdk_json",
    "parse_at_commands",
    "parse_navdata",
]
