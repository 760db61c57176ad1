"""The C extension `dronewatch._fastpath`, where the install built it and it is not turned off.

`DRONEWATCH_NUMPY_WALK=1` (any value but empty) runs without it, as on a machine without a C
compiler: the bulk path walks its batches with numpy, and the drone-link analyzers count frames
with their Python counters. The records are the same either way; the tests run both.
"""

from __future__ import annotations

import os
from typing import TypeVar, cast

try:
    from dronewatch import _fastpath
except ImportError:  # not built (no C compiler at install time)
    _fastpath = None  # type: ignore[assignment]

NUMPY_WALK_ENV = "DRONEWATCH_NUMPY_WALK"
"""Set to run without the C extension (the numpy walk and the Python frame counters)."""

_T = TypeVar("_T")


def c_enabled() -> bool:
    """True when the extension is built and not turned off by NUMPY_WALK_ENV."""
    return _fastpath is not None and not os.environ.get(NUMPY_WALK_ENV)


def counter_type(name: str, twin: type[_T]) -> type[_T]:
    """The C frame counter `name` of the extension, or `twin`, its Python twin (same constructor,
    `feed` and attributes), where C is not used."""
    if not c_enabled():
        return twin
    return cast("type[_T]", getattr(_fastpath, name))
