"""Sends spooled batches to the service, oldest first, one at a time, until each is taken.

A batch is removed from the spool only when the service answered 2xx; a failure is retried with
exponential backoff, so batches arrive in order, and since the service ignores a batch id it has
seen, a batch re-sent after a lost answer is not counted twice. A batch the service refuses
outright (ReplayError.final: a 4xx answer) is quarantined in the spool with the answer, logged, and
counted, and the batches behind it go on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from dronewatch.agent.spool import Spool
from dronewatch.transport.replay import ReplayError

logger = logging.getLogger(__name__)


class Shipper:
    """A thread that drains the spool into the service."""

    def __init__(
        self,
        spool: Spool,
        sender: Callable[[str, list[dict[str, Any]]], None],
        *,
        max_backoff_s: float = 30.0,
    ) -> None:
        """`sender` delivers one batch or raises ReplayError (HttpSender, NatsPublisher)."""
        self.spool = spool
        self.sender = sender
        self.max_backoff_s = max_backoff_s
        self.sent = 0
        self.refused = 0
        """Batches the service refused outright, moved to the spool's quarantine."""
        self.failures = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shipper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            batch = self.spool.peek(timeout=0.5)
            if batch is None:
                continue
            try:
                self.sender(batch.batch_id, batch.records)
            except ReplayError as exc:
                if exc.final:
                    self.spool.quarantine(batch.seq, str(exc))
                    self.refused += 1
                    logger.error(
                        "batch %s refused by the service, kept in the spool's quarantine: %s",
                        batch.batch_id,
                        exc,
                    )
                    continue
                self.failures += 1
                if str(exc) != self.last_error:
                    logger.warning("service not taking batches: %s; retrying", exc)
                self.last_error = str(exc)
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_backoff_s)
                continue
            self.spool.ack(batch.seq)
            self.sent += 1
            if self.last_error is not None:
                logger.warning("service reachable again; delivering the spool")
            self.last_error = None
            delay = 0.5

    def drain(self, timeout_s: float) -> bool:
        """Wait until the spool is empty (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.spool.pending()[0] == 0:
                return True
            time.sleep(0.1)
        return self.spool.pending()[0] == 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
