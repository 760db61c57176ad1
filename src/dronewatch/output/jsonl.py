"""One JSONL file per record type (`flows.jsonl`, `dns.jsonl`, ...), Zeek-log style."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from dronewatch.alert import Alert, to_ecs, to_ocsf
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

    def _open(self, stem: str) -> IO[str]:
        fh = self._files.get(stem)
        if fh is None:
            path = self.directory / f"{stem}.jsonl"
            try:
                fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise DronewatchError(f"cannot write {path}: {exc}") from None
            self._files[stem] = fh
            self.counts[stem] = 0
        return fh

    def write(self, record: Record) -> None:
        fh = self._open(record.log)
        fh.write(dumps(record))
        fh.write("\n")
        self.counts[record.log] += 1

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()


class AlertExportWriter(JsonlWriter):
    """A JsonlWriter that also writes every alert as ECS (`alerts.ecs.jsonl`) and as an OCSF
    Detection Finding (`alerts.ocsf.jsonl`)."""

    def write(self, record: Record) -> None:
        super().write(record)
        if isinstance(record, Alert):
            self._line("alerts.ecs", to_ecs(record))
            self._line("alerts.ocsf", to_ocsf(record))

    def _line(self, stem: str, doc: dict[str, Any]) -> None:
        fh = self._open(stem)
        fh.write(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        fh.write("\n")
        self.counts[stem] += 1
