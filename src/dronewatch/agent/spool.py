"""A durable on-disk spool of batches waiting for the service (SQLite in WAL mode).

Batches go in with `put` and come out oldest first with `peek`; `ack` removes a batch once the
service has taken it. A batch survives a crash or a restart of the agent. When the spool grows
past its size limit the oldest batches are dropped, with a warning each time, and counted. A batch
the service refused outright (it will never take it) is moved aside with `quarantine`, kept with
the service's answer for an operator to read, so it does not block the batches behind it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dronewatch.exceptions import DronewatchError

logger = logging.getLogger(__name__)


class SpoolError(DronewatchError):
    """The spool directory cannot be used."""


@dataclass(frozen=True, slots=True)
class Spooled:
    seq: int
    batch_id: str
    records: list[dict[str, Any]]


class Spool:
    """Batches in order, on disk, until acknowledged."""

    def __init__(self, directory: Path, max_bytes: int = 512 * 1024 * 1024) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                directory / "spool.db", check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "batch_id TEXT UNIQUE NOT NULL, body BLOB NOT NULL, size INTEGER NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS quarantine (seq INTEGER PRIMARY KEY, "
                "batch_id TEXT NOT NULL, body BLOB NOT NULL, error TEXT NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"spool directory {directory}: {exc}") from None
        self.directory = directory
        self.max_bytes = max_bytes
        self.dropped = 0
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)

    def put(self, batch_id: str, records: list[dict[str, Any]]) -> None:
        """Keep a batch (a batch id already spooled is ignored)."""
        body = zlib.compress(json.dumps(records, separators=(",", ":"), default=str).encode())
        with self._ready:
            self._db.execute(
                "INSERT OR IGNORE INTO batches (batch_id, body, size) VALUES (?, ?, ?)",
                (batch_id, body, len(body)),
            )
            self._trim()
            self._ready.notify_all()

    def _trim(self) -> None:
        total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM batches").fetchone()[0]
        while total > self.max_bytes:
            row = self._db.execute("SELECT seq, size FROM batches ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                break
            self._db.execute("DELETE FROM batches WHERE seq = ?", (row[0],))
            total -= row[1]
            self.dropped += 1
            logger.warning(
                "spool over its limit of %d bytes: dropped the oldest batch (%d dropped so far); "
                "the service has been unreachable too long",
                self.max_bytes,
                self.dropped,
            )

    def peek(self, timeout: float | None = None) -> Spooled | None:
        """The oldest batch, waiting up to `timeout` seconds for one."""
        with self._ready:
            row = self._oldest()
            if row is None and timeout:
                self._ready.wait(timeout)
                row = self._oldest()
        if row is None:
            return None
        return Spooled(row[0], row[1], json.loads(zlib.decompress(row[2])))

    def _oldest(self) -> tuple[int, str, bytes] | None:
        row = self._db.execute(
            "SELECT seq, batch_id, body FROM batches ORDER BY seq LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), bytes(row[2]))

    def ack(self, seq: int) -> None:
        """Forget a batch the service has taken."""
        with self._lock:
            self._db.execute("DELETE FROM batches WHERE seq = ?", (seq,))

    def quarantine(self, seq: int, error: str) -> None:
        """Move a batch the service refused aside, with the service's answer."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO quarantine (seq, batch_id, body, error) "
                "SELECT seq, batch_id, body, ? FROM batches WHERE seq = ?",
                (error, seq),
            )
            self._db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            self._db.execute("COMMIT")

    def quarantined(self) -> list[tuple[str, str]]:
        """(batch id, the service's answer) of every batch moved aside, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT batch_id, error FROM quarantine ORDER BY seq"
            ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def pending(self) -> tuple[int, int]:
        """Batches and bytes waiting."""
        with self._lock:
            n, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM batches"
            ).fetchone()
        return int(n), int(size)

    def close(self) -> None:
        with self._lock:
            self._db.close()
