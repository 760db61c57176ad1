"""Ryze/DJI Tello: the SDK's text commands on UDP 8889, its state strings on 8890, its video on
11111, and the official app's binary protocol on 8889.

Tello SDK 1.3/2.0 (endpoints.md section 6): the controller sends words such as `command`,
`takeoff`, `battery?` or `rc 0 0 0 0` to 192.168.10.1:8889 and gets `ok`, `error...` or a value
back; the drone pushes `pitch:0;roll:0;yaw:0;...;bat:87;...;` to the controller's port 8890 and,
after `streamon`, raw H.264 to its port 11111. The Tello app instead speaks a binary protocol on
8889 (the TelloPilots wiki, TelloPy): a `conn_req:` handshake naming the video port, then
packets of

  0      0xCC
  1..2   LE u16: packet length << 3
  3      CRC-8 of bytes 0..2 (the DUML table: reflected poly 0x31, init 0x77)
  4      packet type
  5..6   LE message id
  7..8   LE sequence number
  9..    payload
  -2..   LE CRC-16 of all before (reflected poly 0x1021, init 0x3692)
"""

from __future__ import annotations

import binascii
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from dronewatch.analyzers._probe import Misses
from dronewatch.core.flow import IP_PROTO_UDP, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError
from dronewatch.fastpath import counter_type
from dronewatch.judge.devices import AIRCRAFT_PORTS

logger = logging.getLogger(__name__)

TELLO_SDK_PORTS = AIRCRAFT_PORTS["tello"]
"""The drone's command port (8889), for the SDK text and the app's binary protocol alike."""
TELLO_STATE_PORT = 8890
TELLO_VIDEO_PORT = 11111
TELLO_SOF = 0xCC
TELLO_HEADER_LEN = 9
TELLO_MIN_LEN = TELLO_HEADER_LEN + 2
TELLO_CONN_REQ = b"conn_req:"
TELLO_CONN_ACK = b"conn_ack:"
H264_START_CODE = b"\x00\x00\x00\x01"

TELLO_SDK_COMMANDS = frozenset(
    (
        "command takeoff land streamon streamoff emergency up down left right forward back cw ccw "
        "flip go stop curve jump speed rc wifi mon moff mdirection ap motoron motoroff throwfly "
        "reboot port setfps setbitrate setresolution downvision multiwifi EXT "
        "speed? battery? time? wifi? sdk? sn? height? temp? attitude? baro? acceleration? tof? "
        "hardware? active?"
    ).split()
)
"""Command words of the Tello SDK 1.3 and 2.0 (Tello EDU / RMTT)."""

TELLO_STATE_KEYS = frozenset(
    "mid x y z mpry pitch roll yaw vgx vgy vgz templ temph tof h bat baro time agx agy agz".split()
)
"""Fields of the SDK state string."""

TELLO_MSG_NAMES: dict[int, str] = {
    0x0011: "ssid",
    0x0012: "set_ssid",
    0x0013: "ssid_password",
    0x0014: "set_ssid_password",
    0x0015: "wifi_region",
    0x0016: "set_wifi_region",
    0x001A: "wifi",
    0x0020: "video_encoder_rate",
    0x0021: "video_dyn_adj_rate",
    0x0024: "eis",
    0x0025: "video_start",
    0x0028: "video_rate_query",
    0x0030: "take_picture",
    0x0031: "video_mode",
    0x0032: "video_record",
    0x0034: "exposure",
    0x0035: "light",
    0x0037: "jpeg_quality",
    0x0043: "error_1",
    0x0044: "error_2",
    0x0045: "version",
    0x0046: "time",
    0x0047: "activation_time",
    0x0049: "loader_version",
    0x0050: "stick",
    0x0054: "takeoff",
    0x0055: "land",
    0x0056: "flight_data",
    0x0058: "set_alt_limit",
    0x005C: "flip",
    0x005D: "throw_and_go",
    0x005E: "palm_land",
    0x0062: "file_size",
    0x0063: "file_data",
    0x0064: "file_complete",
    0x0080: "smart_video",
    0x0081: "smart_video_status",
    0x1050: "log_header",
    0x1051: "log_data",
    0x1052: "log_config",
    0x1053: "bounce",
    0x1054: "calibrate",
    0x1055: "set_low_bat_threshold",
    0x1056: "alt_limit",
    0x1057: "low_bat_threshold",
    0x1058: "set_att_limit",
    0x1059: "att_limit",
}
"""Binary-protocol message ids (TelloPilots wiki, TelloPy `protocol.py`)."""

_MAX_TEXT = 512
_K = TypeVar("_K")


def _crc8_table() -> bytes:
    table = bytearray()
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1  # 0x8C is 0x31 reflected
        table.append(crc)
    return bytes(table)


_CRC8_TABLE = _crc8_table()
_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _reflect16(value: int) -> int:
    return (_BIT_REVERSED[value & 0xFF] << 8) | _BIT_REVERSED[value >> 8]


def tello_crc8(data: bytes | bytearray, init: int = 0x77) -> int:
    """The header checksum: reflected CRC-8 with poly 0x31, seeded with 0x77."""
    crc = init
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc


def tello_crc16(data: bytes | bytearray, init: int = 0x3692) -> int:
    """The packet checksum: reflected CRC-16 with poly 0x1021, seeded with 0x3692."""
    raw = bytes(data).translate(_BIT_REVERSED)
    return _reflect16(binascii.crc_hqx(raw, _reflect16(init)))


def tello_msg_name(msg_id: int) -> str:
    """The name of a binary message id, or the id in hex."""
    return TELLO_MSG_NAMES.get(msg_id) or f"{msg_id:#06x}"


class TelloCrcError(DecodeError):
    """A binary Tello packet whose header checksum matches but whose packet checksum does not."""


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class TelloPacket:
    """One packet of the Tello app's binary protocol."""

    pkt_type: int
    msg_id: int
    seq: int
    payload: bytes

    @property
    def name(self) -> str:
        return tello_msg_name(self.msg_id)


def parse_tello_packet(data: bytes) -> TelloPacket:
    """Decode a binary Tello packet (one per datagram).

    Raises:
        TelloCrcError: the header checksum matches but the packet checksum does not.
        DecodeError: no 0xCC, a bad header checksum, or a length that does not fit.
    """
    if len(data) < TELLO_MIN_LEN:
        raise DecodeError(f"Tello packet of {len(data)} bytes")
    if data[0] != TELLO_SOF:
        raise DecodeError(f"no Tello start byte ({data[0]:#04x})")
    if tello_crc8(data[:3]) != data[3]:
        raise DecodeError("Tello header checksum mismatch")
    length = (data[1] | (data[2] << 8)) >> 3
    if not TELLO_MIN_LEN <= length <= len(data):
        raise DecodeError(f"Tello length {length} in a datagram of {len(data)}")
    sent = data[length - 2] | (data[length - 1] << 8)
    crc = tello_crc16(data[: length - 2])
    if crc != sent:
        raise TelloCrcError(f"Tello checksum {sent:#06x}, expected {crc:#06x}")
    return TelloPacket(
        pkt_type=data[4],
        msg_id=data[5] | (data[6] << 8),
        seq=data[7] | (data[8] << 8),
        payload=bytes(data[TELLO_HEADER_LEN : length - 2]),
    )


def parse_tello_text(data: bytes) -> str:
    """An SDK command or response: printable ASCII, whitespace stripped.

    Raises:
        DecodeError: empty, too long, or not printable text.
    """
    if not data or len(data) > _MAX_TEXT:
        raise DecodeError(f"Tello text of {len(data)} bytes")
    try:
        text = data.decode("ascii").strip("\r\n\t \x00")
    except UnicodeDecodeError as exc:
        raise DecodeError("Tello text is not ASCII") from exc
    if not text or not text.isprintable():
        raise DecodeError("Tello text is empty or not printable")
    return text


def tello_command_verb(text: str) -> str | None:
    """The SDK command word of `text` (`takeoff`, `battery?`, `rc`...), or None if unknown."""
    word = text.split(" ", 1)[0]
    if word in TELLO_SDK_COMMANDS:
        return word
    lower = word.lower()
    return lower if lower in TELLO_SDK_COMMANDS else None


def parse_tello_state(data: bytes) -> dict[str, str]:
    """The fields of an SDK state string `pitch:0;roll:0;...;bat:87;...`.

    Raises:
        DecodeError: not text, a piece without `:`, or fewer than three known fields.
    """
    text = parse_tello_text(data)
    fields: dict[str, str] = {}
    for piece in text.split(";"):
        piece = piece.strip()
        if not piece:
            continue
        key, sep, value = piece.partition(":")
        if not sep or not key:
            raise DecodeError(f"Tello state piece {piece[:20]!r} has no key")
        fields[key] = value
    if len(fields.keys() & TELLO_STATE_KEYS) < 3:
        raise DecodeError("not a Tello state string")
    return fields


def _remember(table: dict[_K, None], key: _K, limit: int) -> None:
    """Add `key` to an insertion-ordered table, dropping the oldest beyond `limit`."""
    table[key] = None
    while len(table) > limit:
        del table[next(iter(table))]


def _int(value: str | None) -> int | None:
    """`round(float(value))`, or None for no value or one that is no finite number."""
    if value is None:
        return None
    try:
        return round(float(value))
    except (ValueError, OverflowError):  # not a number; nan; inf
        return None


_STATE_VALUES = (
    ("battery", "bat"),
    ("height", "h"),
    ("tof", "tof"),
    ("temp_low", "templ"),
    ("temp_high", "temph"),
)
"""The counter's attribute for each state-string field kept."""


class TelloStateCounter:
    """The SDK state strings of one Tello state flow, counted, and the last values they gave.

    The Python twin of the C `TelloStateCounter`, which the bulk path feeds itself; the tests
    hold both to the same results. A datagram that is not a state string counts nothing."""

    __slots__ = ("battery", "height", "packets", "temp_high", "temp_low", "tof")

    def __init__(self) -> None:
        self.packets = 0
        self.battery: int | None = None
        self.height: int | None = None
        self.tof: int | None = None
        self.temp_low: int | None = None
        self.temp_high: int | None = None

    def feed(self, data: bytes, from_orig: bool = True) -> int:
        """Count one datagram: 1 for a state string, -1 for anything else (either direction
        counts the same)."""
        try:
            fields = parse_tello_state(data)
        except DecodeError:
            return -1
        self.packets += 1
        for attr, key in _STATE_VALUES:
            value = _int(fields.get(key))
            if value is not None:
                setattr(self, attr, value)
        return 1


@dataclass(frozen=True, slots=True)
class TelloOptions:
    """Tunables of the Tello analyzer."""

    max_commands: int = 64
    """Commands (and responses) listed per flow, first ones first."""
    probe_packets: int = 8
    """Datagrams read before an unrecognised flow is given up: on a Tello port, or on none and no
    video end learned (the handshake that names one comes before the video)."""
    max_hosts: int = 64
    """Tello addresses and video endpoints remembered to recognise their video flows."""
    follow_flow: bool = True
    """Follow recognised command and state flows to their end, so every datagram is read."""


@dataclass(frozen=True, slots=True)
class TelloRecord(ConnRecord):
    """One Tello flow, written when it ends; `ts` is the time of its first recognised datagram."""

    log: ClassVar[str] = "tello"
    channel: str
    """`sdk` (text commands), `binary` (the app's protocol), `state` or `video`."""
    commands: tuple[str, ...] | None = None
    """SDK command lines sent to the drone, first ones first (bounded)."""
    command_counts: dict[str, int] | None = None
    """SDK commands per command word."""
    responses: tuple[str, ...] | None = None
    """The drone's answers (`ok`, `error`, values), first ones first (bounded)."""
    battery_pct: int | None = None
    """Last battery level: `bat` of the state string or the answer to `battery?`."""
    height_cm: int | None = None
    """Last `h` of the state string."""
    tof_cm: int | None = None
    """Last time-of-flight distance (`tof`)."""
    temp_low_c: int | None = None
    temp_high_c: int | None = None
    state_packets: int | None = None
    video_packets: int | None = None
    video_bytes: int | None = None
    """Payload bytes of the video flow (counted, not decoded)."""
    packets: int | None = None
    """Binary-protocol packets that passed both checksums."""
    crc_errors: int | None = None
    messages: dict[str, int] | None = None
    """Binary-protocol packets per message name, most frequent first."""
    video_port: int | None = None
    """The controller's video port named in the binary `conn_req:` handshake."""


@dataclass(slots=True)
class _TelloState:
    channel: str = ""
    first_ts: float | None = None
    probed: int = 0
    commands: list[str] = field(default_factory=list)
    verbs: Counter[str] = field(default_factory=Counter)
    responses: list[str] = field(default_factory=list)
    last_verb: str | None = None
    battery: int | None = None
    """The last answer to `battery?` (SDK flows)."""
    counter: TelloStateCounter | None = None
    """A state flow's state strings (`TelloStateCounter`, or its C twin)."""
    packets: int = 0
    crc_errors: int = 0
    messages: Counter[str] = field(default_factory=Counter)
    video_port: int | None = None


class TelloAnalyzer:
    """Read Tello SDK commands, state and binary packets into one tello.jsonl record per flow."""

    name = "tello"
    wants_ports: frozenset[int] = frozenset()
    """The ports `wants` reads (`WantsHook`)."""

    def __init__(self, ctx: Context, options: TelloOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or TelloOptions()
        self._state: dict[str, _TelloState] = {}  # keyed by flow.uid, dropped in flow_end
        self._rejected: set[str] = set()
        self._misses = Misses(self.options.probe_packets)
        """Datagrams of flows on no Tello port nor learned video end (`Misses`)."""
        self._counter = counter_type("TelloStateCounter", TelloStateCounter)
        """The state flows' counter type: the C one where the extension is built."""
        self._drones: dict[bytes, None] = {}  # addresses of recognised Tellos, oldest first
        self._video_ends: dict[tuple[bytes, int], None] = {}  # from conn_req handshakes

    def wants(self, flow: Flow) -> bool:
        """The Tello SDK runs over UDP (video ends are learned later, so any UDP flow)."""
        return flow.proto == IP_PROTO_UDP

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Read one datagram of a flow on a Tello port."""
        if flow.proto != IP_PROTO_UDP or not pkt.payload:
            return
        if flow.service and flow.service != "tello" and flow.uid not in self._state:
            flow.decline(self.name)  # another protocol was recognised on it
            return
        ports = (flow.orig_p, flow.resp_p)
        if TELLO_STATE_PORT in ports:
            channel = "state"
        elif TELLO_VIDEO_PORT in ports:
            channel = "video"
        elif flow.orig_p in TELLO_SDK_PORTS or flow.resp_p in TELLO_SDK_PORTS:
            channel = "command"
        elif self._video_ends and self._is_video(flow):
            channel = "video"
        else:
            # A video end is learned from a handshake that comes before the video: a flow that
            # keeps to other ports for `probe_packets` datagrams is no Tello's.
            self._misses.miss(flow, self.name)
            return
        if flow.uid in self._rejected:
            return
        state = self._state.get(flow.uid)
        if state is None:
            state = self._state[flow.uid] = _TelloState()
        if channel == "state":
            self._state_string(flow, state, pkt)
        elif channel == "video":
            if state.first_ts is None and (
                self._is_video(flow) or pkt.payload.startswith(H264_START_CODE)
            ):
                self._recognise(flow, state, "video", pkt.ts, follow=False)
        elif pkt.payload[0] == TELLO_SOF or pkt.payload.startswith(
            (TELLO_CONN_REQ, TELLO_CONN_ACK)
        ):
            self._binary(flow, state, pkt)
        else:
            self._text(flow, state, pkt)
        if state.first_ts is None:
            state.probed += 1
            if state.probed >= self.options.probe_packets:
                del self._state[flow.uid]
                self._rejected.add(flow.uid)
                flow.decline(self.name)

    def _is_video(self, flow: Flow) -> bool:
        if (flow.orig_h, flow.orig_p) in self._video_ends:
            return True
        if (flow.resp_h, flow.resp_p) in self._video_ends:
            return True
        ports = (flow.orig_p, flow.resp_p)
        return TELLO_VIDEO_PORT in ports and (
            flow.orig_h in self._drones or flow.resp_h in self._drones
        )

    def _recognise(
        self,
        flow: Flow,
        state: _TelloState,
        channel: str,
        ts: float,
        follow: bool = True,
        counter: TelloStateCounter | None = None,
    ) -> None:
        if state.first_ts is not None:
            return
        state.first_ts = ts
        state.channel = channel
        following = follow and self.options.follow_flow
        flow.recognise_link("tello", self.name if following else None, counter)
        if channel in ("sdk", "binary"):
            drone = flow.resp_h if flow.resp_p in TELLO_SDK_PORTS else flow.orig_h
            _remember(self._drones, drone, self.options.max_hosts)

    def _text(self, flow: Flow, state: _TelloState, pkt: Packet) -> None:
        try:
            text = parse_tello_text(pkt.payload)
        except DecodeError:
            return
        limit = self.options.max_commands
        if pkt.dport in TELLO_SDK_PORTS:
            verb = tello_command_verb(text)
            if verb is None:
                return
            self._recognise(flow, state, "sdk", pkt.ts)
            state.verbs[verb] += 1
            state.last_verb = verb
            if len(state.commands) < limit:
                state.commands.append(text[:64])
        elif state.first_ts is not None:
            if len(state.responses) < limit:
                state.responses.append(text[:64])
            if state.last_verb == "battery?" and text.isdigit():
                state.battery = int(text)
            state.last_verb = None

    def _binary(self, flow: Flow, state: _TelloState, pkt: Packet) -> None:
        data = pkt.payload
        if data.startswith(TELLO_CONN_REQ):
            if len(data) >= len(TELLO_CONN_REQ) + 2:
                port = int.from_bytes(data[len(TELLO_CONN_REQ) : len(TELLO_CONN_REQ) + 2], "little")
                state.video_port = port
                _remember(self._video_ends, (pkt.src, port), self.options.max_hosts)
            self._recognise(flow, state, "binary", pkt.ts)
            return
        if data.startswith(TELLO_CONN_ACK):
            if state.first_ts is not None:
                state.messages["conn_ack"] += 1
            return
        try:
            packet = parse_tello_packet(data)
        except TelloCrcError as exc:
            state.crc_errors += 1
            logger.debug("%s: %s", flow.uid, exc)
            return
        except DecodeError:
            return
        self._recognise(flow, state, "binary", pkt.ts)
        state.packets += 1
        if packet.name in state.messages or len(state.messages) < 64:
            state.messages[packet.name] += 1

    def _state_string(self, flow: Flow, state: _TelloState, pkt: Packet) -> None:
        """A datagram of a state flow: counted by the flow's counter (all that happens once the
        flow is recognised and followed: the bulk path may feed a C counter itself)."""
        counter = state.counter
        if counter is None:
            counter = state.counter = self._counter()
        if counter.feed(pkt.payload) >= 0:
            self._recognise(flow, state, "state", pkt.ts, counter=counter)

    def flow_end(self, flow: Flow) -> None:
        """Write the flow's record if it was a Tello flow, and drop its state."""
        self._rejected.discard(flow.uid)
        self._misses.drop(flow)
        state = self._state.pop(flow.uid, None)
        if state is None or state.first_ts is None:
            return
        channel = state.channel
        # A state flow: what its state strings said (its counter); an SDK flow: the battery
        # its answers gave.
        read = state.counter if channel == "state" else None
        sdk, binary = channel == "sdk", channel == "binary"
        video = channel == "video"
        self.ctx.emit(
            TelloRecord(
                ts=state.first_ts,
                **conn(flow),
                channel=channel,
                commands=tuple(state.commands) if sdk else None,
                command_counts=dict(state.verbs.most_common()) if sdk else None,
                responses=tuple(state.responses) if sdk else None,
                battery_pct=read.battery if read is not None else state.battery,
                height_cm=read.height if read is not None else None,
                tof_cm=read.tof if read is not None else None,
                temp_low_c=read.temp_low if read is not None else None,
                temp_high_c=read.temp_high if read is not None else None,
                state_packets=read.packets if read is not None else None,
                video_packets=flow.orig_pkts + flow.resp_pkts if video else None,
                video_bytes=flow.orig_payload_bytes + flow.resp_payload_bytes if video else None,
                packets=state.packets if binary else None,
                crc_errors=state.crc_errors if binary else None,
                messages=dict(state.messages.most_common()) if binary else None,
                video_port=state.video_port,
            )
        )


__all__ = [
    "TELLO_MSG_NAMES",
    "TELLO_SDK_COMMANDS",
    "TelloAnalyzer",
    "TelloCrcError",
    "TelloOptions",
    "TelloPacket",
    "TelloRecord",
    "TelloStateCounter",
    "parse_tello_packet",
    "parse_tello_state",
    "parse_tello_text",
    "tello_command_verb",
    "tello_crc16",
    "tello_crc8",
    "tello_msg_name",
]
