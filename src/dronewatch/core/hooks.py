"""The hooks an analyzer may implement, and the context it gets to report through."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from dronewatch.core.flow import Flow, Packet


@dataclass(frozen=True, slots=True)
class Record:
    """Base of every log record; subclasses set `log` to the JSONL file stem."""

    log: ClassVar[str] = ""
    ts: float
    """Network time of the packet the record describes."""

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data; fields that are None are left out."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


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
    return {
        "uid": flow.uid,
        "orig_h": flow.orig_ip,
        "orig_p": flow.orig_p,
        "resp_h": flow.resp_ip,
        "resp_p": flow.resp_p,
    }


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


@runtime_checkable
class Analyzer(Protocol):
    """An analyzer implements any subset of: flow_start, packet, flow_end, frame, done."""

    name: str


class FlowStartHook(Protocol):
    def flow_start(self, flow: Flow, pkt: Packet) -> None: ...


class WantsHook(Protocol):
    """Called once as a flow starts: False spares the analyzer every packet of the flow. Decide
    on the protocol and ports only, which never change during a flow."""

    def wants(self, flow: Flow) -> bool: ...


class PacketHook(Protocol):
    """Called for payload-carrying packets while the flow is inspected, and after that for the
    analyzers that follow it. The flow's packet and byte counters may lag behind here (the bulk
    path adds them per batch); they are exact in flow_end."""

    def packet(self, flow: Flow, pkt: Packet) -> None: ...


class FlowEndHook(Protocol):
    def flow_end(self, flow: Flow) -> None: ...


class FrameHook(Protocol):
    """Called for frames that are not IP (802.11 management frames)."""

    def frame(self, pkt: Packet) -> None: ...


class DoneHook(Protocol):
    """Called once when the source is exhausted, after every flow has ended."""

    def done(self) -> None: ...
