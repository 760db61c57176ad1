"""One JSONL file per record type (`flows.jsonl`, `dns.jsonl`, ...), Zeek-log style."""

from __future__ import annotations

import inspect
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from dronewatch.core.hooks import Record, field_names
from dronewatch.exceptions import DronewatchError
from dronewatch.fastpath import native
from dronewatch.judge.alert import Alert, to_ecs, to_ocsf

logger = logging.getLogger(__name__)

_LINE_SAFE = {
    c: f"\\u{c:04x}" for c in (0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0xD800, 0xE000))
}
"""Characters JSON may hold raw that break a JSONL file's lines or drive a terminal: DEL, the
C1 controls (NEL U+0085 ends a line for `str.splitlines`, CSI U+009B starts an escape sequence)
and the line and paragraph separators; and lone surrogates, which no UTF-8 file holds. JSON
escapes C0 controls itself."""


def json_line(doc: Any) -> str:
    """`doc` as one compact JSON line with sorted keys: text as it is, but every character that
    could end the line or reach a terminal as a control, and every lone surrogate, escaped
    (`\\u....`), so the line is valid UTF-8, reads back to the same values and stays one line
    for any reader."""
    text = _ENCODE(doc)
    if text.isascii() and "\x7f" not in text:
        return text  # nothing to escape: most lines
    return text.translate(_LINE_SAFE)


_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
"""`json.dumps` with the arguments `json_line` gives it, made once (`dumps` makes a new encoder
for every call that passes any argument)."""


def record_line(record: Record) -> bytes:
    """A record as one compact JSON line with sorted keys, UTF-8 with its newline, as a file
    holds it: `json_line` of its `to_dict`, made by the C extension where it is built
    (`_fastpath.json_record`), which hands back any record holding a value it does not write
    (then made here, the same way as without C)."""
    cls = type(record)
    fields = _SORTED_FIELDS.get(cls)
    if fields is None:
        fields = _SORTED_FIELDS[cls] = _sorted_fields(cls)
    if fields[0]:
        line = _json_record(record, *fields)  # type: ignore[misc]  # names: C is used
        if line is not None:
            return line
    return (json_line(record.to_dict()) + "\n").encode()


def dumps(record: Record) -> str:
    """A record as one compact JSON line with sorted keys (`record_line`, as text)."""
    return record_line(record)[:-1].decode()


def _sorted_fields(cls: type[Record]) -> tuple[tuple[str, ...], tuple[object, ...]]:
    """The field names the C extension writes for records of `cls`, sorted, and the slot of
    each (its member descriptor, read directly; None where it is not a slot); empty where C is
    not used or the class makes its own `to_dict`."""
    if _json_record is None or cls.to_dict is not Record.to_dict:
        return (), ()
    names = tuple(sorted(field_names(cls)))
    return names, tuple(inspect.getattr_static(cls, name, None) for name in names)


_SORTED_FIELDS: dict[type, tuple[tuple[str, ...], tuple[object, ...]]] = {}

_c = native()
_json_record: Callable[[Record, tuple[str, ...], tuple[object, ...]], bytes | None] | None = (
    _c.json_record if _c is not None else None
)


FILE_BUFFER_BYTES = 1 << 20
"""The output buffer of each file when the records come from capture files, which are read to
their end: fewer, larger writes (2-3 % of a DNS-heavy capture's time went to the system calls
of the default buffer). Records read from stdin, perhaps a live pipe, keep the default, so
they reach the files a few KB at a time rather than a MB."""


class JsonlWriter:
    """Writes each record to `<dir>/<record.log>.jsonl`, opening files on first use; the lines
    are UTF-8 made by `record_line`, written as they are, through a buffer of `buffer_bytes` per
    file (None: Python's default, a few KB).

    A file that cannot be written (a full disk, a removed directory) is reported at once in the
    log and stops the writing of every file (a later line could land after a cut one); `close`
    then raises DronewatchError saying which file, why, and how many records were not written."""

    def __init__(self, directory: Path, buffer_bytes: int | None = None) -> None:
        self.directory = directory
        self.buffer_bytes = buffer_bytes if buffer_bytes is not None else -1
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DronewatchError(f"cannot create output directory {directory}: {exc}") from None
        self._files: dict[str, IO[bytes]] = {}
        self.counts: dict[str, int] = {}
        self.error: str | None = None
        """Why writing stopped (the first file that could not be written), or None."""
        self.not_written = 0
        """Records given after writing stopped, and those in the write that failed."""

    def _open(self, stem: str) -> IO[bytes]:
        fh = self._files.get(stem)
        if fh is None:
            fh = self._files[stem] = self._new_file(stem)
            self.counts[stem] = 0
        return fh

    def _new_file(self, stem: str) -> IO[bytes]:
        return open(self.directory / f"{stem}.jsonl", "wb", buffering=self.buffer_bytes)  # noqa: SIM115 - closed in close()

    def _put(self, stem: str, data: bytes, count: int) -> None:
        """Append `count` lines (`data`) to `<stem>.jsonl`, unless writing stopped."""
        if self.error is not None:
            self.not_written += count
            return
        try:
            self._open(stem).write(data)
        except OSError as exc:
            self._stop(stem, exc, count)
            return
        self.counts[stem] += count

    def _stop(self, stem: str, exc: OSError, count: int) -> None:
        self.error = f"cannot write {self.directory / f'{stem}.jsonl'}: {exc.strerror or exc}"
        self.not_written += count
        logger.error("%s; no more records are written", self.error)

    def write_lines(self, stem: str, lines: bytes, count: int) -> None:
        """Append `count` lines already made (`record_line`, by `RecordLines` or the processes
        of a shared capture) to `<stem>.jsonl`."""
        if count:
            self._put(stem, lines, count)

    def write(self, record: Record) -> None:
        stem = record.log
        fh = self._files.get(stem)
        if fh is None or self.error is not None:
            self._put(stem, record_line(record), 1)  # its file opened, or counted as not written
            return
        try:
            fh.write(record_line(record))
        except OSError as exc:
            self._stop(stem, exc, 1)
            return
        self.counts[stem] += 1

    def close(self) -> None:
        """Close every file; DronewatchError if any record could not be written."""
        for stem, fh in self._files.items():
            try:
                fh.close()  # writes what its buffer holds
            except OSError as exc:
                if self.error is None:
                    self.error = f"cannot write {self.directory / f'{stem}.jsonl'}: "
                    self.error += str(exc.strerror or exc)
        self._files.clear()
        if self.error is not None:
            lost = f" ({self.not_written:,} records not written, and the lines still buffered)"
            raise DronewatchError(self.error + (lost if self.not_written else ""))


class AlertExportWriter(JsonlWriter):
    """A JsonlWriter that also writes every alert as ECS (`alerts.ecs.jsonl`) and as an OCSF
    Detection Finding (`alerts.ocsf.jsonl`)."""

    def write(self, record: Record) -> None:
        JsonlWriter.write(self, record)
        if isinstance(record, Alert):
            self._line("alerts.ecs", to_ecs(record))
            self._line("alerts.ocsf", to_ocsf(record))

    def _line(self, stem: str, doc: dict[str, Any]) -> None:
        self._put(stem, (json_line(doc) + "\n").encode(), 1)


class RecordLines(AlertExportWriter):
    """The lines an `AlertExportWriter` writes, kept in memory by file stem: a worker process of
    `analyze --workers` makes them and the parent's writer appends them, in file order."""

    def __init__(self) -> None:  # no directory: nothing is written here
        self._files: dict[str, IO[bytes]] = {}
        self.counts: dict[str, int] = {}
        self.error: str | None = None
        self.not_written = 0

    def _new_file(self, stem: str) -> IO[bytes]:
        return io.BytesIO()

    def lines(self) -> dict[str, tuple[bytes, int]]:
        """Per file stem: the text of its lines and how many there are."""
        return {
            stem: (fh.getvalue(), self.counts[stem])  # type: ignore[attr-defined]
            for stem, fh in self._files.items()
        }
