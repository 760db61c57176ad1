"""Frame builders of the drone links: DJI DUML v1, Parrot ARSDK (ARNetworkAL), MAVLink v2.

The DJI and Parrot aircraft are SIMULATED (no aircraft is available): the frames follow the
published layouts, the payloads are made up. MAVLink frames come from pymavlink, the reference
encoder.

DUML v1 frame (public reverse engineering, e.g. dji-firmware-tools / duml-packet):
  0      0x55
  1..2   LE uint16: length (10 bits, whole frame) | version (6 bits, = 1) << 10
  3      CRC8 of bytes 0..2 (CRC-8/MAXIM table, init 0x77)
  4      sender   (device type | index << 5)
  5      receiver (device type | index << 5)
  6..7   LE sequence number
  8      cmd type: bit 7 = response, bits 5..6 = ack wanted, bits 0..3 = encryption
  9      cmd set
  10     cmd id
  11..   payload
  -2..   LE CRC16 of everything before (reflected 0x8408 / KERMIT table, init 0x3692)

ARNetworkAL frame (Parrot ARSDK): type u8 (1 ack, 2 data, 3 low-latency, 4 data-with-ack),
buffer id u8, sequence u8, size u32 LE (header included), then an ARCommand:
project u8, class u8, command u16 LE, arguments.
"""

from __future__ import annotations

import struct


def _crc8_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x8C if c & 1 else c >> 1
        table.append(c)
    return table


def _crc16_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
        table.append(c)
    return table


_T8 = _crc8_table()
_T16 = _crc16_table()


def duml_crc8(data: bytes, init: int = 0x77) -> int:
    c = init
    for b in data:
        c = _T8[(c ^ b) & 0xFF]
    return c


def duml_crc16(data: bytes, init: int = 0x3692) -> int:
    c = init
    for b in data:
        c = (c >> 8) ^ _T16[(c ^ b) & 0xFF]
    return c


# DUML device types (low 5 bits of sender/receiver).
DEV_APP = 2
DEV_FC = 3
DEV_GIMBAL = 4
DEV_CAMERA = 1
DEV_WIFI = 7


def dev(kind: int, index: int = 0) -> int:
    return (kind & 0x1F) | ((index & 0x7) << 5)


def duml_frame(
    sender: int,
    receiver: int,
    seq: int,
    cmd_set: int,
    cmd_id: int,
    payload: bytes = b"",
    response: bool = False,
    ack: int = 0,
) -> bytes:
    length = 11 + len(payload) + 2
    if length >= 1 << 10:
        raise ValueError("DUML frame too long")
    head = bytes([0x55]) + struct.pack("<H", length | (1 << 10))
    head += bytes([duml_crc8(head)])
    cmd_type = (0x80 if response else 0) | ((ack & 3) << 5)
    body = head + struct.pack("<BBHBBB", sender, receiver, seq & 0xFFFF, cmd_type, cmd_set, cmd_id)
    body += payload
    return body + struct.pack("<H", duml_crc16(body))


def duml_parse(frame: bytes) -> dict[str, int | bytes] | None:
    """The fields of a well-formed DUML v1 frame, or None."""
    if len(frame) < 13 or frame[0] != 0x55:
        return None
    (lv,) = struct.unpack_from("<H", frame, 1)
    length, version = lv & 0x3FF, lv >> 10
    if length != len(frame) or version != 1 or duml_crc8(frame[:3]) != frame[3]:
        return None
    if duml_crc16(frame[:-2]) != struct.unpack_from("<H", frame, len(frame) - 2)[0]:
        return None
    sender, receiver, seq, cmd_type, cmd_set, cmd_id = struct.unpack_from("<BBHBBB", frame, 4)
    return {
        "sender": sender,
        "receiver": receiver,
        "seq": seq,
        "cmd_type": cmd_type,
        "cmd_set": cmd_set,
        "cmd_id": cmd_id,
        "payload": frame[11:-2],
    }


# Published example (duml-packet README): PC -> LB sky, GENERAL 0x4f, payload 01.
assert duml_frame(0x2A, 0x28, 0x2FDE, 0x00, 0x4F, b"\x01", ack=2) == bytes.fromhex(
    "550e04662a28de2f40004f0154c8"
)


# --- Parrot ARSDK ---------------------------------------------------------------------------

ARNET_ACK, ARNET_DATA, ARNET_LOW_LATENCY, ARNET_DATA_WITH_ACK = 1, 2, 3, 4
BUF_PING, BUF_PONG = 0, 1
BUF_C2D_NONACK, BUF_C2D_ACK = 10, 11
BUF_D2C_NAVDATA, BUF_D2C_EVENT = 127, 126


def arnet_frame(ftype: int, buffer_id: int, seq: int, payload: bytes) -> bytes:
    return struct.pack("<BBBI", ftype, buffer_id, seq & 0xFF, 7 + len(payload)) + payload


def arnet_split(datagram: bytes) -> list[tuple[int, int, int, bytes]]:
    """The (type, buffer id, seq, payload) frames packed in one datagram."""
    out = []
    pos = 0
    while pos + 7 <= len(datagram):
        ftype, buf, seq, size = struct.unpack_from("<BBBI", datagram, pos)
        if size < 7 or pos + size > len(datagram):
            break
        out.append((ftype, buf, seq, datagram[pos + 7 : pos + size]))
        pos += size
    return out


def arcmd(project: int, klass: int, cmd: int, args: bytes = b"") -> bytes:
    return struct.pack("<BBH", project, klass, cmd) + args


def ping_payload(t: float) -> bytes:
    """ARNetwork ping: a struct timespec (seconds, nanoseconds)."""
    sec = int(t)
    return struct.pack("<qq", sec, int((t - sec) * 1e9))
