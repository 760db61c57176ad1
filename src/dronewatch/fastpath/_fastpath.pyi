"""Types of the C extension `dronewatch.fastpath._fastpath` (fastpath/_fastpath.c)."""

import mmap
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from dronewatch.core.flow import Flow, Packet, Tunnel

_R = TypeVar("_R")

FLOW_FIELDS: tuple[str, ...]
"""The Flow attributes the walk reads or writes by name."""
PACKET_FIELDS: tuple[str, ...]
"""The Packet fields the walk fills, in the order `packet_setup` takes their members."""
TUNNEL_KINDS: tuple[str, ...]
"""The encapsulations the walk takes off, as it names them (`Tunnel.kind`)."""

def record_fields(
    buf: bytes | mmap.mmap, pos: int, limit: int, big_endian: bool, nano: bool, /
) -> tuple[bytes, bytes, bytes, bytes, int, int, int]: ...
def block_fields(
    buf: bytes | mmap.mmap,
    pos: int,
    limit: int,
    big_endian: bool,
    ifaces: tuple[tuple[int, float, float], ...],
    linktype: int,
    /,
) -> tuple[bytes, bytes, bytes, bytes, bytes, int, int, int, float]: ...
def walk(
    buf: bytes | mmap.mmap,
    data_at: memoryview[int] | npt.NDArray[np.int64],
    caplen: memoryview[int] | npt.NDArray[np.int64],
    wirelen: memoryview[int] | npt.NDArray[np.int64],
    ts: memoryview[float] | npt.NDArray[np.float64],
    linktype: int,
    first_frame: int,
    iface: int,
    next_sweep: float,
    ended: int,
    limit: int,
    active_s: float,
    linger_s: float,
    lookup: Callable[[bytes], Flow | None],
    handle: Callable[[int, Packet | None], tuple[float, int, bool]],
    follow: Callable[[int, Flow, Packet], tuple[float, int]],
    sweep: Callable[[float, int], tuple[float, int]],
    counted: Callable[[int, float, int], None],
    skipped: Callable[[dict[str, int], dict[bytes, int]], None],
    timers: Callable[[bytes, int, float], None],
    share_k: int = 0,
    share_n: int = 1,
    share_port: int = -1,
    checksums: int = 0,
    facts: Callable[[int, Packet], None] | None = None,
    frame_ouis: bytes | None = None,
    frame_action: bool = True,
    started: bool = False,
    share_icmp6: int = 0,
    /,
) -> float: ...
def key_crc(key: bytes, /) -> int: ...
def packet_setup(
    cls: type[Packet], members: tuple[object, ...], tunnel: type[Tunnel], /
) -> None: ...
def protocols_setup(
    icmp_pairs4: dict[int, int],
    icmp_pairs6: dict[int, int],
    ip6_skipped: Iterable[int],
    local4: Sequence[tuple[int, int]] = (),
    /,
) -> None: ...
def linktypes() -> tuple[int, ...]: ...
def ring_fields(
    ring: mmap.mmap | bytearray,
    block_size: int,
    blocks: int,
    first: int,
    most: int,
    snaplen: int,
    /,
) -> tuple[bytes, bytes, bytes, bytes, int, int, int]:
    """The packets of the AF_PACKET ring blocks handed over from `first` on (_ring.c)."""

def ring_release(
    ring: mmap.mmap | bytearray, block_size: int, blocks: int, first: int, count: int, /
) -> None:
    """Hand ring blocks back to the kernel (_ring.c)."""

def new_record(cls: type[_R], members: tuple[object, ...], values: tuple[object, ...], /) -> _R: ...
def json_record(
    record: object, names: tuple[str, ...], members: tuple[object, ...] = ..., /
) -> bytes | None:
    """The record's attributes named (given sorted), those that are None left out, as one
    compact JSON line with json_line's escapes, UTF-8 with its newline; None for a value it
    leaves to json; `members`: the names' slot member descriptors, read directly
    (_jsonline.c)."""

def flow_uid(
    proto: int, a: bytes, a_port: int, b: bytes, b_port: int, first_ts: float, /
) -> str: ...
def community_hash(
    seed: int, saddr: bytes, daddr: bytes, proto: int, sport: int, dport: int, ports: bool, /
) -> str: ...
def tcp_segment(
    t: array[int],
    from_orig: bool,
    flags: int,
    seq: int,
    ack: int,
    plen: int,
    ts: float,
    last_ts: float,
    history: str,
    /,
) -> tuple[int, str, float, int]:
    """One segment accounted on the TCP state `t` as dronewatch.core.tcp.segment does: (events,
    history, last_ts, flipped); on a flip the state's endpoint blocks are swapped here (_tcp.c)."""

def tcp_reuse(t: array[int], flags: int, seq: int, /) -> bool:
    """Whether the segment starts a new connection on the flow's 5-tuple (tcp.is_reuse)."""

class FrameCounter:
    """Per-flow frame counter of a drone-link follower, which the C walk feeds itself."""

    def feed(self, payload: bytes, from_orig: bool = True, /) -> int: ...

class DumlCounter(FrameCounter):
    """Twin of dronewatch.analyzers.dji_wifi.DumlCounter (src/dronewatch/fastpath/_duml.c)."""

    window: int
    frames: int
    crc_errors: int
    responses: int
    wrapper_len: int | None
    senders: frozenset[int]
    receivers: frozenset[int]
    cmd_sets: dict[int, int]
    commands: dict[tuple[int, int], int]
    def __init__(self, window: int = 16) -> None: ...

class ArsdkCounter(FrameCounter):
    """Twin of dronewatch.analyzers.parrot.ArsdkCounter (src/dronewatch/fastpath/_arsdk.c)."""

    max_names: int
    messages: int
    commands: list[tuple[tuple[int, int, int], int]]
    battery: int | None
    altitude: float | None
    max_altitude: float | None
    position: tuple[float, float] | None
    flying_state: int | None
    def __init__(self, max_names: int = 64) -> None: ...

class MavlinkCounter(FrameCounter):
    """Twin of dronewatch.analyzers.mavlink.MavlinkCounter (src/dronewatch/fastpath/_mavlink.c)."""

    max_ids: int
    recognised: bool
    frames: int
    crc_errors: int
    unverified: int
    heartbeats: int
    versions: frozenset[int]
    sysids: frozenset[int]
    compids: frozenset[int]
    msgs: dict[int, int]
    signed: bool
    gcs_seen: bool
    gcs_side: str | None
    vehicle: tuple[int, int, int, int, int, int] | None
    position: tuple[int, float, float, float, float] | None
    def __init__(self, crc_extras: dict[int, int], max_ids: int = 32) -> None: ...
    def scan(self, data: bytes | bytearray, whole: bool, from_orig: bool = True) -> int: ...

class TelloStateCounter(FrameCounter):
    """Twin of dronewatch.analyzers.tello.TelloStateCounter (src/dronewatch/fastpath/_tello.c)."""

    packets: int
    battery: int | None
    height: int | None
    tof: int | None
    temp_low: int | None
    temp_high: int | None
    def __init__(self) -> None: ...

class MqttCounter(FrameCounter):
    """The PUBLISH counts of one MQTT flow (src/dronewatch/fastpath/_mqtt.c); the analyzer
    (dronewatch.analyzers.mqtt) reads whatever `feed` refuses."""

    level: int
    def ready(self, side: int, flag: bool, /) -> None: ...
    def topic(self, side: int, name: str, /) -> int: ...
    def add(self, index: int, qos: int, size: int, /) -> None: ...
    def counts(self, index: int, /) -> tuple[int, int, int]: ...
