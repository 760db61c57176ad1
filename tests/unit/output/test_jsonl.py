"""JSONL records keep wire text exactly, one line per record for any reader."""

from __future__ import annotations

import errno
import inspect
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.dhcp import DhcpRecord
from dronewatch.core.hooks import Record
from dronewatch.exceptions import DronewatchError
from dronewatch.fastpath import _fastpath
from dronewatch.output.jsonl import (
    FILE_BUFFER_BYTES,
    AlertExportWriter,
    dumps,
    json_line,
    record_line,
)

HOSTILE = "\x1b[2J\r\n\x00\x7f\x85\x9b2J\u2028\u2029\u202e<script>|=\\"


def test_json_line_escapes_lone_surrogates() -> None:
    """A lone surrogate (text decoded with `surrogateescape`, say) is escaped, so the line is
    valid UTF-8 and reads back to the same text."""
    line = json_line({"v": "a\udcff\ud83d"})
    assert line == '{"v":"a\\udcff\\ud83d"}'
    assert json.loads(line.encode("utf-8")) == {"v": "a\udcff\ud83d"}


def test_json_line_escapes_line_breaks_and_c1_controls() -> None:
    """NEL, the C1 CSI, DEL, U+2028 and U+2029 are escaped like C0 controls are; other text
    (accents, a bidi override) stays as it is and the line reads back to the same value."""
    line = json_line({"v": HOSTILE, "é": "無人機"})
    assert line == (
        '{"v":"\\u001b[2J\\r\\n\\u0000\\u007f\\u0085\\u009b2J\\u2028\\u2029\u202e<script>|=\\\\",'
        '"é":"無人機"}'
    )
    assert json.loads(line) == {"v": HOSTILE, "é": "無人機"}


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_is_one_line_that_reads_back(text: str) -> None:
    """Whatever the text, its JSON line splits into one line by `str.splitlines` and parses
    back to the same text."""
    line = json_line({"t": text})
    assert line.splitlines() == [line]
    assert json.loads(line) == {"t": text}


def _dhcp(i: int, hostname: str | None = None) -> DhcpRecord:
    return DhcpRecord(
        ts=1.0 + i,
        uid=f"C{i}",
        orig_h="0.0.0.0",
        orig_p=68,
        resp_h="255.255.255.255",
        resp_p=67,
        msg_type="DISCOVER",
        trans_id=i,
        client_mac="02:00:00:00:00:01",
        hostname=hostname,
    )


def test_writer_keeps_a_hostile_hostname_on_its_line(tmp_path: Path) -> None:
    """A DHCP record whose hostname holds every line separator is one line of dhcp.jsonl, and
    reading the file line by line gives the hostname back exactly."""
    writer = AlertExportWriter(tmp_path)
    for i in range(2):
        writer.write(_dhcp(i, HOSTILE))
    writer.close()
    lines = (tmp_path / "dhcp.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(ln)["hostname"] for ln in lines] == [HOSTILE, HOSTILE]


@dataclass(frozen=True, slots=True)
class _Sample(Record):
    """A record of every kind of value a record may hold."""

    log = "sample"
    zeta: Any = None
    alpha: Any = None
    mid: Any = None


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # NaN and the infinities too: json writes NaN, Infinity, -Infinity
    | st.text()
    | st.text(st.characters(codec=None, categories=None), max_size=8)  # lone surrogates, C1
    | st.sampled_from(("\x85\u2028", "caf\u00e9 \U0001f681", "\ud83d", "a\x7fb", "\u00e9" * 3000))
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        | st.dictionaries(st.integers(0, 9), inner, min_size=1, max_size=2)
    ),  # left to json
    max_leaves=12,
)


@pytest.mark.parametrize("buffer_bytes", [None, FILE_BUFFER_BYTES])
def test_writer_buffers_as_asked_and_loses_nothing(
    tmp_path: Path, buffer_bytes: int | None
) -> None:
    """200 KB of records: with the default buffer most are in the file before it is closed,
    with the large one (capture files) none; after `close` every line is there, in order."""
    writer = AlertExportWriter(tmp_path, buffer_bytes)
    for i in range(1000):
        writer.write(_dhcp(i))
    size = (tmp_path / "dhcp.jsonl").stat().st_size
    assert size == 0 if buffer_bytes else size > 150_000
    writer.close()
    lines = (tmp_path / "dhcp.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(ln)["trans_id"] for ln in lines] == list(range(1000))


def test_analyze_buffers_files_but_not_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`analyze FILE` writes through the large buffers; `analyze -` (perhaps a live pipe) keeps
    the default, so its records reach the files a few KB at a time."""
    import sys

    from dronewatch.cli import app

    made: list[int | None] = []

    class Spy(AlertExportWriter):
        def __init__(self, directory: Path, buffer_bytes: int | None = None) -> None:
            made.append(buffer_bytes)
            super().__init__(directory, buffer_bytes)

    monkeypatch.setattr(app, "AlertExportWriter", Spy)
    capture = Path(__file__).parents[3] / "pcaps" / "lab" / "dns.pcap"
    assert app.main(["analyze", "--quiet", "--out", str(tmp_path / "a"), str(capture)]) == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(capture.read_bytes())))
    assert app.main(["analyze", "--quiet", "--out", str(tmp_path / "b"), "-"]) == 0
    assert made == [FILE_BUFFER_BYTES, None]
    assert (tmp_path / "a" / "dns.jsonl").read_bytes() == (
        tmp_path / "b" / "dns.jsonl"
    ).read_bytes()


@settings(max_examples=400, deadline=None)
@given(_VALUES, _VALUES, _VALUES, st.floats(allow_nan=False))
def test_record_line_is_json_line_of_its_dict(zeta: Any, alpha: Any, mid: Any, ts: float) -> None:
    """`dumps` (the C extension's line where it is built) writes every record exactly as
    `json_line(record.to_dict())` does: None fields left out, keys sorted at every level,
    floats as repr, the line-breaking characters escaped; values it leaves to json (a dict with
    int keys) come out the same through the fallback."""
    record = _Sample(ts=ts, zeta=zeta, alpha=alpha, mid=mid)
    line = dumps(record)
    assert line == json_line(record.to_dict())
    assert line.splitlines() == [line]
    assert record_line(record) == (line + "\n").encode()  # strict UTF-8: no lone surrogate


_TIMES = st.builds(  # a decimal's nearest double, and its neighbours, which are not
    lambda sec, micro, sign, places, steps: _step(sign * round(sec + micro / 1e6, places), steps),
    st.integers(0, 2**33),
    st.integers(0, 999_999),
    st.sampled_from((1, -1)),
    st.integers(0, 9),
    st.sampled_from((0, 0, 0, -1, 1, -2, 2)),
) | st.builds(  # either side of the sizes and powers of two where the short way stops
    lambda base, steps: _step(base, steps),
    st.sampled_from((1e-4, 1e-3, 0.5, 1.0, 2.0**20, 2.0**31, 2.0**32, 2.0**33)),
    st.integers(-4, 4),
)


def _step(x: float, steps: int) -> float:
    """The float `steps` doubles above `x` (below, for a negative count)."""
    for _ in range(abs(steps)):
        x = math.nextafter(x, math.inf if steps > 0 else -math.inf)
    return x


@settings(max_examples=3000, deadline=None)
@given(_TIMES)
def test_c_line_writes_capture_times_as_repr(ts: float) -> None:
    """Capture times, durations and round trips, decimals of a few places (written the short
    way in C where that gives repr's digits), and the floats either side of where that stops,
    come out as `json.dumps` writes them."""
    assert dumps(_Sample(ts=ts)) == json_line(_Sample(ts=ts).to_dict())
    assert json.loads(dumps(_Sample(ts=ts)))["ts"] == ts


def test_c_line_writes_what_it_can_and_hands_back_the_rest() -> None:
    """The C encoder makes the line itself for wire text, numbers and nested lists and str-keyed
    dicts, and answers None (the caller's fallback) for a value json would convert (an int key,
    an object of another type)."""
    c = _fastpath
    names = ("alpha", "mid", "ts", "zeta")
    record = _Sample(ts=1.5, zeta={"b": [1, (2.0, None)], "a": HOSTILE}, alpha=True, mid=None)
    line = (json_line(record.to_dict()) + "\n").encode()
    assert c.json_record(record, names) == line
    assert c.json_record(_Sample(ts=0.0, mid={1: "x"}), names) is None
    assert c.json_record(_Sample(ts=0.0, mid=object()), names) is None
    with pytest.raises(AttributeError):
        c.json_record(record, ("nope",))
    # Read from the slots through their member descriptors: the same line; a descriptor of
    # another class is not trusted (looked up by name instead).
    members = tuple(inspect.getattr_static(_Sample, n) for n in names)
    assert c.json_record(record, names, members) == line
    other = (inspect.getattr_static(_Other, "alpha"),) * len(names)
    assert c.json_record(record, names, other) == line
    with pytest.raises(TypeError, match="one member per name"):
        c.json_record(record, names, members[:1])


@dataclass(frozen=True, slots=True)
class _Other(Record):
    alpha: Any = None


class _FullDisk(io.BytesIO):
    """A file on a disk that holds `room` bytes: writing past them fails as a full disk does."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_full_disk_stops_the_writer_and_says_what_was_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first write that fails is logged at once; nothing more is written to any file (no
    line lands after a cut one); `close` raises a DronewatchError naming the file, the reason and
    the records not written."""
    files: dict[str, _FullDisk] = {}

    class Writer(AlertExportWriter):
        def _new_file(self, stem: str) -> IO[bytes]:
            files[stem] = _FullDisk(1_000)
            return files[stem]

    writer = Writer(tmp_path)
    line = len(record_line(_dhcp(0)))
    for i in range(10):
        writer.write(_dhcp(i))
    assert writer.counts["dhcp"] == 1_000 // line
    assert "dhcp.jsonl: No space left on device; no more records are written" in caplog.text
    assert writer.not_written == 10 - 1_000 // line
    with pytest.raises(
        DronewatchError, match=r"dhcp\.jsonl: No space left on device \(\d+ records"
    ):
        writer.close()


def test_analyze_on_a_full_disk_ends_with_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`analyze --out` whose files cannot be written: exit code 2, one line saying why, no
    traceback, and the summary's records still counted by the run."""
    from dronewatch.cli import app

    monkeypatch.setattr(AlertExportWriter, "_new_file", lambda self, stem: _FullDisk(100))
    capture = Path(__file__).parents[3] / "pcaps" / "lab" / "dns.pcap"
    assert (
        app.main(["analyze", "--quiet", "--no-progress", "--out", str(tmp_path), str(capture)]) == 2
    )
    err = capsys.readouterr().err
    assert "No space left on device" in err and "records not written" in err
    assert "Traceback" not in err
