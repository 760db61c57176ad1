"""Types of the C extension `dronewatch._fastpath` (src/dronewatch/_fastpath.c)."""

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from dronewatch.flow import Flow

def record_offsets(buf: bytes, pos: int, limit: int, big_endian: bool, /) -> tuple[bytes, int]: ...
def walk(
    buf: bytes,
    data_at: npt.NDArray[np.int64],
    caplen: npt.NDArray[np.int64],
    ts: npt.NDArray[np.float64],
    l3: int,
    next_sweep: float,
    ended: int,
    limit: int,
    active_s: float,
    lookup: Callable[[bytes], Flow | None],
    handle: Callable[[int], tuple[float, int, bool]],
    follow: Callable[[int, Flow, bool, int, int, int, int], tuple[float, int]],
    sweep: Callable[[float], tuple[float, int]],
    counted: Callable[[int, float], None],
    /,
) -> float: ...
