"""The service side: pull batches from the shared durable consumer and ingest them."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import anyio

from dronewatch.exceptions import RecordError
from dronewatch.transport.jetstream import (
    ACK_WAIT_S,
    DURABLE,
    STREAM,
    SUBJECT_PREFIX,
    connect,
    ensure_stream,
)

logger = logging.getLogger(__name__)


class NatsConsumer:
    """Runs in the service's event loop; every batch is acknowledged after it is committed."""

    def __init__(
        self,
        url: str,
        service: Any,
        *,
        name: str = "dronewatch-serve",
        ack_wait_s: float = ACK_WAIT_S,
    ) -> None:
        self.url = url
        self.ack_wait_s = ack_wait_s
        self.service = service
        self.name = name
        self.consumed = 0
        self.failed = 0
        self._task: asyncio.Task[None] | None = None
        self._nc: Any = None
        self._stopping = False

    async def start(self) -> None:
        """Connect and start pulling; raises BusError when the server cannot be reached."""
        await self._subscribe()
        self._task = asyncio.create_task(self._run(), name="nats-consumer")
        logger.info("consuming batches from %s (durable %s)", self.url, DURABLE)

    async def _subscribe(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig

        self._nc = await connect(self.url, name=self.name)
        js = self._nc.jetstream()
        await ensure_stream(js)
        self._sub = await js.pull_subscribe(
            f"{SUBJECT_PREFIX}.>",
            durable=DURABLE,
            stream=STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait_s, max_deliver=-1
            ),
        )

    async def _run(self) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        while not self._stopping:
            try:
                msgs = await self._sub.fetch(8, timeout=1)
            except NatsTimeout:
                continue
            except Exception as exc:  # connection trouble
                if self._stopping:
                    return
                logger.warning("fetching batches from %s: %s", self.url, exc)
                await asyncio.sleep(1)
                if self._nc.is_closed:
                    try:
                        await self._subscribe()
                        logger.warning("consuming from %s again", self.url)
                    except Exception as again:
                        logger.warning("NATS %s still unreachable: %s", self.url, again)
                continue
            for msg in msgs:
                await self._handle(msg)

    async def _handle(self, msg: Any) -> None:
        try:
            doc = json.loads(msg.data)
            batch_id, agent, records = str(doc["batch_id"]), str(doc["agent"]), doc["records"]
            if not isinstance(records, list):
                raise ValueError("records is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("dropping a malformed batch on %s: %s", msg.subject, exc)
            self.failed += 1
            await msg.term()
            return
        try:
            await anyio.to_thread.run_sync(
                lambda: self.service.ingest(batch_id, agent, records, None)
            )
        except RecordError as exc:
            logger.error("dropping batch %s from %s: records refused: %s", batch_id, agent, exc)
            self.failed += 1
            await msg.term()
            return
        except Exception:
            # Database trouble: JetStream redelivers the batch later (or to another service).
            logger.exception(
                "batch %s from %s not ingested; it will be redelivered", batch_id, agent
            )
            self.failed += 1
            await msg.nak(delay=5)
            return
        await msg.ack()
        self.consumed += 1

    async def stop(self) -> None:
        """Stop pulling and close; a batch taken but not acknowledged goes to another service."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=3)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
