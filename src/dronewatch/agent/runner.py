"""The agent's main loop: capture, analyze, batch into the spool, ship; stop cleanly on a signal."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from dronewatch.agent.shipper import Shipper
from dronewatch.agent.spool import Spool
from dronewatch.api.replay import Batcher
from dronewatch.capture.live import LiveSource
from dronewatch.hooks import Record
from dronewatch.pipeline import AnalysisConfig, Pipeline, RunResult

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class AgentOptions:
    flush_s: float = 2.0
    """Longest a record waits in memory before its batch goes to the spool."""
    batch_size: int = 500
    drain_s: float = 10.0
    """On stop, how long to keep shipping what is spooled before exiting."""


class Agent:
    """One capture, one pipeline, one spool, one shipper."""

    def __init__(
        self,
        source: LiveSource,
        config: AnalysisConfig,
        spool: Spool,
        shipper: Shipper | None,
        options: AgentOptions | None = None,
    ) -> None:
        self.source = source
        self.config = config
        self.spool = spool
        self.shipper = shipper
        self.options = options or AgentOptions()
        self.batcher = Batcher(self.spool.put, self.options.batch_size)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.result: RunResult | None = None

    def _emit(self, record: Record) -> None:
        with self._lock:
            self.batcher(record)

    def _flush(self) -> None:
        with self._lock:
            self.batcher.flush()

    def install_signals(self) -> None:
        """SIGTERM and SIGINT stop the capture; flows are then flushed and the spool drained."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            logger.info("signal %d: stopping", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def stop(self) -> None:
        self._stopping.set()
        self.source.stop()

    def run(self, on_tick: Callable[[Agent], Any] | None = None) -> RunResult:
        """Capture until stopped; returns the capture's coverage and the local alerts."""
        if self.shipper is not None:
            self.shipper.start()
        pipe = Pipeline(self._emit, self.config)
        last_flush = time.monotonic()
        self.source.start()
        try:
            for raw in self.source.packets():
                if raw is None:
                    pipe.tick(time.time())
                else:
                    pipe.feed(raw)
                now = time.monotonic()
                if now - last_flush >= self.options.flush_s:
                    self._flush()
                    last_flush = now
                    if on_tick is not None:
                        on_tick(self)
        finally:
            self.result = pipe.finish(self.source.stats)
            self._flush()
            if self.shipper is not None:
                if not self.shipper.drain(self.options.drain_s):
                    n, size = self.spool.pending()
                    logger.warning(
                        "%d batches (%d bytes) stay in the spool %s for the next start",
                        n,
                        size,
                        self.spool.directory,
                    )
                self.shipper.stop()
        return self.result
