"""Hook registration: analyzers are checked against the hook Protocols when they are registered."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers import default_analyzers
from dronewatch.analyzers.dji_droneid import DJI_OUI
from dronewatch.analyzers.remoteid import ODID_OUIS, WFA_OUI
from dronewatch.capture.base import RawPacket
from dronewatch.capture.decode import Decoder
from dronewatch.core.engine import Engine, Share
from dronewatch.core.flow import IP_PROTO_TCP, IP_PROTO_UDP, Flow, Packet
from dronewatch.core.hooks import HOOKS, FrameInterest, Record, find_hooks
from dronewatch.core.pipeline import Pipeline
from dronewatch.judge.evidence import EvidenceKeeper
from tests.factories import RecordingContext, make_flow, make_packet


class Good:
    """An analyzer with a few hooks and one declared helper."""

    name = "good"
    helpers = ("report",)

    def packet(self, flow: Flow, pkt: Packet) -> None:
        pass

    def flow_end(self, flow: Flow) -> None:
        pass

    def report(self) -> int:
        return 1

    def _private(self) -> None:
        pass


def test_hooks_are_bound_and_missing_ones_are_none() -> None:
    """find_hooks binds the hooks an analyzer has and leaves the others None."""
    good = Good()
    hooks = find_hooks(good)
    assert hooks.name == "good"
    assert hooks.packet is not None and hooks.packet.__self__ is good
    assert hooks.flow_end is not None
    assert (hooks.flow_start, hooks.wants, hooks.frame, hooks.done) == (None, None, None, None)


def test_misspelt_hook_is_refused_with_a_message_naming_it() -> None:
    """A public `flow_ended` is not a hook: the engine refuses the analyzer, naming both."""

    class Typo(Good):
        name = "typo"

        def flow_ended(self, flow: Flow) -> None:
            pass

    with pytest.raises(ValueError) as err:
        Engine([Typo()], RecordingContext())
    msg = str(err.value)
    assert "analyzer 'typo'" in msg and "'flow_ended' is not a hook" in msg
    assert "did you mean 'flow_end'?" in msg and "\n" not in msg


@pytest.mark.parametrize("method", ["packets", "frames", "finish"])
def test_undeclared_public_method_is_refused(method: str) -> None:
    """Any public method that is neither a hook nor listed in `helpers` is refused."""
    cls = type("Extra", (Good,), {"name": "extra", method: lambda self: None})
    with pytest.raises(ValueError, match=f"analyzer 'extra': public method '{method}'"):
        find_hooks(cls())


def test_analyzer_without_any_hook_is_refused() -> None:
    """An analyzer that implements no hook would never run: refused."""

    class Idle:
        name = "idle"

    with pytest.raises(ValueError, match="analyzer 'idle' implements no hook"):
        find_hooks(Idle())


def test_hook_with_other_parameters_is_refused() -> None:
    """A hook that cannot be called as its Protocol says (`packet(pkt)`) is refused."""

    class Wrong:
        name = "wrong"

        def packet(self, pkt: Packet) -> None:
            pass

    with pytest.raises(ValueError, match=r"hook 'packet' takes \(pkt: 'Packet'\) -> 'None'"):
        find_hooks(Wrong())


def test_hook_that_is_not_a_method_is_refused() -> None:
    """An attribute with a hook's name that cannot be called is refused."""

    class Data:
        name = "data"
        done = True

        def frame(self, pkt: Packet) -> None:
            pass

    with pytest.raises(ValueError, match="'done' is not a method"):
        find_hooks(Data())


def test_wants_without_packet_is_refused() -> None:
    """`wants` only decides which packets reach `packet`: alone it is a mistake."""

    class Picky:
        name = "picky"

        def wants(self, flow: Flow) -> bool:
            return True

    with pytest.raises(ValueError, match="'wants' without a 'packet' hook"):
        find_hooks(Picky())


def test_helper_that_is_not_a_method_is_refused() -> None:
    """A misspelt `helpers` entry is refused too."""

    class BadHelper(Good):
        name = "bad_helper"
        helpers = ("reprot",)

    with pytest.raises(ValueError, match="helper 'reprot' is not a method"):
        find_hooks(BadHelper())


def test_nameless_analyzer_is_refused() -> None:
    """Followers are found by name: an analyzer without one is refused."""

    class Anonymous:
        def done(self) -> None:
            pass

    with pytest.raises(ValueError, match="analyzer Anonymous: `name` must be"):
        find_hooks(Anonymous())


def test_every_default_analyzer_registers() -> None:
    """Every built-in analyzer, the evidence keeper and the monitor pass registration, each with
    at least one hook."""
    emitted: list[Record] = []
    pipe = Pipeline(emitted.append)
    ctx = RecordingContext()
    analyzers = [EvidenceKeeper(), *default_analyzers(ctx), pipe.monitor]
    engine = Engine(analyzers, ctx)
    registered = [find_hooks(a) for a in engine.analyzers]
    assert [h.name for h in registered] == [
        "evidence",
        "tls",
        "dns",
        "mdns",
        "quic",
        "dtls",
        "http",
        "dhcp",
        "mqtt",
        "rtmp",
        "rtsp",
        "mavlink",
        "dji_wifi",
        "tello",
        "parrot",
        "remoteid",
        "dji_droneid",
        "local_link",
        "ndp",
        "monitor",
    ]
    assert all(any(getattr(h, hook) is not None for hook in HOOKS) for h in registered)
    assert [a.name for a in pipe.engine.analyzers] == [h.name for h in registered][1:]


def test_wants_ports_must_be_a_frozenset_of_ports_next_to_wants() -> None:
    """A `wants_ports` that is not a frozenset of port numbers, or one without `wants`, is
    refused: the engine would remember answers on a wrong key."""

    class Listed(Good):
        name = "listed"
        wants_ports = [53]

        def wants(self, flow: Flow) -> bool:
            return True

    class Alone(Good):
        name = "alone"
        wants_ports = frozenset({53})

    with pytest.raises(ValueError, match="`wants_ports` must be a frozenset"):
        find_hooks(Listed())
    with pytest.raises(ValueError, match="`wants_ports` without a 'wants'"):
        find_hooks(Alone())


def _flow(proto: int, src: str, sport: int, dst: str, dport: int) -> Flow:
    return make_flow(make_packet(src=src, dst=dst, sport=sport, dport=dport, proto=proto))


_ADDRESSES = ("192.168.1.3", "10.0.0.7", "203.0.113.10", "224.0.0.251", "255.255.255.255")
_DECLARED = sorted(
    frozenset().union(
        *(
            h.wants_ports
            for h in map(find_hooks, default_analyzers(RecordingContext()))
            if h.wants_ports is not None
        )
    )
)


@settings(max_examples=300, deadline=None)
@given(
    proto=st.sampled_from((IP_PROTO_TCP, IP_PROTO_UDP, 1, 58, 132)),
    ports=st.lists(
        st.one_of(st.sampled_from(_DECLARED), st.integers(0, 65535)), min_size=4, max_size=4
    ),
    ends=st.lists(st.sampled_from(_ADDRESSES), min_size=4, max_size=4),
)
def test_declared_wants_ports_are_all_that_wants_reads(
    proto: int, ports: list[int], ends: list[str]
) -> None:
    """Every built-in analyzer that declares `wants_ports` answers alike for two flows of one
    protocol whose ports are the same where they are declared ones, whatever the other ports and
    the addresses: what lets the engine remember its answer per protocol and declared ports."""
    for hooks in map(find_hooks, default_analyzers(RecordingContext())):
        declared = hooks.wants_ports
        if declared is None or hooks.wants is None:
            continue
        a, b, c, d = ports
        # The second flow: declared ports kept, the others replaced by other undeclared ones.
        c2 = a if a in declared else (c if c not in declared else 40000)
        d2 = b if b in declared else (d if d not in declared else 40001)
        first = hooks.wants(_flow(proto, ends[0], a, ends[1], b))
        second = hooks.wants(_flow(proto, ends[2], c2, ends[3], d2))
        assert first == second, (hooks.name, proto, (a, b), (c2, d2))


def test_engine_asks_a_declared_wants_once_per_protocol_and_declared_ports() -> None:
    """A flood of flows from ever new ports asks a `wants` declaring its ports a few times,
    not once per flow, and every flow still goes to the analyzers that want it."""

    class Dns(Good):
        name = "dns_only"
        wants_ports = frozenset({53})

        def __init__(self) -> None:
            self.asked = 0
            self.seen: set[int] = set()

        def wants(self, flow: Flow) -> bool:
            self.asked += 1
            return flow.proto == IP_PROTO_UDP and 53 in (flow.orig_p, flow.resp_p)

        def packet(self, flow: Flow, pkt: Packet) -> None:
            self.seen.add(flow.orig_p)

    dns = Dns()
    engine = Engine([dns], RecordingContext())
    for sport in range(20000, 20500):
        engine.process(make_packet(b"q", proto=IP_PROTO_UDP, sport=sport, dport=53))
        engine.process(make_packet(b"x", proto=IP_PROTO_UDP, sport=sport, dport=9999))
    engine.finish()
    assert dns.seen == set(range(20000, 20500))
    assert dns.asked == 2  # (udp, other, 53) and (udp, other, other)


class Framed(Good):
    """An analyzer that reads beacons of one vendor."""

    name = "framed"
    frame_interest = FrameInterest(frozenset({b"\x26\x37\x12"}))

    def frame(self, pkt: Packet) -> None:
        pass


def test_frame_interest_must_be_ouis_next_to_frame() -> None:
    """A `frame_interest` that is not a FrameInterest of 3-byte OUIs, or one without `frame`,
    is refused: the C walk would count frames the hook reads."""

    class Wrong(Framed):
        name = "wrong"
        frame_interest = FrameInterest(frozenset({b"\x26\x37"}))

    class Plain(Framed):
        name = "plain"
        frame_interest = frozenset({b"\x26\x37\x12"})  # type: ignore[assignment]

    class Alone(Good):
        name = "alone"
        frame_interest = FrameInterest(action=True)

    for bad in (Wrong(), Plain()):
        with pytest.raises(ValueError, match="`frame_interest` must be a FrameInterest"):
            find_hooks(bad)
    with pytest.raises(ValueError, match="`frame_interest` without a 'frame'"):
        find_hooks(Alone())


def test_the_engine_reads_the_frames_its_hooks_declared() -> None:
    """The engine's `frame_interest` is the union of its frame hooks' declarations; None when
    one declared nothing (every management frame reaches it); none at all in a process of a
    shared capture other than the first, whose frame hooks do not run."""

    class Undeclared(Good):
        name = "undeclared"

        def frame(self, pkt: Packet) -> None:
            pass

    built_in = Engine(default_analyzers(RecordingContext()), RecordingContext()).frame_interest
    assert built_in is not None and built_in.action
    assert built_in.vendor_ouis == {b"\x26\x37\x12", b"\xfa\x0b\xbc", b"\x90\x3a\xe6"}
    assert Engine([Framed(), Good()], RecordingContext()).frame_interest == Framed.frame_interest
    assert Engine([Framed(), Undeclared()], RecordingContext()).frame_interest is None
    assert Engine([Good()], RecordingContext()).frame_interest == FrameInterest()
    other = Engine([Undeclared()], RecordingContext(), share=Share(1, 2))
    assert other.frame_interest == FrameInterest()


def _element(eid: int, data: bytes) -> bytes:
    return bytes([eid, len(data)]) + data


_OUIS = sorted({DJI_OUI, *ODID_OUIS, WFA_OUI})
"""The vendor element OUIs the built-in frame hooks compare (their own constants)."""


@settings(max_examples=300, deadline=None)
@given(
    subtype=st.integers(0, 15),
    elements=st.lists(
        st.one_of(
            st.tuples(st.integers(0, 255), st.binary(max_size=40)),
            st.tuples(
                st.just(221),
                st.builds(
                    lambda oui, rest: oui + rest,
                    st.one_of(st.sampled_from(_OUIS), st.binary(min_size=3, max_size=3)),
                    st.binary(max_size=60),
                ),
            ),
        ),
        max_size=6,
    ),
    tail=st.binary(max_size=3),
)
def test_declared_frame_interest_is_all_that_frame_reads(
    subtype: int, elements: list[tuple[int, bytes]], tail: bytes
) -> None:
    """Every built-in frame hook that declares `frame_interest` writes nothing, at once or at
    the end, for a management frame outside it, whatever its elements hold: what lets the C
    walk count such frames without handing them over."""
    head = bytes([subtype << 4, 0, 0, 0]) + b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x07" * 2
    frame = (
        head
        + b"\x00" * 10
        + b"\x64\x00\x01\x04"
        + b"".join(_element(e, d) for e, d in elements)
        + tail
    )
    pkt = Decoder().decode(RawPacket(1000.0, 105, frame, len(frame), 0, 1))
    assert pkt is not None and pkt.dot11 is not None
    for analyzer in default_analyzers(ctx := RecordingContext()):
        hooks = find_hooks(analyzer)
        if hooks.frame is None or hooks.frame_interest is None:
            continue
        if hooks.frame_interest.reads(pkt.dot11):
            continue
        hooks.frame(pkt)
        if hooks.done is not None:
            hooks.done()
        assert ctx.records == [], hooks.name
