"""One JSONL file per record type (`flows.jsonl`, `dns.jsonl`, ...), Zeek-log style."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from dronewatch.exceptions import DronewatchError
from dronewatch.hooks import Record


def dumps(record: Record) -> str:
    """A record as one compact JSON line with sorted keys."""
    return json.dumps(record.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class JsonlWriter:
    """Writes each record to `<dir>/<record.log>.jsonl`, opening files on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DronewatchError(f"cannot create output directory {directory}: {exc}") from None
        self._files: dict[str, IO[str]] = {}
        self.counts: dict[str, int] = {}

    def write(self, record: Record) -> None:
        log = record.log
        fh = self._files.get(log)
        if fh is None:
            path = self.directory / f"{log}.jsonl"
            try:
                fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise DronewatchError(f"cannot write {path}: {exc}") from None
            self._files[log] = fh
            self.counts[log] = 0
        fh.write(dumps(record))
        fh.write("\n")
        self.counts[log] += 1

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()
