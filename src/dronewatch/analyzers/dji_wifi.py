"""DJI Wi-Fi link: DUML frames between the phone and a Wi-Fi DJI aircraft on UDP 9003 (and 9004).

The app of a Wi-Fi DJI drone (Spark, Mavic Air/Mini in Wi-Fi mode, Neo, Goggles live view) talks
to the aircraft at 192.168.2.1:9003 with DUML, DJI's internal command protocol, either bare in the
datagram or after a short wrapper header (endpoints.md 1c). DUML v1 frame, as laid out by public
reverse engineering (dji-firmware-tools' dissectors):

  0      0x55
  1..2   LE u16: frame length (low 10 bits) | version (high 6 bits, 1)
  3      CRC-8 of bytes 0..2: reflected poly 0x31 (table 0x00 0x5E 0xBC...), init 0x77
  4      sender   (device type in the low 5 bits, index in the high 3)
  5      receiver
  6..7   LE sequence number
  8      command type: bit 7 response, bits 5..6 ack wanted, bits 0..3 encryption
  9      command set
  10     command id
  11..   payload
  -2..   LE CRC-16 of all before: reflected poly 0x1021 (0x8408), init 0x3692

A frame is searched for in the first 16 bytes of a datagram and accepted when its header CRC-8
matches; the flow is taken for DJI once one frame also passes its CRC-16.
"""

from __future__ import annotations

import binascii
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from dronewatch.core.flow import IP_PROTO_UDP, Flow, Packet
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError
from dronewatch.fastpath import counter_type
from dronewatch.judge.devices import AIRCRAFT_PORTS

logger = logging.getLogger(__name__)

DUML_SOF = 0x55
DUML_HEADER_LEN = 11
DUML_CRC_LEN = 2
DUML_MIN_LEN = DUML_HEADER_LEN + DUML_CRC_LEN
DUML_CRC8_INIT = 0x77
DUML_CRC16_INIT = 0x3692
DUML_RESPONSE = 0x80
_MAX_COMMANDS = 256  # distinct (cmd set, cmd id) counted per flow, as in _duml.c
DJI_WIFI_PORTS = AIRCRAFT_PORTS["dji_wifi"] | {9004}
"""The aircraft's DUML port (9003), and 9004 which some models use alongside it."""

DUML_CMD_SETS: dict[int, str] = {
    0: "general",
    1: "special",
    2: "camera",
    3: "flight_control",
    4: "gimbal",
    5: "center_board",
    6: "remote_control",
    7: "wifi",
    8: "dm36x",
    9: "hd_link",
    10: "mono_binocular",
    11: "simulator",
    12: "esc",
    13: "battery",
    14: "data_logger",
    15: "rtk",
    16: "automation",
}
"""Command sets, named as in the public DUML dissectors (dji-firmware-tools)."""

DUML_DEVICES: dict[int, str] = {
    0: "any",
    1: "camera",
    2: "app",
    3: "flight_controller",
    4: "gimbal",
    5: "center_board",
    6: "remote_control",
    7: "wifi_air",
    8: "dm36x_air",
    9: "hd_link_air",
    10: "pc",
    11: "battery",
    12: "esc",
    13: "dm36x_ground",
    14: "hd_link_ground",
    15: "usb_bridge_air",
    16: "usb_bridge_ground",
    17: "monocular",
    18: "binocular",
    19: "hd_fpga_air",
    20: "hd_fpga_ground",
    21: "simulator",
    22: "base_station",
    23: "onboard_computer",
    24: "rc_battery",
    25: "imu",
    26: "gps_rtk",
    27: "wifi_ground",
    28: "signal_converter",
    29: "pmu",
}
"""Sender/receiver device types (low 5 bits), named as in the public DUML dissectors."""


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


def duml_crc8(data: bytes | bytearray, init: int = DUML_CRC8_INIT) -> int:
    """DUML's header checksum: reflected CRC-8 with poly 0x31, seeded with 0x77."""
    crc = init
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc


def duml_crc16(data: bytes | bytearray, init: int = DUML_CRC16_INIT) -> int:
    """DUML's frame checksum: reflected CRC-16 with poly 0x1021, seeded with 0x3692.

    The reflected CRC is `binascii.crc_hqx` (the MSB-first one) run over bit-reversed bytes.
    """
    raw = bytes(data).translate(_BIT_REVERSED)
    return _reflect16(binascii.crc_hqx(raw, _reflect16(init)))


def duml_cmd_set_name(cmd_set: int) -> str:
    """The name of a command set, or its number as text."""
    return DUML_CMD_SETS.get(cmd_set) or str(cmd_set)


def duml_device_name(address: int) -> str:
    """The device type of a sender/receiver byte (its index dropped), or its number as text."""
    kind = address & 0x1F
    return DUML_DEVICES.get(kind) or str(kind)


class DumlCrcError(DecodeError):
    """A DUML frame whose header checksum matches but whose frame checksum does not."""


@dataclass(slots=True)  # one per frame: not frozen, which costs 5x
class DumlFrame:
    """One DUML v1 frame."""

    version: int
    sender: int
    receiver: int
    seq: int
    cmd_type: int
    cmd_set: int
    cmd_id: int
    payload: bytes
    size: int
    """Bytes of the whole frame (its length field)."""

    @property
    def is_response(self) -> bool:
        return bool(self.cmd_type & DUML_RESPONSE)

    @property
    def ack(self) -> int:
        """0 no ack, 1 ack after the command is received, 2 after it is executed."""
        return (self.cmd_type >> 5) & 0x3


def _header(data: bytes | bytearray, offset: int) -> int:
    """The frame length of a DUML header at `offset` whose CRC-8 matches; raises otherwise."""
    if len(data) - offset < 4:
        raise DecodeError("truncated DUML header")
    if data[offset] != DUML_SOF:
        raise DecodeError(f"no DUML start byte ({data[offset]:#04x})")
    if duml_crc8(data[offset : offset + 3]) != data[offset + 3]:
        raise DecodeError("DUML header checksum mismatch")
    length = (data[offset + 1] | (data[offset + 2] << 8)) & 0x3FF
    if length < DUML_MIN_LEN:
        raise DecodeError(f"DUML length {length} shorter than a frame")
    return length


def parse_duml_frame(data: bytes | bytearray, offset: int = 0) -> DumlFrame:
    """Decode the DUML frame at `offset`.

    Raises:
        DumlCrcError: the header is valid but the frame checksum does not match.
        DecodeError: no start byte, a bad header checksum, or a truncated frame.
    """
    length = _header(data, offset)
    end = offset + length
    if end > len(data):
        raise DecodeError(f"DUML frame of {length} bytes truncated to {len(data) - offset}")
    sent = data[end - 2] | (data[end - 1] << 8)
    crc = duml_crc16(data[offset : end - 2])
    if crc != sent:
        raise DumlCrcError(f"DUML checksum {sent:#06x}, expected {crc:#06x}")
    return DumlFrame(
        version=data[offset + 2] >> 2,
        sender=data[offset + 4],
        receiver=data[offset + 5],
        seq=data[offset + 6] | (data[offset + 7] << 8),
        cmd_type=data[offset + 8],
        cmd_set=data[offset + 9],
        cmd_id=data[offset + 10],
        payload=bytes(data[offset + DUML_HEADER_LEN : end - 2]),
        size=length,
    )


def find_duml(data: bytes | bytearray, window: int = 16) -> int:
    """Offset of the first valid DUML header in the first `window` bytes, or -1."""
    pos = data.find(b"\x55", 0, window)
    while pos >= 0:
        try:
            _header(data, pos)
            return pos
        except DecodeError:
            pos = data.find(b"\x55", pos + 1, window)
    return -1


@dataclass(frozen=True, slots=True)
class DjiWifiOptions:
    """Tunables of the DJI Wi-Fi analyzer."""

    search_window: int = 16
    """Bytes at the start of a datagram searched for a DUML frame (after a wrapper header)."""
    probe_packets: int = 16
    """Datagrams read for a valid DUML frame before a flow on the DJI ports is given up."""
    top_commands: int = 16
    """Most frequent commands listed in `commands`."""
    follow_flow: bool = True
    """Follow a recognised flow to its end, so every frame of it is counted."""


@dataclass(frozen=True, slots=True)
class DjiWifiRecord(ConnRecord):
    """One DJI Wi-Fi link flow, written when it ends; `ts` is the time of its first frame."""

    log: ClassVar[str] = "dji_wifi"
    frames: int
    """DUML frames that passed both checksums."""
    crc_errors: int
    """Frames with a valid header whose frame checksum did not match."""
    requests: int
    responses: int
    cmd_sets: dict[str, int] = field(default_factory=dict)
    """Frames per command set name (number as text when unknown), most frequent first."""
    commands: dict[str, int] = field(default_factory=dict)
    """Frames per `<cmd set>/<cmd id in hex>`, most frequent first."""
    senders: tuple[str, ...] = ()
    """Device types that sent frames (`app`, `flight_controller`, `camera`...)."""
    receivers: tuple[str, ...] = ()
    wrapper_len: int | None = None
    """Bytes of wrapper before the DUML frame, when the frames were not bare."""


class DumlCounter:
    """The DUML frames of one flow, counted: what `parse_duml_frame` checks, read in place.

    The Python twin of the C `DumlCounter`, which the bulk path feeds itself (a
    followed link is a fifth of a drone session's packets); the tests hold both to the same
    counts. `feed` searches a datagram's first `window` bytes for a valid header, then counts
    whole frames from there while each passes both checksums."""

    __slots__ = (
        "_commands",
        "_senders",
        "_receivers",
        "cmd_sets_counter",
        "crc_errors",
        "frames",
        "responses",
        "window",
        "wrapper_len",
    )

    def __init__(self, window: int = 16) -> None:
        if window < 0:
            raise ValueError("DumlCounter: window must be 0 or more bytes")
        self.window = window
        self.frames = 0
        self.crc_errors = 0
        self.responses = 0
        self.wrapper_len: int | None = None
        self.cmd_sets_counter: Counter[int] = Counter()
        self._commands: Counter[tuple[int, int]] = Counter()
        self._senders: set[int] = set()
        self._receivers: set[int] = set()

    @property
    def cmd_sets(self) -> dict[int, int]:
        return dict(self.cmd_sets_counter)

    @property
    def commands(self) -> dict[tuple[int, int], int]:
        """Frames per (command set, command id), the first 256 distinct ones."""
        return dict(self._commands)

    @property
    def senders(self) -> frozenset[int]:
        """Device types (the address byte's low five bits) that sent frames."""
        return frozenset(self._senders)

    @property
    def receivers(self) -> frozenset[int]:
        return frozenset(self._receivers)

    def feed(self, data: bytes, from_orig: bool = True) -> int:
        """Count the frames of one datagram; returns how many passed both checksums (either
        direction counts the same)."""
        pos = find_duml(data, self.window)
        if pos < 0:
            return 0
        if pos and self.wrapper_len is None:
            self.wrapper_len = pos
        crc8, end_of_data, counted = _CRC8_TABLE, len(data), 0
        while pos < end_of_data and data[pos] == DUML_SOF:
            if end_of_data - pos < 4:
                break
            check = crc8[crc8[crc8[DUML_CRC8_INIT ^ data[pos]] ^ data[pos + 1]] ^ data[pos + 2]]
            if check != data[pos + 3]:
                break
            length = (data[pos + 1] | (data[pos + 2] << 8)) & 0x3FF
            end = pos + length
            if length < DUML_MIN_LEN or end > end_of_data:
                break
            sent = data[end - 2] | (data[end - 1] << 8)
            if duml_crc16(data[pos : end - 2]) != sent:
                self.crc_errors += 1
                break
            counted += 1
            self.frames += 1
            if data[pos + 8] & DUML_RESPONSE:
                self.responses += 1
            cmd_set = data[pos + 9]
            self.cmd_sets_counter[cmd_set] += 1
            key = (cmd_set, data[pos + 10])
            if key in self._commands or len(self._commands) < _MAX_COMMANDS:
                self._commands[key] += 1
            self._senders.add(data[pos + 4] & 0x1F)
            self._receivers.add(data[pos + 5] & 0x1F)
            pos = end
        return counted


@dataclass(slots=True)
class _DjiState:
    counter: DumlCounter
    first_ts: float | None = None
    probed: int = 0


class DjiWifiAnalyzer:
    """Read DUML frames on the DJI Wi-Fi ports into one dji_wifi.jsonl record per flow."""

    name = "dji_wifi"
    wants_ports = frozenset(DJI_WIFI_PORTS)
    """The ports `wants` reads (`WantsHook`)."""

    def __init__(self, ctx: Context, options: DjiWifiOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or DjiWifiOptions()
        self._state: dict[str, _DjiState] = {}  # keyed by flow.uid, dropped in flow_end
        self._rejected: set[str] = set()
        self._counter = counter_type("DumlCounter", DumlCounter)

    def wants(self, flow: Flow) -> bool:
        """Only UDP flows on the DJI Wi-Fi ports."""
        return flow.proto == IP_PROTO_UDP and (
            flow.resp_p in DJI_WIFI_PORTS or flow.orig_p in DJI_WIFI_PORTS
        )

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Read the DUML frames of one datagram (once the link is recognised, only
        `counter.feed`: see `Flow.follow`)."""
        if flow.proto != IP_PROTO_UDP or not pkt.payload:
            return
        if flow.resp_p not in DJI_WIFI_PORTS and flow.orig_p not in DJI_WIFI_PORTS:
            return
        if flow.uid in self._rejected:
            return
        state = self._state.get(flow.uid)
        if state is None:
            counter = self._counter(self.options.search_window)
            state = self._state[flow.uid] = _DjiState(counter)
        counter = state.counter
        if state.first_ts is not None:
            counter.feed(pkt.payload)
            return
        errors = counter.crc_errors
        if counter.feed(pkt.payload):
            state.first_ts = pkt.ts
            follower = self.name if self.options.follow_flow else None
            flow.recognise_link("dji_wifi", follower, counter)
            return
        if counter.crc_errors != errors:
            logger.debug("%s: a DUML frame checksum does not match", flow.uid)
        state.probed += 1
        if state.probed >= self.options.probe_packets:
            logger.debug("%s: no DUML frame on a DJI port, not followed", flow.uid)
            del self._state[flow.uid]
            self._rejected.add(flow.uid)
            flow.decline(self.name)

    def flow_end(self, flow: Flow) -> None:
        """Write the flow's record if it carried DUML, and drop its state."""
        self._rejected.discard(flow.uid)
        state = self._state.pop(flow.uid, None)
        if state is None or state.first_ts is None:
            return
        counter = state.counter
        sets = sorted(counter.cmd_sets.items(), key=lambda kv: (-kv[1], kv[0]))
        cmds = sorted(counter.commands.items(), key=lambda kv: (-kv[1], kv[0]))
        self.ctx.emit(
            DjiWifiRecord(
                ts=state.first_ts,
                **conn(flow),
                frames=counter.frames,
                crc_errors=counter.crc_errors,
                requests=counter.frames - counter.responses,
                responses=counter.responses,
                cmd_sets={duml_cmd_set_name(s): n for s, n in sets},
                commands={
                    f"{duml_cmd_set_name(s)}/{i:#04x}": n
                    for (s, i), n in cmds[: self.options.top_commands]
                },
                senders=tuple(sorted({duml_device_name(k) for k in counter.senders})),
                receivers=tuple(sorted({duml_device_name(k) for k in counter.receivers})),
                wrapper_len=counter.wrapper_len,
            )
        )


__all__ = [
    "DJI_WIFI_PORTS",
    "DUML_CMD_SETS",
    "DUML_DEVICES",
    "DjiWifiAnalyzer",
    "DjiWifiOptions",
    "DjiWifiRecord",
    "DumlCounter",
    "DumlCrcError",
    "DumlFrame",
    "duml_cmd_set_name",
    "duml_crc16",
    "duml_crc8",
    "duml_device_name",
    "find_duml",
    "parse_duml_frame",
]
