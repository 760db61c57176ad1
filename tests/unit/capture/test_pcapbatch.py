"""The record walk of the bulk path: the C extension reads what a plain Python reader reads."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dronewatch.capture import pcapbatch
from dronewatch.fastpath import _fastpath

LIMIT = 65535

# A record: (declared captured length, bytes actually there); lengths past LIMIT are corruption.
RECORDS = st.lists(
    st.tuples(st.integers(0, 70000), st.integers(0, 80)),
    max_size=40,
)


def records(spec: list[tuple[int, int]], big: bool, nano: bool = False) -> bytes:
    out = bytearray()
    for i, (incl, have) in enumerate(spec):
        wire = incl + (i % 3)  # some records cut by the snap length
        frac = (i * 123_457) % (1_000_000_000 if nano else 1_000_000)
        out += struct.pack(">IIII" if big else "<IIII", 1_700_000_000 + i, frac, incl, wire)
        out += b"\xab" * min(incl, have)
    return bytes(out)


def reference(buf: bytes, pos: int, big: bool, nano: bool) -> tuple[tuple[object, ...], int]:
    """The columns of the records that lie whole in `buf` from `pos` on, read one by one as the
    per-packet reader does, and where the first record that does not starts."""
    fmt = ">IIII" if big else "<IIII"
    at: list[int] = []
    caplen: list[int] = []
    wirelen: list[int] = []
    ts: list[float] = []
    while pos + 16 <= len(buf):
        sec, frac, incl, wire = struct.unpack_from(fmt, buf, pos)
        if pos + 16 + incl > len(buf) or incl > LIMIT:
            break
        at.append(pos + 16)
        caplen.append(incl)
        wirelen.append(wire)
        ts.append(sec + frac * (1e-9 if nano else 1e-6))
        pos += 16 + incl
    truncated = sum(c < w for c, w in zip(caplen, wirelen, strict=True))
    return (at, caplen, wirelen, ts, sum(wirelen), truncated, len(at)), pos


def _columns(batch: pcapbatch.PcapBatch) -> tuple[object, ...]:
    return (
        batch.data_at.tolist(),
        batch.caplen.tolist(),
        batch.wirelen.tolist(),
        batch.ts.tolist(),
        batch.wire_bytes,
        batch.truncated,
        len(batch),
    )


@given(
    spec=RECORDS,
    big=st.booleans(),
    nano=st.booleans(),
    pos=st.integers(0, 40),
    cut=st.integers(0, 30),
)
def test_c_and_python_read_the_same_records(
    spec: list[tuple[int, int]], big: bool, nano: bool, pos: int, cut: int
) -> None:
    """The C reader finds the records a plain reader finds and gives the same columns, times
    included to the last bit, as the per-packet reader's `sec + frac * scale`."""
    buf = records(spec, big, nano)
    buf = buf[: max(0, len(buf) - cut)]
    pos = min(pos, len(buf))
    got_c, end_c = pcapbatch.read_batch(buf, pos, LIMIT, big, nano, 1, 7)
    want, end_py = reference(buf, pos, big, nano)
    assert end_c == end_py
    assert _columns(got_c) == want
    scale = 1e-9 if nano else 1e-6
    fmt = ">IIII" if big else "<IIII"
    for i in range(len(got_c)):
        sec, frac, incl, wire = struct.unpack_from(fmt, buf, got_c.data_at[i] - 16)
        raw = got_c.raw(i)
        assert (raw.ts, raw.wirelen, raw.frame) == (sec + frac * scale, wire, 8 + i)
        assert raw.data == buf[got_c.data_at[i] : got_c.data_at[i] + incl]


def test_stops_at_a_record_longer_than_the_limit() -> None:
    buf = records([(10, 10), (LIMIT + 1, 80), (10, 10)], big=False)
    batch, pos = pcapbatch.read_batch(buf, 0, LIMIT, False, False, 1, 0)
    assert batch.data_at.tolist() == [16]
    assert pos == 26


def test_walk_refuses_arrays_that_disagree() -> None:
    """A bad call is a clear error, never a read outside the buffer."""
    at = np.array([0], dtype=np.int64)

    def never(*args: object) -> None:
        raise AssertionError("no row may be walked")

    args = (1, 0, 0, 0.0, 0, 32, 1800.0, 5.0, never, never, never, never, never, never, never)
    one = np.array([1], dtype=np.int64)
    with pytest.raises(ValueError, match="different lengths"):
        _fastpath.walk(b"x" * 64, at, np.array([1, 2], dtype=np.int64), one, np.zeros(1), *args)
    with pytest.raises(ValueError, match="different lengths"):  # the wire lengths' column
        _fastpath.walk(b"x" * 64, at, one, np.array([1, 2], dtype=np.int64), np.zeros(1), *args)
    with pytest.raises(ValueError, match="different lengths"):  # the interfaces' column
        _fastpath.walk(b"x" * 64, at, one, one, np.zeros(1), 1, 0, np.zeros(2, np.int64), *args[3:])
    with pytest.raises(ValueError, match="outside the buffer"):
        _fastpath.walk(b"x" * 64, at, np.array([65], dtype=np.int64), one, np.zeros(1), *args)
