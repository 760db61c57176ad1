"""A sink that appends each alert as an ECS document to a JSONL file."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dronewatch.api.sinks.config import SinkError
from dronewatch.judge.alert import Alert, to_ecs

if TYPE_CHECKING:
    from dronewatch.api.sinks.config import JsonlSinkConfig


class JsonlSink:
    def __init__(self, config: JsonlSinkConfig) -> None:
        self.config = config
        self.name = f"jsonl:{config.path}"
        path = Path(config.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: TextIO = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"jsonl sink {path}: {exc.strerror or exc}") from None

    async def send(self, alert: Alert) -> None:
        line = json.dumps(to_ecs(alert), sort_keys=True) + "\n"
        await asyncio.to_thread(self._write, line)

    def _write(self, line: str) -> None:
        self._fh.write(line)
        self._fh.flush()
        if self.config.fsync:
            os.fsync(self._fh.fileno())

    async def close(self) -> None:
        self._fh.close()
