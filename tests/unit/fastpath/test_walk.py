"""The C walk's contract with the engine, driven directly: what it counts, what it hands back."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scapy.all import IP, TCP, UDP, Dot1Q, Ether, raw

from dronewatch.core.flow import Flow
from dronewatch.fastpath import _fastpath

PHONE, DRONE = "192.168.2.20", "192.168.2.1"
LIMIT = 4


def datagram(vlan: bool = False) -> bytes:
    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    if vlan:
        eth = eth / Dot1Q(vlan=7)
    return bytes(raw(eth / IP(src=PHONE, dst=DRONE) / UDP(sport=50000, dport=9003) / b"frame"))


class Engine:
    """Stands in for the engine's side of the call backs and records what reached it."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.handled: list[int] = []
        self.followed: list[int] = []
        self.counted = 0

    def lookup(self, key: bytes) -> Flow:
        return self.flow

    def handle(self, i: int) -> tuple[float, int, bool]:
        # As `Engine.process` does for a payload packet of a flow that nobody inspects.
        self.handled.append(i)
        self.flow.orig_pkts += 1
        if self.flow.inspected < LIMIT:
            self.flow.inspected += 1
        return 1e18, 0, True

    def follow(self, i: int, flow: Flow, *rest: object) -> tuple[float, int]:
        self.followed.append(i)
        return 1e18, 0

    def sweep(self, ts: float) -> tuple[float, int]:
        raise AssertionError("no sweep is due")

    def count(self, n: int, latest: float) -> None:
        self.counted += n

    def walk(self, frames: list[bytes]) -> None:
        buf = b"".join(frames)
        at = np.cumsum([0] + [len(f) for f in frames[:-1]]).astype(np.int64)
        caplen = np.array([len(f) for f in frames], dtype=np.int64)
        ts = np.arange(len(frames), dtype=np.float64) + 1000.0
        _fastpath.walk(
            buf, at, caplen, ts, 14, 1e18, 0, LIMIT, 1800.0, self.lookup, self.handle,
            self.follow, self.sweep, self.count,
        )  # fmt: skip


def flow(inspected: int) -> Flow:
    f = Flow("C1", 17, bytes([192, 168, 2, 20]), 50000, bytes([192, 168, 2, 1]), 9003, 999.0, 999.0)
    f.inspected = inspected
    f.followers = ("dji_wifi",)
    return f


def test_settled_packets_are_counted_and_written_back() -> None:
    """Past its inspected packets, a flow's packets that nobody follows are counted in C and
    reach the flow's counters."""
    f = flow(LIMIT)
    f.followers = ()
    eng = Engine(f)
    eng.walk([datagram()] * 5)
    assert (eng.handled, eng.followed, eng.counted) == ([], [], 5)
    assert f.orig_pkts == 5 and f.orig_bytes == 5 * (len(datagram()) - 14)
    assert f.last_ts == 1004.0


def test_followed_packets_reach_the_followers_with_exact_counts() -> None:
    """A followed flow's datagram goes to its followers after its counts are on the flow."""
    f = flow(LIMIT)
    seen: list[int] = []
    eng = Engine(f)

    def follow(i: int, fl: Flow, *rest: object) -> tuple[float, int]:
        seen.append(fl.orig_pkts)
        return 1e18, 0

    eng.follow = follow  # type: ignore[method-assign]
    eng.walk([datagram()] * 3)
    assert seen == [1, 2, 3]


def test_python_touching_the_flow_is_read_back() -> None:
    """A packet Python decoded changes the flow; the walk reads the flow again before its next
    packet: counted (inspected 2 -> 3), handed to Python for its VLAN tag (3 -> 4, the limit),
    then past the inspected packets, so to the follower rather than counted on stale state."""
    f = flow(LIMIT - 2)
    eng = Engine(f)
    eng.walk([datagram(), datagram(vlan=True), datagram()])
    assert eng.handled == [1]
    assert eng.followed == [2]
    assert eng.counted == 2
    assert f.inspected == LIMIT
    assert f.orig_pkts == 3


def duml_datagram() -> bytes:
    """A datagram carrying one DUML frame (the public duml-packet example)."""
    from tests.unit.analyzers.test_dji_wifi import PUBLISHED

    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    return bytes(raw(eth / IP(src=PHONE, dst=DRONE) / UDP(sport=50000, dport=9003) / PUBLISHED))


def test_followers_with_c_counters_are_fed_in_c() -> None:
    """Past its inspected packets, a flow whose followers all keep C frame counters has its
    datagrams counted and fed here: no call into Python at all."""
    f = flow(LIMIT)
    counter = _fastpath.DumlCounter()
    f.counters = (counter,)
    eng = Engine(f)
    eng.walk([duml_datagram()] * 3)
    assert (eng.handled, eng.followed, eng.counted) == ([], [], 3)
    assert (counter.frames, f.orig_pkts) == (3, 3)


def test_inspected_packets_go_to_the_counters_when_only_followers_inspect() -> None:
    """Still inspected, but inspected only by its followers: the hooks would feed the same
    counters, so the walk feeds them and counts the packets as inspected."""
    f = flow(LIMIT - 2)
    counter = _fastpath.DumlCounter()
    f.counters = (counter,)
    f.inspector_names = ("dji_wifi",)
    f.inspectors = (lambda flow, pkt: None,)
    eng = Engine(f)
    eng.walk([duml_datagram()] * 3)
    assert (eng.handled, eng.followed) == ([], [])
    assert (counter.frames, f.inspected) == (3, LIMIT)


def test_counters_are_not_fed_when_python_must_see_the_packet() -> None:
    """Another analyzer still inspects the flow, a follower has no C counter (a Python twin, or
    none), or the packet is TCP-like work for Python: the hooks run in Python as before."""
    from dronewatch.analyzers.dji_wifi import DumlCounter

    f = flow(LIMIT - 1)
    c = _fastpath.DumlCounter()
    f.counters = (c,)
    f.inspector_names = ("dji_wifi", "mavlink")
    f.inspectors = (lambda flow, pkt: None,) * 2
    eng = Engine(f)
    eng.walk([duml_datagram()])
    assert (eng.handled, c.frames) == ([0], 0)
    for counters, followers in (
        ((DumlCounter(),), ("dji_wifi",)),
        ((c, None), ("dji_wifi", "dns")),
    ):
        g = flow(LIMIT)
        g.followers, g.counters = followers, counters
        eng = Engine(g)
        eng.walk([duml_datagram()] * 2)
        assert eng.followed == [0, 1] and c.frames == 0


def segment(flags: str, out: bool = True, payload: bytes = b"") -> bytes:
    """A TCP segment of the flow made by `tcp_flow`, from the phone (`out`) or back."""
    src, dst, sport, dport = (PHONE, DRONE, 50000, 443) if out else (DRONE, PHONE, 443, 50000)
    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    return bytes(
        raw(eth / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / payload)
    )


def tcp_flow(history: str) -> Flow:
    f = Flow("C2", 6, bytes([192, 168, 2, 20]), 50000, bytes([192, 168, 2, 1]), 443, 999.0, 999.0)
    f.inspected = LIMIT
    f.history = history
    return f


def test_empty_segments_add_their_history_letter_in_c() -> None:
    """A known flow's SYN-ACK, first ACKs and first FIN only add a history letter (the engine's,
    interned) and counts: done in C. A reset, a FIN that closes the flow (both sides' FIN seen)
    and a segment with data and a new letter go to the engine, which notes them."""
    f = tcp_flow("S")
    eng = Engine(f)
    frames = [
        segment("SA", out=False),  # h
        segment("A"),  # A
        segment("A", out=False),  # a
        segment("A"),  # nothing new
        segment("FA"),  # F
        segment("PA", payload=b"x"),  # D: new letter with data, to the engine
        segment("FA", out=False),  # f: closes the flow, to the engine
        segment("R"),  # to the engine
    ]
    eng.walk(frames)
    assert eng.handled == [5, 6, 7]
    assert eng.counted == 5
    assert f.history == "ShAaF" and f.history is sys.intern("ShAaF")
    assert f.orig_pkts == 3 + 3 and f.resp_pkts == 2  # 3 counted in C, 3 by the stand-in


def test_flow_fields_the_c_walk_uses_exist() -> None:
    """Every Flow attribute the C walk reads or writes by name is on Flow, and a renamed one
    fails the import check with a message naming it."""
    import types

    from dronewatch.core.flow import Flow
    from dronewatch.fastpath import check_flow_fields

    assert "orig_pkts" in _fastpath.FLOW_FIELDS and "counters" in _fastpath.FLOW_FIELDS
    assert all(hasattr(Flow, name) for name in _fastpath.FLOW_FIELDS)
    check_flow_fields(_fastpath)
    renamed = types.ModuleType("fake")
    renamed.FLOW_FIELDS = (*_fastpath.FLOW_FIELDS, "orig_packets")  # type: ignore[attr-defined]
    with pytest.raises(ImportError, match="Flow.orig_packets"):
        check_flow_fields(renamed)


def test_no_c_switch_turns_every_c_part_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRONEWATCH_NO_C is the one switch: the walk, the record reader and the counters all go."""
    from dronewatch import fastpath
    from dronewatch.analyzers.dji_wifi import DumlCounter

    assert fastpath.native() is _fastpath
    assert fastpath.counter_type("DumlCounter", DumlCounter) is _fastpath.DumlCounter
    monkeypatch.setenv(fastpath.NO_C_ENV, "1")
    assert fastpath.native() is None and not fastpath.c_enabled()
    assert fastpath.counter_type("DumlCounter", DumlCounter) is DumlCounter
