"""TCP connection state as Zeek keeps it: each endpoint's state, sequence space and history.

Every TCP flow carries one `array('q')` (`Flow.tcp`) with both endpoints' state, and
`segment` updates it for each segment in capture order, the way Zeek's TCP session adapter does
(RFC 9293 states seen from outside, reduced to INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL,
ESTABLISHED, CLOSED and RESET): which endpoint did what decides the connection state
(`conn_state`), the sequence space an endpoint covered gives its payload size (`size`: bytes the
capture missed count, retransmissions do not), and the history letters follow Zeek's rules
(`S h A D F R` once per kind and again on a new sequence number for S/H/F/R, `T` at the 1st, 10th,
100th... retransmission, `Q` for SYN+FIN or SYN+RST, `I` for FIN+RST, `^` when the roles flip,
`G`/`g` at the 1st, 10th, 100th... content gap). It also finds the content gaps of every TCP flow,
analysed or not: bytes the peer acknowledged that the capture never showed (`missed_bytes`).

The array is shared with the C extension (`dronewatch.fastpath._fastpath`): `_tcp.c` is
`segment` in C (the engine runs it where the extension is built; this module's `segment` stays
the reference, held equal by tests/unit/core/test_tcp_c.py), and the C walk runs `_tcp.c` on
the segments it accounts without the engine: in place on the data segments it counts (of a
flow whose `FAST` slot is set, that meet no held range and write no letter), on a copy kept
only when the engine has nothing to do on the segments that change the state (SYN, FIN, RST, a
new letter, a closed connection's ACK; not when a timer is due: `DUE`, a reuse, a flip, a
stream's hole). The layout is therefore fixed: change it here, in `_tcp.c` and in
`_fastpath.c` together.
"""

from __future__ import annotations

import re
import struct
from array import array
from typing import TYPE_CHECKING

from dronewatch.core.flow import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

if TYPE_CHECKING:
    from collections.abc import Callable

    from dronewatch.core.flow import Flow

# Endpoint states (Zeek's TCP_ENDPOINT_*).
INACTIVE = 0
SYN_SENT = 1
SYN_ACK_SENT = 2
PARTIAL = 3
ESTABLISHED = 4
CLOSED = 5
RESET = 6

# Slots of one endpoint's block; the first C_SLOTS are read and written by the C walk too.
LAST = 0
"""Sequence number one past the highest segment the endpoint sent (32-bit)."""
LREL = 1
"""LAST as an offset from START, in 64-bit sequence space (wraps counted)."""
ACK = 2
"""Highest acknowledgement the peer sent for the endpoint's data (32-bit)."""
AREL = 3
"""ACK as an offset from START."""
RXMIT = 4
"""Retransmitted data segments."""
GAPS = 5
"""Content gaps reported for the endpoint's data (a `G` letter at the 1st, 10th, 100th...; the
`T` letters are written at those counts of RXMIT: `scaled`)."""
FLAGS = 6
"""F_* bits."""
START = 7
"""The endpoint's initial sequence number (the one its SYN carried, or one before its first
byte when no SYN was seen)."""
C_SLOTS = 8
STATE = 8
PREV = 9
"""State before the last change."""
DID_CLOSE = 10
FIN_CNT = 11
HIST_SYN = 12
"""Relative sequence number of the last SYN (a new one writes the letter again)."""
HIST_FIN = 13
HIST_RST = 14
# Content gaps (see the comment before `scaled`); the C walk reads and writes these too.
SEEN = 15
"""Relative sequence number one past the endpoint's bytes seen in order from its start (Zeek's
last_reassem_seq): every byte below it was captured, acknowledged past a hole, or given up."""
HELD = 16
"""HOLES pairs of slots: [low, high) relative sequence numbers of data seen above a hole (low 0:
unused), kept until the hole is filled or acknowledged past."""
HOLES = 1
"""Ranges of data held above holes per endpoint: a further one is merged with its neighbour (the
bytes between counted as seen), so `missed_bytes` is a lower bound while two holes are open at
once (a burst of lost segments is one hole; a hole a retransmission fills is none). Each pair is
16 bytes more per TCP flow."""
BLOCK = HELD + 2 * HOLES
"""Slots per endpoint; the originator's block comes first."""

FAST = 2 * BLOCK
"""1 while the C walk may count this flow's segments without SYN, FIN or RST itself."""
MASK = FAST + 1
"""Zeek's history mask: which kinds of history event each role has shown (HIST_* bits, the
responder's shifted by 16), and M_PARTIAL."""
MISSED = MASK + 1
"""Bytes of the connection's content gaps (Zeek's missed_bytes), both directions."""
SYN_TS = MISSED + 1
"""Capture time of the SYN that opened an attempt (EV_ATTEMPT), as a double's bits (0: none): the
engine ends an attempt nobody answered at its first packet `close_linger_s` after it, so the C
walk hands over the packets from then on and counts the ones before."""
SKIP = SYN_TS + 1
"""Two slots, the originator's byte stream then the responder's: the relative sequence number
below which the stream layer passes over the direction's bytes without delivering them (a body
its one reader does not read: `dronewatch.core.stream`), 0 for none. The C walk counts a
followed flow's in-order segments that end at or below it itself."""
ACKED = SKIP + 2
"""Two slots, likewise: how far the stream layer has given up the direction's holes on the
peer's acknowledgements (`StreamReaders.acked`); the C walk counts a passed-over segment only
when its ACK would give up nothing more, as the engine's would not."""
FEED = ACKED + 2
"""Two slots, likewise: the relative sequence number from which the flow's one follower's frame
counter may count the direction's next in-order segments without their being delivered (an MQTT
flow's `MqttCounter`: `dronewatch.core.stream`), 0 for none. The stream layer sets it to where it
stands; the C walk moves it on past each segment the counter took."""
DUE = FEED + 2
"""Capture time (a double's bits; 0: none) from which the engine's close or expire timer of the
connection is due (`Engine.tcp_timers`): the C walk, which accounts a closed connection's
segments itself, hands its packets to the engine from then on."""
SIZE = DUE + 1

M_PARTIAL = 1 << 32
"""MASK bit: the connection began without a SYN from its originator (Zeek's is_partial)."""

F_INIT = 1
"""The endpoint's sequence numbers are set (by its own first segment or the peer's ACK)."""
F_SEEN = 2
"""The endpoint sent a segment."""
F_ACTIVE = 4
"""The endpoint's state is not INACTIVE."""
F_SKIP = 8
"""The endpoint's content is no longer followed for gaps (Zeek's skip_deliveries: more data above
a hole than MAX_ABOVE_HOLE before any of it was acknowledged)."""

HIST_SYN_PKT = 0x1
HIST_FIN_PKT = 0x2
HIST_RST_PKT = 0x4
HIST_FIN_RST_PKT = 0x8
HIST_DATA_PKT = 0x10
HIST_ACK_PKT = 0x20
HIST_MULTI_FLAG_PKT = 0x40

SEQ_MOD = 1 << 32
TOO_LARGE_SEQ_DELTA = 1048576
"""A SYN or RST this far off the last sequence number is not trusted (Zeek's constant)."""
MAX_ABOVE_HOLE = 16384
"""Bytes held above a hole before the peer acknowledged any data past which an endpoint's content
is no longer followed (Zeek's tcp_max_above_hole_without_any_acks)."""

# What `segment` asks the engine to do.
EV_CLOSED = 1
"""The connection closed (both ends, or a reset): end it `close_linger_s` after this segment."""
EV_ATTEMPT = 2
"""An initial SYN: if nothing answers within the linger, the attempt ends."""
EV_REJECTED = 4
EV_HALF_CLOSED = 8
"""One end closed, the other still open: look again `session_s` later (Zeek's ExpireTimer)."""


def new_state() -> array[int]:
    """The state of a TCP flow before its first segment."""
    return _NEW[:]  # a slice is allocated to its size: 48 bytes less than array("q", bytes(...))


_NEW = array("q", bytes(8 * SIZE))
_NEW[SEEN] = _NEW[BLOCK + SEEN] = 1


def delta(a: int, b: int) -> int:
    """`a - b` in 32-bit sequence space, signed."""
    d = (a - b) & 0xFFFFFFFF
    return d - SEQ_MOD if d >= 0x80000000 else d


def rel_seq(t: array[int], e: int, seq: int) -> int:
    """`seq` of endpoint block `e` relative to its start, wraps counted."""
    return t[e + LREL] + delta(seq, t[e + LAST])


def _set_state(t: array[int], e: int, state: int) -> None:
    if t[e + STATE] != state:
        t[e + PREV] = t[e + STATE]
        t[e + STATE] = state
        if state == INACTIVE:
            t[e + FLAGS] &= ~F_ACTIVE
        else:
            t[e + FLAGS] |= F_ACTIVE


def _init_seq(t: array[int], e: int, start: int, ack: int, last: int) -> None:
    t[e + START] = start & 0xFFFFFFFF
    t[e + ACK] = ack & 0xFFFFFFFF
    t[e + AREL] = delta(ack, start)
    t[e + LAST] = last & 0xFFFFFFFF
    t[e + LREL] = delta(last, start)
    t[e + FLAGS] |= F_INIT


def swap_roles(t: array[int]) -> None:
    """The endpoints change roles (the engine flips the flow)."""
    orig = t[0:BLOCK]
    t[0:BLOCK] = t[BLOCK : 2 * BLOCK]
    t[BLOCK : 2 * BLOCK] = orig
    for pair in (SKIP, ACKED, FEED):
        t[pair], t[pair + 1] = t[pair + 1], t[pair]


class _Segment:
    """The parts of `segment` that flip the roles half-way keep their endpoint here."""

    __slots__ = ("flow", "t", "e", "p", "is_orig", "flip")

    def __init__(self, flow: Flow, is_orig: bool, flip: Callable[[Flow], None]) -> None:
        self.flow = flow
        assert flow.tcp is not None
        self.t = flow.tcp
        self.is_orig = is_orig
        self.e = 0 if is_orig else BLOCK
        self.p = BLOCK - self.e
        self.flip = flip

    def add(self, code: str) -> None:
        self.flow.history += code if self.is_orig else code.lower()

    def check(self, mask: int, code: str) -> bool:
        """Zeek's CheckHistory: the first event of a kind writes its letter (False); later ones
        only say they were seen before (True). A connection that began with a SYN-ACK flips when
        it shows an ACK or data."""
        if code in "AD" and self.flow.history == "H":
            self.flip(self.flow)  # swaps the blocks too
            self.flow.history = "^h"
            self.is_orig = not self.is_orig
            self.e, self.p = self.p, self.e
        if not self.is_orig:
            mask <<= 16
        t = self.t
        if not t[MASK] & mask:
            t[MASK] |= mask
            self.add(code)
            return False
        return True


def segment(
    flow: Flow,
    from_orig: bool,
    flags: int,
    seq: int,
    ack: int,
    plen: int,
    ts: float,
    flip: Callable[[Flow], None],
) -> int:
    """Account one TCP segment of `flow` (sent by its originator or not); `flip(flow)` is called
    when the roles must change. Returns EV_* bits for the engine."""
    s = _Segment(flow, from_orig, flip)
    t = s.t
    syn, fin, rst = flags & TCP_SYN, flags & TCP_FIN, flags & TCP_RST
    ackf = flags & TCP_ACK
    _partial(t, from_orig, syn, ackf)
    seg_len = plen + (1 if syn else 0) + (1 if fin else 0)
    if rst:
        seg_len -= plen
    end = (seq + seg_len) & 0xFFFFFFFF
    _init_endpoint(t, s.e, syn, seq, end)
    t[s.e + FLAGS] |= F_SEEN
    rel = rel_seq(t, s.e, seq)
    _history(s, flags, rel, plen)
    e, p = s.e, s.p  # after a flip, the sender's block
    if not (t[DID_CLOSE] and t[BLOCK + DID_CLOSE]) and ts > flow.last_ts:
        flow.last_ts = ts
    if fin:
        t[e + FIN_CNT] += 1
    upto = 0  # the peer's relative sequence number this segment acknowledges (0: none)
    if ackf:
        if t[p + STATE] == INACTIVE:
            _init_seq(t, p, ack - 1, ack - 1, ack - 1)  # as if a SYN had been seen
        else:
            d = delta(ack, t[p + ACK])
            upto = max(t[p + AREL] + d, 0)
            if not rst and (
                t[p + AREL] + d >= 0 and d > 0 and not (ack == 0 and d > TOO_LARGE_SEQ_DELTA)
            ):
                t[p + ACK] = ack
                t[p + AREL] += d
    d_last = _update_last(s, e, end, syn, fin, rst, plen)
    events = _state_machine(s, e, p, syn, fin, rst, ackf, seq, ack, plen, d_last)
    e = 0 if s.is_orig else BLOCK  # the state machine may have flipped the roles
    if upto:
        # After the state machine, as Zeek does: a gap revealed by a closing segment's ACK counts
        # only when the close is clean.
        _acked(s, BLOCK - e, upto)
    if plen and not rst and rel >= 0:
        _seen(t, e, rel + (1 if syn else 0), plen)
    if events & EV_ATTEMPT:
        t[SYN_TS] = _BITS.unpack(_DOUBLE.pack(ts))[0]
    t[FAST] = 0 if _unsettled(t) else 1
    return events


_DOUBLE, _BITS = struct.Struct("=d"), struct.Struct("=q")


def _partial(t: array[int], from_orig: bool, syn: int, ackf: int) -> None:
    """Zeek's SetPartialStatus: a connection whose originator's first segment is not a bare SYN,
    or whose responder's first segment is no SYN, began before the capture."""
    if from_orig:
        if not t[FLAGS] & F_SEEN and (not syn or ackf):
            t[MASK] |= M_PARTIAL
    elif not t[BLOCK + FLAGS] & F_SEEN and not syn:
        t[MASK] |= M_PARTIAL


# Content gaps. A direction's content gap is a range of its sequence space that the peer
# acknowledged while the capture had not shown it (Zeek's TCP_Reassembler::Undelivered). Each
# endpoint keeps how far its bytes were seen in order (SEEN) and up to HOLES ranges it sent
# above a hole; a segment at or below SEEN moves it on (a retransmission changes nothing), one
# above waits in a range until the hole is filled (reordering) or the peer acknowledges past
# it: then the hole's bytes are missed. As in Zeek, a gap is reported (MISSED, GAPS and the
# `G`/`g` letters) only while both ends are established or cleanly closing, an ACK of the
# first two bytes of a partial connection reveals none, the ACK of a FIN counts no byte past
# it, and an endpoint with more than MAX_ABOVE_HOLE bytes above a hole before any of its data
# was acknowledged is not followed further. The C walk (`_fastpath.c`, `tcp_gap_ack`) does the
# same for the segments it counts, and hands over those that meet a held range or would write
# a letter.


def scaled(n: int) -> bool:
    """Whether the `n`th event of a kind writes its letter: the 1st, 10th, 100th..."""
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


def clean(t: array[int]) -> bool:
    """Zeek's established_or_cleanly_closing: each end established, or closed from established."""
    for e in (0, BLOCK):
        state = t[e + STATE]
        if state != ESTABLISHED and not (state == CLOSED and t[e + PREV] == ESTABLISHED):
            return False
    return True


def _held(t: array[int], e: int) -> list[tuple[int, int]]:
    """The ranges endpoint block `e` holds above a hole, lowest first."""
    out = []
    for i in range(HOLES):
        lo = t[e + HELD + 2 * i]
        if lo:
            out.append((lo, t[e + HELD + 2 * i + 1]))
    return out


def _set_held(t: array[int], e: int, ranges: list[tuple[int, int]]) -> None:
    """Store `ranges` (sorted, disjoint), merging the two closest while there are too many."""
    while len(ranges) > HOLES:
        i = min(range(len(ranges) - 1), key=lambda k: ranges[k + 1][0] - ranges[k][1])
        ranges[i : i + 2] = [(ranges[i][0], ranges[i + 1][1])]
    for i in range(HOLES):
        lo, hi = ranges[i] if i < len(ranges) else (0, 0)
        t[e + HELD + 2 * i] = lo
        t[e + HELD + 2 * i + 1] = hi


def _absorb(ranges: list[tuple[int, int]], seen: int) -> tuple[list[tuple[int, int]], int]:
    """Move `seen` over the held ranges it reaches."""
    while ranges and ranges[0][0] <= seen:
        seen = max(seen, ranges.pop(0)[1])
    return ranges, seen


def _seen(t: array[int], e: int, lo: int, n: int) -> None:
    """Endpoint block `e` sent `n` bytes from relative sequence number `lo`."""
    if t[e + FLAGS] & F_SKIP:
        return
    hi = lo + n
    seen = t[e + SEEN]
    if hi <= seen:
        return  # a retransmission
    ranges = _held(t, e)
    if lo <= seen:
        ranges, t[e + SEEN] = _absorb(ranges, hi)
        _set_held(t, e, ranges)
        return
    merged: list[tuple[int, int]] = []
    for a, b in sorted([*ranges, (lo, hi)]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    _set_held(t, e, merged)
    if t[e + AREL] in (0, 1) and sum(b - a for a, b in _held(t, e)) > MAX_ABOVE_HOLE:
        _set_held(t, e, [])
        t[e + FLAGS] |= F_SKIP


def _acked(s: _Segment, p: int, upto: int) -> None:
    """The peer acknowledged endpoint block `p`'s bytes below `upto`: the holes below are gaps."""
    t = s.t
    if t[p + FIN_CNT] and upto > t[p + HIST_FIN]:
        upto = t[p + HIST_FIN]  # the FIN's own sequence number is no content
    seen = t[p + SEEN]
    if upto <= seen or (upto <= 2 and t[MASK] & M_PARTIAL):
        return
    report = not t[p + FLAGS] & F_SKIP and clean(t)
    ranges = _held(t, p)
    while ranges and ranges[0][0] < upto:
        _gap(s, p, ranges[0][0] - seen, report)
        ranges, seen = _absorb(ranges, ranges[0][0])
    if upto > seen:
        _gap(s, p, upto - seen, report)
        ranges, seen = _absorb(ranges, upto)  # data held from `upto` on now follows
    t[p + SEEN] = seen
    _set_held(t, p, ranges)


def _gap(s: _Segment, p: int, n: int, report: bool) -> None:
    """A content gap of `n` bytes in endpoint block `p`'s data (Zeek's TCP_Endpoint::Gap)."""
    if not report:
        return
    t = s.t
    t[MISSED] += n
    t[p + GAPS] += 1
    if scaled(t[p + GAPS]):
        s.flow.history += "G" if p == 0 else "g"


def set_due(t: array[int], at: float) -> None:
    """Store the time the connection's close or expire timer is due (`DUE`)."""
    t[DUE] = _BITS.unpack(_DOUBLE.pack(at))[0]


def missed_bytes(t: array[int] | None) -> int:
    """Bytes of a TCP flow's content gaps (0 for a flow without TCP state)."""
    return 0 if t is None else t[MISSED]


def _unsettled(t: array[int]) -> bool:
    """A state in which the C walk must hand every segment to `segment`: an end closed or
    reset (the duration stops, the flow ends soon). An attempt nobody answered is settled: the
    walk counts its segments until its linger is over (SYN_TS)."""
    return any(t[e + DID_CLOSE] or t[e + STATE] in (CLOSED, RESET) for e in (0, BLOCK))


def _init_endpoint(t: array[int], e: int, syn: int, seq: int, end: int) -> None:
    """Zeek's init_endpoint: where an endpoint's sequence numbers start."""
    state = t[e + STATE]
    if state == INACTIVE:
        if syn:
            _init_seq(t, e, seq, seq, end)
        else:
            # A partial connection: numbered as if a SYN had been seen.
            _init_seq(t, e, seq - 1, seq - 1, seq)
    elif syn and (
        (state in (SYN_SENT, SYN_ACK_SENT) and seq != t[e + START])
        or state in (ESTABLISHED, PARTIAL)
        or (state == RESET and t[e + PREV] == INACTIVE)
    ):
        _init_seq(t, e, seq, seq, end)


def _history(s: _Segment, flags: int, rel: int, plen: int) -> None:
    """Zeek's update_history."""
    syn, fin, rst = flags & TCP_SYN, flags & TCP_FIN, flags & TCP_RST
    bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
    t = s.t
    if bits > 1:
        if fin and rst:
            s.check(HIST_FIN_RST_PKT, "I")
        else:
            s.check(HIST_MULTI_FLAG_PKT, "Q")
    elif bits == 1:
        if syn:
            code = "H" if flags & TCP_ACK else "S"
            if s.check(HIST_SYN_PKT, code) and rel != t[s.e + HIST_SYN]:
                s.add(code)
            t[s.e + HIST_SYN] = rel
        if fin:
            if s.check(HIST_FIN_PKT, "F") and rel + plen != t[s.e + HIST_FIN]:
                s.add("F")
            t[s.e + HIST_FIN] = rel + plen
        if rst:
            if s.check(HIST_RST_PKT, "R") and rel != t[s.e + HIST_RST]:
                s.add("R")
            t[s.e + HIST_RST] = rel
    elif plen:
        s.check(HIST_DATA_PKT, "D")
    elif flags & TCP_ACK:
        s.check(HIST_ACK_PKT, "A")


def _update_last(s: _Segment, e: int, end: int, syn: int, fin: int, rst: int, plen: int) -> int:
    """Zeek's update_last_seq; a retransmission counts towards the `T` letters."""
    t = s.t
    d = delta(end, t[e + LAST])
    if (syn or rst) and abs(d) > TOO_LARGE_SEQ_DELTA:
        pass  # not trusted
    elif fin and t[e + LAST] == (t[e + START] + 1) & 0xFFFFFFFF:
        t[e + LAST] = end  # only the SYN and the FIN seen: trust the FIN even backwards
        t[e + LREL] += d
    elif t[e + STATE] == RESET:
        pass
    elif d > 0:
        t[e + LAST] = end
        t[e + LREL] += d
    elif plen > 0:
        t[e + RXMIT] += 1
        if scaled(t[e + RXMIT]):
            s.add("T")
    return d


def _state_machine(
    s: _Segment,
    e: int,
    p: int,
    syn: int,
    fin: int,
    rst: int,
    ackf: int,
    seq: int,
    ack: int,
    plen: int,
    d_last: int,
) -> int:
    """Zeek's UpdateStateMachine and ConnectionClosed, reduced to what the logs show."""
    t = s.t
    state = t[e + STATE]
    close = False
    events = 0
    if state == INACTIVE:
        if syn:
            if s.is_orig:
                _set_state(t, e, SYN_ACK_SENT if ackf else SYN_SENT)
                events |= EV_ATTEMPT
            else:
                peer = t[p + STATE]
                if not ackf and peer == SYN_ACK_SENT and seq == t[e + START]:
                    # A SYN and SYN-ACK seen in reverse order: flip and establish.
                    s.flip(s.flow)
                    s.flow.history += "^"
                    s.is_orig = not s.is_orig
                    e, p = p, e
                    _set_state(t, p, ESTABLISHED)
                if t[p + STATE] == SYN_SENT:
                    _set_state(t, p, ESTABLISHED)
                _set_state(t, e, ESTABLISHED)
        if fin:
            _set_state(t, e, CLOSED)
            close = True
        if rst:
            _set_state(t, e, RESET)
            close = True
            if s.is_orig:
                reject = t[p + STATE] == ESTABLISHED
            else:
                reject = t[p + STATE] in (SYN_SENT, SYN_ACK_SENT)
            if reject:
                events |= EV_REJECTED
        if t[e + STATE] == INACTIVE:
            if not s.is_orig and plen == 0 and t[p + STATE] == SYN_SENT:
                pass  # an ACK of the SYN before the SYN-ACK: not yet a partial connection
            elif ackf and t[p + STATE] == ESTABLISHED:
                _set_state(t, e, ESTABLISHED)  # the initial SYN was missed
            else:
                _set_state(t, e, PARTIAL)
    elif state in (SYN_SENT, SYN_ACK_SENT):
        if fin:
            _set_state(t, e, CLOSED)
            close = True
        if rst:
            _set_state(t, e, RESET)
            close = True
    elif state in (ESTABLISHED, PARTIAL):
        if syn and state == PARTIAL and t[p + STATE] == INACTIVE and not ackf:
            _set_state(t, e, SYN_SENT)
        if fin and not rst:
            _set_state(t, e, CLOSED)
            if t[p + STATE] == RESET and t[p + PREV] == CLOSED:
                _set_state(t, p, CLOSED)  # the peer's FIN then RST was a normal close
            close = True
        if rst:
            _set_state(t, e, RESET)
            close = True
    elif state == CLOSED:
        if rst and t[p + STATE] != CLOSED:
            _set_state(t, e, RESET)
            if not t[e + DID_CLOSE]:
                close = True
    if close and not t[e + DID_CLOSE]:
        t[e + DID_CLOSE] = 1
        if t[e + STATE] == RESET or t[p + DID_CLOSE] or t[p + STATE] == INACTIVE:
            events |= EV_CLOSED
        else:
            events |= EV_HALF_CLOSED
    return events


def expired(t: array[int]) -> bool:
    """A half-closed connection that has gone quiet may end (Zeek's ExpireTimer test): both
    ends closed, or one reset, or one never active."""
    if not (t[DID_CLOSE] or t[BLOCK + DID_CLOSE]):
        return False
    if t[DID_CLOSE] and t[BLOCK + DID_CLOSE]:
        return True
    states = (t[STATE], t[BLOCK + STATE])
    return RESET in states or INACTIVE in states


def is_reuse(t: array[int], flags: int, seq: int) -> bool:
    """A SYN (or, on a half-open connection, a SYN-ACK) that starts a new connection on the
    5-tuple (Zeek's IsReuse): any once an end has closed, else one whose sequence number is not
    the one the connection started with."""
    if not flags & TCP_SYN:
        return False
    if flags & TCP_ACK:
        if t[STATE] != INACTIVE:
            return False  # not a half-open connection
        e = BLOCK
    else:
        e = 0
    if not _closed(t):
        if seq == t[e + START]:
            return False
        if (
            not flags & TCP_ACK
            and t[e + STATE] == SYN_ACK_SENT
            and t[BLOCK + STATE] == INACTIVE
            and seq == t[BLOCK + START]
        ):
            return False  # a SYN and SYN-ACK seen in reverse order
    return True


def _closed(t: array[int]) -> bool:
    """Zeek's IsClosed: either end has closed (a FIN or a RST was accounted)."""
    return bool(t[DID_CLOSE] or t[BLOCK + DID_CLOSE])


def size(t: array[int], e: int) -> int:
    """The payload bytes endpoint block `e` sent, in sequence space (Zeek's Size): from its
    start to the highest of what it sent and what the peer acknowledged, SYN and FIN taken out."""
    p = BLOCK - e
    if (
        t[e + PREV] == SYN_SENT
        and t[e + STATE] == RESET
        and t[p + STATE] == INACTIVE
        and t[e + AREL] not in (0, 1)
    ):
        return 0  # a half-open connection found and aborted: its numbers say nothing
    n = max(t[e + LREL], t[e + AREL])
    if n < 0:
        n += 1 << 64  # as Zeek's unsigned arithmetic gives it
    if n:
        n -= 1
    if t[e + FIN_CNT] and n:
        n -= 1
    return n


_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")


def conn_state(flow: Flow) -> str:
    """Zeek's conn_state of a TCP flow from its endpoints' states."""
    t = flow.tcp
    if t is None:
        return "OTH"
    os, rs = t[STATE], t[BLOCK + STATE]
    o_inactive = os in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)
    if rs == RESET:
        if os in (SYN_SENT, SYN_ACK_SENT) or (
            os == RESET and size(t, 0) == 0 and size(t, BLOCK) == 0
        ):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os == RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0.fullmatch(flow.history) else "OTH"
        return "RSTO"
    if rs == CLOSED and os == CLOSED:
        return "SF"
    if os == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"


def attempt_open(t: array[int]) -> bool:
    """Still a connection attempt: the originator sent a SYN, the responder nothing."""
    return t[STATE] in (SYN_SENT, SYN_ACK_SENT) and t[BLOCK + STATE] == INACTIVE
