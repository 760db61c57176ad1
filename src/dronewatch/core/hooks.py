"""The hooks an analyzer may implement, and the context it gets to report through."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from types import MemberDescriptorType
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from dronewatch.core.flow import (
    SUBTYPE_ACTION,
    SUBTYPE_BEACON,
    SUBTYPE_PROBE_RESP,
    Dot11Frame,
    Flow,
    Packet,
)
from dronewatch.fastpath import native
from dronewatch.geoip.local import LocalNets, builtin_local_nets
from dronewatch.geoip.onlink import OnLink


@dataclass(frozen=True, slots=True)
class Record:
    """Base of every log record; subclasses set `log` to the JSONL file stem."""

    log: ClassVar[str] = ""
    ts: float
    """Network time of the packet the record describes."""

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data; fields that are None are left out."""
        out: dict[str, Any] = {}
        for name in field_names(type(self)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """Pickled as its class and field values, in order, and made again by `make_record`
        (`analyze --workers` sends records between processes: the dataclass's own state walks
        `dataclasses.fields` per record, and its `__init__` sets each field in turn)."""
        cls = type(self)
        return make_record, (cls, _field_getter(cls)(self))


R = TypeVar("R")


def make_record(cls: type[R], values: tuple[Any, ...]) -> R:
    """The record of `cls` (a slots dataclass: a record, a `Flow`) with these field values, in
    field order: equal to `cls(*values)`, made by the C extension where it is used
    (`_fastpath.new_record` stores each value in its slot), without the dataclass's `__init__`,
    which sets every field in turn (a frozen one through `object.__setattr__`: a flow's record
    has 45, about 5 microseconds, and a flood of short flows makes one per flow). A class with
    a `__post_init__`, or a field that is not a slot of its own, is made by `cls(*values)`.
    TypeError when the count of values is not the count of fields."""
    make = _MAKERS.get(cls)
    if make is None:
        make = _MAKERS[cls] = _maker(cls)
    return make(values)  # type: ignore[no-any-return]


def _maker(cls: type[R]) -> Callable[[tuple[Any, ...]], R]:
    """How `make_record` makes records of `cls`."""
    names = field_names(cls)

    def slow(values: tuple[Any, ...]) -> R:
        if len(values) != len(names):
            raise TypeError(f"{cls.__name__} takes {len(names)} field values, {len(values)} given")
        return cls(*values)

    c = native()
    if c is None or hasattr(cls, "__post_init__"):
        return slow
    members = tuple(inspect.getattr_static(cls, name, None) for name in names)
    if not all(isinstance(m, MemberDescriptorType) for m in members):
        return slow  # a field that is not a slot (a class without slots=True)
    new = c.new_record
    return lambda values: new(cls, members, values)


_MAKERS: dict[type, Callable[[tuple[Any, ...]], Any]] = {}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
"""The field names of each record class, in field order (`dataclasses.fields` costs a record
about as much as the rest of `to_dict`, and a flood of flows writes a record per flow)."""


_FIELD_GETTERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def _field_getter(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """A function giving a record's field values as a tuple, in field order (per class)."""
    getter = _FIELD_GETTERS.get(cls)
    if getter is None:
        names = field_names(cls)
        one = attrgetter(*names)
        getter = (lambda r: (one(r),)) if len(names) == 1 else one
        _FIELD_GETTERS[cls] = getter
    return getter


def field_names(cls: type) -> tuple[str, ...]:
    """The names of the dataclass fields of `cls`, in order (remembered per class)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


@dataclass(frozen=True, slots=True)
class ConnRecord(Record):
    """Base of the records about one flow: its uid and connection, Zeek-style."""

    uid: str
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int


def conn(flow: Flow) -> dict[str, Any]:
    """The `uid` and connection fields of a `ConnRecord`, for `Record(**conn(flow), ...)`."""
    return dict(zip(_CONN_FIELDS, conn_values(flow), strict=True))


def conn_values(flow: Flow) -> tuple[str, str, int, str, int]:
    """The same fields' values, in field order (for `make_record`, right after `ts`)."""
    return flow.uid, flow.orig_ip, flow.orig_p, flow.resp_ip, flow.resp_p


_CONN_FIELDS = ("uid", "orig_h", "orig_p", "resp_h", "resp_p")


class DnsCache(Protocol):
    """IP-to-name memory built from DNS answers."""

    def name_for(self, ip: bytes) -> str | None: ...

    def remember(self, ip: bytes, name: str, ts: float) -> None: ...


@dataclass(slots=True)
class Context:
    """What the engine lends to every analyzer."""

    emit: Callable[[Record], None]
    """Write one log record."""
    dns: DnsCache
    facts_only: set[str] = dataclasses.field(default_factory=set)
    """The uids of the open flows made here only for the facts they publish (a DNS answer names
    the flows after it): another process of a shared capture writes their records
    (`dronewatch.core.split`), so an analyzer reading one may skip making them."""
    local: LocalNets = dataclasses.field(default_factory=builtin_local_nets)
    """The local networks of the run: the GeoIP resolver's (built-in ranges, the user's local
    subnets and drone-link subnets), so an analyzer takes for local what the monitor does."""
    on_link: OnLink = dataclasses.field(default_factory=OnLink)
    """The prefixes and addresses the capture showed on its link (IPv6 Neighbor Discovery,
    `dronewatch.analyzers.ndp`; ARP, `Decoder.on_arp`): local too, for the monitor, whatever
    their scope (`dronewatch.geoip.onlink`)."""


@runtime_checkable
class Analyzer(Protocol):
    """An analyzer implements any subset of the hooks below (at least one) and a unique `name`.

    Every public method of an analyzer must be a hook, or be listed in the class attribute
    `helpers` (a tuple of method names: what other stages call on it, such as the monitor's
    `finish`); `find_hooks` refuses anything else, so a misspelt hook is an error, not silence."""

    name: str


@runtime_checkable
class FlowStartHook(Protocol):
    """Called with the first packet of every flow, before any `packet` hook sees it."""

    def flow_start(self, flow: Flow, pkt: Packet) -> None: ...


@runtime_checkable
class WantsHook(Protocol):
    """Called once as a flow starts: False spares the analyzer every packet of the flow. Decide
    on the protocol and ports only, which never change during a flow.

    An analyzer whose answer depends on nothing but the protocol and whether each port is one
    of a few declares those ports in the class attribute `wants_ports` (a frozenset; empty when
    the protocol alone decides): the engine then asks it once per protocol and pair of such
    ports (any other port stands for all the others) and remembers the answer, instead of once
    per flow. Without the attribute it is asked for every flow."""

    def wants(self, flow: Flow) -> bool: ...


@runtime_checkable
class PacketHook(Protocol):
    """Called for payload-carrying packets while the flow is inspected, and after that for the
    analyzers that follow it. The flow's packet and byte counters may lag behind here (the bulk
    path adds them per batch); they are exact in flow_end. The hook says through the flow what
    it needs next: `follow` (every packet), `decline` (none), or `wait` (nothing to read until
    an answer comes; the engine stops a flow whose analyzers all wait too long,
    `EngineOptions.stall_packets`) and `stop_waiting`."""

    def packet(self, flow: Flow, pkt: Packet) -> None: ...


@runtime_checkable
class FlowEndHook(Protocol):
    """Called once when a flow ends (close, idle or active timeout, eviction, end of capture).

    An analyzer with a `packet` hook and no `flow_start` hook is called only for the flows of
    which it could have been handed a packet (it wanted the flow, and at least one payload
    packet was inspected): what it keeps of a flow comes from its packets, so it has nothing to
    write or drop for the others (a scan's SYNs, refused connections, the UDP flows of an
    analyzer of TCP), and the engine spares it the call."""

    def flow_end(self, flow: Flow) -> None: ...


@runtime_checkable
class FactsHook(Protocol):
    """Called in a process that shares a capture file with others (`analyze --workers`,
    `dronewatch.core.split`) for each UDP datagram of another process's flow on
    `Share.every_port`, by the analyzers named in `Share.readers`, instead of the process making
    that flow for them: read the datagram for the facts the analyzer gives other flows (a DNS
    answer's names, for the flows after it) and write nothing. An analyzer whose facts depend on
    the flow's earlier packets under its options sets the attribute `facts_need_flows` to True:
    the process then makes those flows for it, as it does for TCP (the hook is not called)."""

    def facts(self, pkt: Packet) -> None: ...


@runtime_checkable
class FrameHook(Protocol):
    """Called for frames that are not IP (802.11 management frames).

    An analyzer whose hook reads only some of them says which in the class attribute
    `frame_interest` (`FrameInterest`); the C walk then counts the others itself, as the
    decoder and the engine would, without a call (a monitor-mode capture is mostly beacons of
    access points). Without it, every management frame reaches the hook."""

    def frame(self, pkt: Packet) -> None: ...


@dataclass(frozen=True, slots=True)
class FrameInterest:
    """The 802.11 management frames a `frame` hook reads; it passes over every other one."""

    vendor_ouis: frozenset[bytes] = frozenset()
    """Beacons and probe responses that carry a vendor-specific element (ID 221) whose OUI (its
    first 3 bytes) is one of these."""
    action: bool = False
    """Action frames (subtype 13)."""

    def reads(self, frame: Dot11Frame) -> bool:
        """Whether the hook reads `frame`: the rule the C walk applies before counting a
        management frame itself (`_fastpath.c`'s `mgmt_wanted`, held to this by a test)."""
        if frame.subtype == SUBTYPE_ACTION:
            return self.action
        if frame.subtype not in (SUBTYPE_BEACON, SUBTYPE_PROBE_RESP):
            return False
        return any(head[:3] in self.vendor_ouis for head, _ in frame.vendor_elements())

    def __or__(self, other: FrameInterest) -> FrameInterest:
        return FrameInterest(self.vendor_ouis | other.vendor_ouis, self.action or other.action)


@runtime_checkable
class DoneHook(Protocol):
    """Called once when the source is exhausted, after every flow has ended."""

    def done(self) -> None: ...


HOOKS: dict[str, type[Any]] = {
    "flow_start": FlowStartHook,
    "wants": WantsHook,
    "packet": PacketHook,
    "flow_end": FlowEndHook,
    "facts": FactsHook,
    "frame": FrameHook,
    "done": DoneHook,
}
"""Every hook, by method name, with the Protocol that declares it."""


@dataclass(frozen=True, slots=True)
class AnalyzerHooks:
    """The hooks one analyzer implements, bound to it; None for those it does not."""

    name: str
    flow_start: Callable[[Flow, Packet], None] | None
    wants: Callable[[Flow], bool] | None
    wants_ports: frozenset[int] | None
    """The ports `wants` looks at (`WantsHook`); None: it may read more, ask it every flow."""
    packet: Callable[[Flow, Packet], None] | None
    flow_end: Callable[[Flow], None] | None
    facts: Callable[[Packet], None] | None
    frame: Callable[[Packet], None] | None
    frame_interest: FrameInterest | None
    """The frames `frame` reads (`FrameHook`); None: every management frame."""
    done: Callable[[], None] | None


def find_hooks(analyzer: object) -> AnalyzerHooks:
    """The hooks of `analyzer`, found through the hook Protocols; ValueError (naming the analyzer
    and the method) for an analyzer without a name or without any hook, a hook whose parameters
    are not the Protocol's, or a public method that is neither a hook nor listed in `helpers`.

    The hooks are bound by `isinstance` checks against the `runtime_checkable` Protocols above,
    which give each its type (`PacketHook.packet` is a `Callable[[Flow, Packet], None]`), rather
    than looked up by name. Such a check only sees that the attribute exists, so the method's
    parameters are compared with the Protocol's here, and every other public method must be
    declared: an analyzer with `flow_ended` or `packets` is refused at registration instead of
    never being called."""
    cls = type(analyzer)
    name = getattr(analyzer, "name", None)
    if not isinstance(analyzer, Analyzer) or not isinstance(name, str) or not name:
        raise ValueError(f"analyzer {cls.__name__}: `name` must be a non-empty string")
    helpers = _helpers(name, cls)
    for attr in dir(cls):
        if attr.startswith("_") or attr in HOOKS or attr in helpers:
            continue
        if _is_method(getattr(cls, attr)):
            near = difflib.get_close_matches(attr, HOOKS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(
                f"analyzer {name!r}: public method {attr!r} is not a hook{hint}; hooks are "
                f"{', '.join(HOOKS)}: rename it, make it private (_{attr}) or list it in "
                "the class attribute `helpers`"
            )
    for hook, protocol in HOOKS.items():
        if hasattr(analyzer, hook):
            _check_signature(name, hook, getattr(analyzer, hook), protocol)
    found = AnalyzerHooks(
        name=name,
        flow_start=analyzer.flow_start if isinstance(analyzer, FlowStartHook) else None,
        wants=analyzer.wants if isinstance(analyzer, WantsHook) else None,
        wants_ports=_wants_ports(name, cls),
        packet=analyzer.packet if isinstance(analyzer, PacketHook) else None,
        flow_end=analyzer.flow_end if isinstance(analyzer, FlowEndHook) else None,
        facts=analyzer.facts if isinstance(analyzer, FactsHook) else None,
        frame=analyzer.frame if isinstance(analyzer, FrameHook) else None,
        frame_interest=_frame_interest(name, cls),
        done=analyzer.done if isinstance(analyzer, DoneHook) else None,
    )
    if all(getattr(found, hook) is None for hook in HOOKS):
        raise ValueError(f"analyzer {name!r} implements no hook; hooks are {', '.join(HOOKS)}")
    if found.frame is None and found.frame_interest is not None:
        raise ValueError(f"analyzer {name!r}: `frame_interest` without a 'frame' method")
    if found.wants is None and found.wants_ports is not None:
        raise ValueError(f"analyzer {name!r}: `wants_ports` without a 'wants' method")
    if found.wants is not None and found.packet is None:
        raise ValueError(
            f"analyzer {name!r}: method 'wants' without a 'packet' hook (wants only decides which "
            "flows' packets reach packet)"
        )
    return found


def _wants_ports(name: str, cls: type) -> frozenset[int] | None:
    """The class's `wants_ports` declaration (`WantsHook`), checked; None without one."""
    ports = getattr(cls, "wants_ports", None)
    if ports is None:
        return None
    if not isinstance(ports, frozenset) or not all(
        isinstance(p, int) and 0 <= p < 65536 for p in ports
    ):
        raise ValueError(f"analyzer {name!r}: `wants_ports` must be a frozenset of port numbers")
    return ports


def _frame_interest(name: str, cls: type) -> FrameInterest | None:
    """The class's `frame_interest` declaration (`FrameHook`), checked; None without one."""
    interest = getattr(cls, "frame_interest", None)
    if interest is None:
        return None
    if not isinstance(interest, FrameInterest) or not all(
        isinstance(oui, bytes) and len(oui) == 3 for oui in interest.vendor_ouis
    ):
        raise ValueError(
            f"analyzer {name!r}: `frame_interest` must be a FrameInterest of 3-byte OUIs"
        )
    return interest


def _helpers(name: str, cls: type) -> frozenset[str]:
    """The public non-hook methods `cls` declares in its `helpers` attribute, each checked."""
    declared = getattr(cls, "helpers", ())
    if isinstance(declared, str) or not all(isinstance(h, str) for h in declared):
        raise ValueError(f"analyzer {name!r}: `helpers` must be a tuple of method names")
    for helper in declared:
        if helper in HOOKS or helper.startswith("_"):
            raise ValueError(f"analyzer {name!r}: helper {helper!r} is a hook or private")
        if not _is_method(getattr(cls, helper, None)):
            raise ValueError(f"analyzer {name!r}: helper {helper!r} is not a method of it")
    return frozenset(declared)


def _is_method(value: object) -> bool:
    """A function defined in a class (plain, static or class method), not data or a property."""
    return inspect.isfunction(value) or inspect.ismethod(value)


def _check_signature(name: str, hook: str, method: object, protocol: type[Any]) -> None:
    """ValueError unless `method` can be called as the Protocol's `hook` is."""
    params = list(inspect.signature(getattr(protocol, hook)).parameters)[1:]  # without self
    expected = f"{hook}({', '.join(params)})"
    if not callable(method):
        raise ValueError(f"analyzer {name!r}: {hook!r} is not a method; the hook is {expected}")
    try:
        inspect.signature(method).bind(*params)
    except TypeError:
        raise ValueError(
            f"analyzer {name!r}: hook {hook!r} takes {inspect.signature(method)}; the hook is "
            f"{expected}"
        ) from None
    except ValueError:
        return  # no signature to read (a builtin): trust it
