"""Publish batches to the JetStream stream from synchronous code (the agent's shipper, replay)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

from dronewatch.transport.jetstream import BusError, connect, ensure_stream, subject_for
from dronewatch.transport.replay import ReplayError

logger = logging.getLogger(__name__)


class NatsPublisher:
    """A callable `(batch_id, records)` that returns once JetStream has stored the batch.

    It raises ReplayError when the server does not acknowledge in time, so the agent's shipper
    keeps the batch in its spool and retries, exactly as with the HTTP sender.
    """

    def __init__(self, url: str, *, agent: str, timeout_s: float = 10.0) -> None:
        self.url = url
        self.agent = agent
        self.subject = subject_for(agent)
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats", daemon=True)
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout_s + 5)

    async def _open(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            return
        self._nc = await connect(self.url, name=f"dronewatch-agent-{self.agent}")
        self._js = self._nc.jetstream()
        try:
            await ensure_stream(self._js)
        except Exception as exc:
            raise BusError(f"{self.url}: cannot set up the stream: {exc}") from None

    async def _publish(self, batch_id: str, body: bytes) -> bool:
        await self._open()
        ack = await self._js.publish(
            self.subject, body, timeout=self.timeout_s, headers={"Nats-Msg-Id": batch_id}
        )
        return bool(ack.duplicate)

    def __call__(self, batch_id: str, records: list[dict[str, Any]]) -> None:
        body = json.dumps(
            {"batch_id": batch_id, "agent": self.agent, "records": records},
            separators=(",", ":"),
        ).encode()
        try:
            duplicate = self._call(self._publish(batch_id, body))
        except Exception as exc:
            raise ReplayError(f"NATS {self.url} did not store batch {batch_id}: {exc}") from None
        if duplicate:
            logger.info("batch %s was already in the stream", batch_id)

    def close(self) -> None:
        async def close() -> None:
            if self._nc is not None and not self._nc.is_closed:
                await self._nc.flush(timeout=5)
                await self._nc.close()

        try:
            self._call(close())
        except Exception:
            logger.debug("NATS drain", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
