"""Hook registration: analyzers are checked against the hook Protocols when they are registered."""

from __future__ import annotations

import pytest

from dronewatch.analyzers import default_analyzers
from dronewatch.core.engine import Engine
from dronewatch.core.flow import Flow, Packet
from dronewatch.core.hooks import HOOKS, Record, find_hooks
from dronewatch.core.pipeline import Pipeline
from dronewatch.judge.evidence import EvidenceKeeper
from tests.factories import RecordingContext


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
        "quic",
        "dtls",
        "dns",
        "mdns",
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
        "monitor",
    ]
    assert all(any(getattr(h, hook) is not None for hook in HOOKS) for h in registered)
    assert [a.name for a in pipe.engine.analyzers] == [h.name for h in registered][1:]
