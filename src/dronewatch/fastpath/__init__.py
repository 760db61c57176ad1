"""The compiled path: the C walk of capture batches and the drone links' frame counters.

`dronewatch.fastpath._fastpath` is built by the install where a C compiler and the Python headers
are present (it is declared optional). Where it is not built, or `DRONEWATCH_NO_C` is set to any
non-empty value, every packet goes the per-packet path (`dronewatch.core.engine`) and the
drone-link analyzers count frames with their Python twins: the records are the same, only slower.
This module is the one place that decides which path runs (`native()`).

The C walk reads and writes a few `Flow` attributes by name (`FLOW_FIELDS`); importing this
module checks that `Flow` still has each of them, so a rename fails at once, not mid-capture. It
also makes the decoder's `Packet` of the rows it hands to Python, filling every field
(`PACKET_FIELDS`), with the `Tunnel` of a packet out of an encapsulation: importing this module
gives it the classes and `Packet`'s slots, and fails when the two lists of fields, or the C walk's
encapsulations and `TUNNEL_KINDS`, differ.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from types import ModuleType
from typing import TypeVar, cast

from dronewatch.core.flow import TUNNEL_KINDS, Flow, Packet, Tunnel

try:
    from dronewatch.fastpath import _fastpath as _built
except ImportError:  # not built (no C compiler at install time)
    _built = None  # type: ignore[assignment]

NO_C_ENV = "DRONEWATCH_NO_C"
"""Set to run without the C extension: the per-packet path and the Python frame counters."""

_T = TypeVar("_T")


def check_flow_fields(module: ModuleType) -> None:
    """Raise ImportError if `Flow` lacks an attribute the C walk reads or writes by name."""
    missing = [name for name in module.FLOW_FIELDS if not hasattr(Flow, name)]
    if missing:
        raise ImportError(
            f"dronewatch.fastpath._fastpath reads Flow.{', Flow.'.join(missing)}, which Flow no "
            "longer has: change the C walk with the Flow class"
        )


def setup_packets(module: ModuleType) -> None:
    """Give the C walk the `Packet` class and its slots, and the `Tunnel` class; ImportError if
    the fields the walk fills are not exactly `Packet`'s, or the encapsulations it names not
    exactly `TUNNEL_KINDS`."""
    fields = {f.name for f in dataclasses.fields(Packet)}
    if set(module.PACKET_FIELDS) != fields:
        raise ImportError(
            "dronewatch.fastpath._fastpath fills the Packet fields "
            f"{sorted(module.PACKET_FIELDS)}, Packet has {sorted(fields)}: change the C walk "
            "with the Packet class"
        )
    if set(module.TUNNEL_KINDS) != set(TUNNEL_KINDS):
        raise ImportError(
            "dronewatch.fastpath._fastpath names the tunnels "
            f"{sorted(module.TUNNEL_KINDS)}, Tunnel.kind is one of {sorted(TUNNEL_KINDS)}: "
            "change the C walk with the decoder"
        )
    module.packet_setup(
        Packet,
        tuple(inspect.getattr_static(Packet, name) for name in module.PACKET_FIELDS),
        Tunnel,
    )


if _built is not None:
    check_flow_fields(_built)
    setup_packets(_built)


def native() -> ModuleType | None:
    """The C extension where it is built and not turned off by `NO_C_ENV`, else None."""
    if _built is None or os.environ.get(NO_C_ENV):
        return None
    return _built


def c_enabled() -> bool:
    """True when the compiled path runs (see `native`)."""
    return native() is not None


def counter_type(name: str, twin: type[_T]) -> type[_T]:
    """The C frame counter `name` of the extension, or `twin`, its Python twin (same constructor,
    `feed` and attributes), where C is not used."""
    module = native()
    if module is None:
        return twin
    return cast("type[_T]", getattr(module, name))
