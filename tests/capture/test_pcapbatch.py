"""The record walk of the bulk path: the C extension and its Python stand-in agree."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dronewatch import _fastpath
from dronewatch.capture import pcapbatch

LIMIT = 65535

# A record: (declared captured length, bytes actually there); lengths past LIMIT are corruption.
RECORDS = st.lists(
    st.tuples(st.integers(0, 70000), st.integers(0, 80)),
    max_size=40,
)


def records(spec: list[tuple[int, int]], big: bool) -> bytes:
    out = bytearray()
    for incl, have in spec:
        out += struct.pack(">IIII" if big else "<IIII", 1, 2, incl, incl)
        out += b"\xab" * min(incl, have)
    return bytes(out)


@given(spec=RECORDS, big=st.booleans(), pos=st.integers(0, 40), cut=st.integers(0, 30))
def test_c_and_python_find_the_same_records(
    spec: list[tuple[int, int]], big: bool, pos: int, cut: int
) -> None:
    buf = records(spec, big)
    buf = buf[: max(0, len(buf) - cut)]
    pos = min(pos, len(buf))
    got_c = pcapbatch.record_offsets(buf, pos, LIMIT, big)
    c_fn = pcapbatch._c_record_offsets
    try:
        pcapbatch._c_record_offsets = None
        got_py = pcapbatch.record_offsets(buf, pos, LIMIT, big)
    finally:
        pcapbatch._c_record_offsets = c_fn
    assert got_c[1] == got_py[1]
    assert got_c[0].tolist() == got_py[0].tolist()


def test_stops_at_a_record_longer_than_the_limit() -> None:
    buf = records([(10, 10), (LIMIT + 1, 80), (10, 10)], big=False)
    offsets, pos = pcapbatch.record_offsets(buf, 0, LIMIT, False)
    assert offsets.tolist() == [0]
    assert pos == 26


def test_walk_refuses_arrays_that_disagree() -> None:
    """A bad call is a clear error, never a read outside the buffer."""
    at = np.array([0], dtype=np.int64)

    def never(*args: object) -> None:
        raise AssertionError("no row may be walked")

    args = (0, 0.0, 0, 32, 1800.0, never, never, never, never, never)
    with pytest.raises(ValueError, match="different lengths"):
        _fastpath.walk(b"x" * 64, at, np.array([1, 2], dtype=np.int64), np.zeros(1), *args)
    with pytest.raises(ValueError, match="outside the buffer"):
        _fastpath.walk(b"x" * 64, at, np.array([65], dtype=np.int64), np.zeros(1), *args)
