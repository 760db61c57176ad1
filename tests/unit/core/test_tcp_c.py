"""The TCP state machine in C (`_fastpath.tcp_segment`) against its Python twin (`tcp.segment`).

The engine runs the C one where the extension is built, the Python one where it is not; both
must leave the same state, history, last packet time and events after every segment, and turn
the roles round at the same segments."""

from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dronewatch.core import tcp
from dronewatch.core.flow import IP_PROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Flow
from dronewatch.fastpath import native
from tests.factories import ip

PSH = 0x08

_c = native()
pytestmark = pytest.mark.skipif(_c is None, reason="the C extension is not built")

FLAGS = (
    TCP_SYN,
    TCP_SYN | TCP_ACK,
    TCP_ACK,
    TCP_ACK | PSH,
    TCP_FIN | TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_RST | TCP_ACK,
    TCP_FIN | TCP_RST,
    TCP_SYN | TCP_FIN,
    TCP_SYN | TCP_RST,
    0,
)


def _flow() -> Flow:
    flow = Flow(
        uid="C1",
        proto=IP_PROTO_TCP,
        orig_h=ip("10.0.0.1"),
        orig_p=50000,
        resp_h=ip("10.0.0.2"),
        resp_p=443,
        first_ts=1.0,
        last_ts=1.0,
    )
    flow.tcp = tcp.new_state()
    return flow


class Twins:
    """One connection accounted by both: the Python twin on `py`, the C one on `c`."""

    def __init__(self) -> None:
        self.py, self.c = _flow(), _flow()
        self.py_flips = self.c_flips = 0

    def _flip(self, flow: Flow) -> None:
        assert flow.tcp is not None
        tcp.swap_roles(flow.tcp)
        self.py_flips += 1

    def segment(
        self, from_orig: bool, flags: int, seq: int, ack: int, plen: int, ts: float
    ) -> None:
        assert _c is not None and self.py.tcp is not None and self.c.tcp is not None
        assert _c.tcp_reuse(self.c.tcp, flags, seq) == tcp.is_reuse(self.py.tcp, flags, seq)
        py_events = tcp.segment(self.py, from_orig, flags, seq, ack, plen, ts, self._flip)
        assert _c is not None
        events, history, last_ts, flipped = _c.tcp_segment(
            self.c.tcp, from_orig, flags, seq, ack, plen, ts, self.c.last_ts, self.c.history
        )
        self.c.history, self.c.last_ts = history, last_ts
        self.c_flips += flipped
        step = (from_orig, flags, seq, ack, plen)
        assert events == py_events, step
        assert history == self.py.history, step
        assert last_ts == self.py.last_ts, step
        assert self.c_flips == self.py_flips, step
        assert self.c.tcp == self.py.tcp, (step, _diff(self.py.tcp, self.c.tcp))


def _diff(a: array[int] | None, b: array[int] | None) -> list[tuple[int, int, int]]:
    assert a is not None and b is not None
    return [(i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]


_STEP = st.tuples(
    st.booleans(),  # from the originator
    st.sampled_from(FLAGS),
    st.sampled_from(("next", "next", "next", "back", "ahead", "far", "zero")),  # seq
    st.sampled_from(("all", "all", "all", "less", "more", "none", "far")),  # ack
    st.sampled_from((0, 0, 0, 1, 100, 1460, 20000)),  # payload length
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    isns=st.tuples(
        st.sampled_from((0, 1, 1000, 0xFFFFFF00, 0xFFFFFFFF)),
        st.sampled_from((0, 5000, 0x7FFFFFF0, 0xFFFFFFFE)),
    ),
    steps=st.lists(_STEP, min_size=1, max_size=40),
    back_in_time=st.integers(min_value=0, max_value=39),
)
def test_c_state_machine_equals_python(
    isns: tuple[int, int], steps: list[tuple[bool, int, str, str, int]], back_in_time: int
) -> None:
    """Any run of segments, in order or not, retransmitted, lost, reset, wrapped around 2**32,
    turned round: the same state after every one of them."""
    twins = Twins()
    nxt = {True: isns[0], False: isns[1]}  # next sequence number of each side (True: client)
    ts = 1.0
    for i, (client, flags, seq_kind, ack_kind, plen) in enumerate(steps):
        ts += -0.5 if i == back_in_time else 0.01  # one packet out of time order
        seq = {
            "next": nxt[client],
            "back": nxt[client] - 1460,
            "ahead": nxt[client] + 3000,
            "far": nxt[client] + 0x40000000,
            "zero": 0,
        }[seq_kind] & 0xFFFFFFFF
        ack = {
            "all": nxt[not client],
            "less": nxt[not client] - 700,
            "more": nxt[not client] + 5000,
            "none": 0,
            "far": nxt[not client] - 0x30000000,
        }[ack_kind] & 0xFFFFFFFF
        # Whose block the segment is: the flow's roles may have turned round.
        from_orig = client if twins.py_flips % 2 == 0 else not client
        twins.segment(from_orig, flags, seq, ack, plen, ts)
        if seq_kind in ("next", "ahead"):
            length = plen + (1 if flags & TCP_SYN else 0) + (1 if flags & TCP_FIN else 0)
            nxt[client] = (seq + length) & 0xFFFFFFFF


def test_handshake_transfer_and_close() -> None:
    """A whole connection with a gap the peer acknowledges past: letters, gap and events."""
    twins = Twins()
    twins.segment(True, TCP_SYN, 100, 0, 0, 1.0)
    twins.segment(False, TCP_SYN | TCP_ACK, 900, 101, 0, 1.1)
    twins.segment(True, TCP_ACK, 101, 901, 0, 1.2)
    twins.segment(True, TCP_ACK | PSH, 101, 901, 500, 1.3)
    twins.segment(True, TCP_ACK | PSH, 1101, 901, 500, 1.4)  # 500 bytes the capture lost
    twins.segment(False, TCP_ACK, 901, 1601, 0, 1.5)
    twins.segment(True, TCP_FIN | TCP_ACK, 1601, 901, 0, 1.6)
    twins.segment(False, TCP_FIN | TCP_ACK, 901, 1602, 0, 1.7)
    twins.segment(True, TCP_ACK, 1602, 902, 0, 1.8)
    assert twins.c.history == "ShADaGFf"  # G: the gap
    assert twins.c.tcp is not None
    assert twins.c.tcp[tcp.MISSED] == 500
    assert tcp.conn_state(twins.c) == "SF"
    assert twins.c.last_ts == 1.7  # the last ACK after both FINs does not move it


def test_syn_ack_first_turns_round_in_c() -> None:
    """A SYN-ACK seen before its SYN: C swaps the state's blocks and says so."""
    twins = Twins()
    twins.segment(True, TCP_SYN | TCP_ACK, 900, 101, 0, 1.0)
    twins.segment(False, TCP_SYN, 100, 0, 0, 1.1)
    assert twins.c_flips == 1
    assert twins.c.history == "Hs^"


def test_attempt_time_is_kept_as_bits() -> None:
    """An attempt's SYN time is stored as the double's bits, as the C walk reads it."""
    twins = Twins()
    twins.segment(True, TCP_SYN, 1, 0, 0, 1234.5)
    assert twins.c.tcp is not None
    bits = array("d", array("q", [twins.c.tcp[tcp.SYN_TS]]).tobytes())[0]
    assert math.isclose(bits, 1234.5)


def test_not_a_state_array() -> None:
    """A buffer of the wrong size is refused, not written past."""
    assert _c is not None
    with pytest.raises(ValueError, match="not a TCP state array"):
        _c.tcp_segment(array("q", [0] * 3), True, TCP_SYN, 1, 0, 0, 1.0, 1.0, "")
