"""Ingest apart from reads: a bounded number of batches in hand at once, applied one at a time
by a writer of their own (a process, or a thread), and a 503 with Retry-After for a batch
beyond the bound.

SQLite takes one writer at a time, and on PostgreSQL the alert sequence counter serialises
writers too, so more writers only wait on each other's locks. Before, every batch took a thread
of the pool the reads use, and with it a database connection; a busy ingest left the reads
waiting behind it (bench/POLL.md). Now a batch holds one of `ingest_queue` slots from the moment
its headers are read until it is answered; a batch that finds every slot taken is answered 503
at once, before its body is read or parsed, so a flood costs the service little more than the
bytes on the wire, and agents and replays send it again from their spool (nothing is lost).
Admitted batches are applied in order by the writer, and each is answered only once its
transaction has committed, as before.

The writer is a process of its own by default (`ingest_writer: process`), started at the first
batch from a fork server that has the service's modules loaded: checking records and judging
are Python work, and in a thread they would hold the interpreter lock the reads and the event
loop need. The service's process keeps the counting (metrics) and the sinks. A database in
memory cannot be shared with a process, so it always gets a writer thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from dronewatch.api.auth import AccessTable
from dronewatch.api.ingest import Ingestor, IngestResult
from dronewatch.api.service import Service, apply_batch, open_ingestor, store_config
from dronewatch.api.settings import Settings
from dronewatch.exceptions import RecordError

logger = logging.getLogger(__name__)

RETRY_AFTER_MAX_S = 60
"""The longest a batch refused for want of a slot is told to wait before it is sent again (at
least 1 s; as long as the writer takes to write the batches in hand)."""
PRELOAD = ["dronewatch.api.ingest_queue"]
"""What the fork server imports once, so that a writer process starts in a fraction of a
second instead of importing the service again."""

WRITER_NICE = 10
"""How far the writer process steps back (its niceness): when the CPU is short, the service's
process (the reads) comes first and ingest waits, its backlog held by the 503s."""

_writer: Ingestor | None = None
"""In a writer process: its Ingestor."""


def _start_writer(settings: Settings, config: dict[str, Any]) -> None:
    """In a new writer process: step back behind the reads, open the database and the rule
    packs."""
    global _writer
    # Ctrl-C in a terminal reaches every process of the group: the service stops the writer
    # itself, once the batches in hand are written.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):
        os.nice(WRITER_NICE)
    _writer = open_ingestor(settings, config)


def _ready() -> None:
    """In the writer process: nothing (a first call waits until the process is up)."""


def _write(
    batch_id: str, agent: str, records: Sequence[dict[str, Any]], discovered_ldm: bool | None
) -> tuple[tuple[IngestResult, int] | list[dict[str, Any]], float]:
    """In the writer process: apply a batch. Returns ((result, drops), or the schema errors of
    a refused batch (RecordError does not cross a process boundary); seconds it took)."""
    if _writer is None:
        raise RuntimeError("writer process not started")
    started = time.perf_counter()
    try:
        outcome: tuple[IngestResult, int] | list[dict[str, Any]] = apply_batch(
            _writer, batch_id, agent, records, discovered_ldm
        )
    except RecordError as exc:
        outcome = exc.errors
    return outcome, time.perf_counter() - started


def in_memory(url: str) -> bool:
    """Whether a database URL names a SQLite database in memory (one per connection or process)."""
    if not url.startswith("sqlite"):
        return False
    path = url.split("///", 1)[1] if "///" in url else ""
    return path in ("", ":memory:") or "mode=memory" in url


class IngestQueue:
    """At most `settings.ingest_queue` batches in hand at once, applied one at a time."""

    def __init__(self, settings: Settings, service: Service) -> None:
        self.settings = settings
        self.service = service
        self.size = settings.ingest_queue
        self.process = settings.ingest_writer == "process" and not in_memory(settings.database_url)
        """Whether batches are applied by a writer process (else by a writer thread)."""
        self.refused = 0
        """Batches answered 503 because every slot was taken."""
        self._admitted = 0
        self._batch_s = 0.0
        """How long the writer takes per batch (a moving average)."""
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._executor: Executor | None = None

    @property
    def admitted(self) -> int:
        """Batches holding a slot now (being received, waiting, or being written)."""
        return self._admitted

    def admit(self) -> bool:
        """Take a slot for a batch; False (and counted) when every slot is taken."""
        with self._lock:
            if self._admitted >= self.size:
                self.refused += 1
                return False
            self._admitted += 1
            return True

    def release(self) -> None:
        """Give back the slot of a batch that was answered."""
        with self._lock:
            self._admitted = max(0, self._admitted - 1)

    def retry_after(self) -> int:
        """Seconds a refused batch should wait: about as long as the writer takes to write the
        batches in hand, from 1 to RETRY_AFTER_MAX_S."""
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(self.size * self._batch_s)))

    def _took(self, seconds: float) -> None:
        self._batch_s = seconds if self._batch_s == 0.0 else 0.8 * self._batch_s + 0.2 * seconds

    async def _writer(self) -> Executor:
        """The writer; started first (off the event loop) when it is not running."""
        executor = self._executor
        if executor is None:
            executor = await asyncio.to_thread(self._start)
        return executor

    def _start(self) -> Executor:
        with self._start_lock:
            if self._executor is not None:
                return self._executor
            if not self.process:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
                return self._executor
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_start_writer,
                initargs=(self.settings, store_config(self.service.store)),
            )
            try:
                pool.submit(_ready).result()  # the process is up, its database open
            except BaseException:
                pool.shutdown(wait=False)
                raise
            self._executor = pool
            return pool

    async def ingest(
        self,
        batch_id: str,
        agent: str,
        records: Sequence[dict[str, Any]],
        discovered_ldm: bool | None = None,
    ) -> IngestResult:
        """Apply a batch after those before it; answered once it is committed. Raises
        RecordError for a refused batch, HTTPException 503 when the writer process died or
        cannot start (the next batch gets a new one)."""
        loop = asyncio.get_running_loop()
        if not self.process:
            executor = await self._writer()

            def write() -> IngestResult:
                started = time.perf_counter()
                try:
                    return self.service.ingest(batch_id, agent, records, discovered_ldm)
                finally:
                    self._took(time.perf_counter() - started)

            return await loop.run_in_executor(executor, write)
        pool: Executor | None = None
        try:
            pool = await self._writer()
            outcome, seconds = await loop.run_in_executor(
                pool, _write, batch_id, agent, list(records), discovered_ldm
            )
        except BrokenProcessPool as exc:
            logger.error("the ingest writer process stopped (%s); the next batch starts one", exc)
            with self._start_lock:
                if pool is not None and self._executor is pool:
                    self._executor = None
            raise HTTPException(
                503,
                "the ingest writer stopped; send the batch again",
                headers={"Retry-After": str(self.retry_after())},
            ) from None
        self._took(seconds)
        if isinstance(outcome, list):
            raise RecordError(outcome)
        result, drops = outcome
        self.service.account(result, drops)
        return result

    def close(self) -> None:
        """Finish the batches in hand and stop the writer."""
        with self._start_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


class IngestGate:
    """ASGI middleware: an ingest request holds a slot of the app's IngestQueue until it is
    answered; without a free slot it is answered 503 with Retry-After, its body unread (the
    server discards it and keeps the connection). Runs after the key check (AuthGuard), so a
    request without a valid key never takes a slot."""

    def __init__(self, app: ASGIApp, table: AccessTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        if self.table.permission("POST", path) != "ingest":
            await self.app(scope, receive, send)
            return
        queue: IngestQueue = scope["app"].state.ingest_queue
        if not queue.admit():
            wait = queue.retry_after()
            logger.debug("ingest queue full (%d batches): 503, retry after %d s", queue.size, wait)
            response = JSONResponse(
                {
                    "detail": f"ingest is busy ({queue.size} batches in hand): send the batch "
                    f"again in {wait} s"
                },
                status_code=503,
                headers={"Retry-After": str(wait)},
            )
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            queue.release()
