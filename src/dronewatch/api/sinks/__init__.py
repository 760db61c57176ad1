"""Alert sinks: every new or updated alert also goes to a JSONL file, syslog (RFC 5424 + CEF)
or a webhook, as the settings' `sinks` list says.

Each sink has its own bounded queue and task, so a slow or unreachable receiver never holds up
ingest or the other sinks; what a full queue cannot take is counted as dropped and logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from dronewatch.api.sinks.config import (
    JsonlSinkConfig,
    SinkConfig,
    SinkError,
    SyslogSinkConfig,
    WebhookSinkConfig,
    parse_sink_configs,
)
from dronewatch.api.sinks.jsonl import JsonlSink
from dronewatch.api.sinks.syslog import SyslogSink
from dronewatch.api.sinks.webhook import WebhookSink
from dronewatch.judge.alert import Alert

logger = logging.getLogger(__name__)

__all__ = [
    "JsonlSinkConfig",
    "SinkConfig",
    "SinkDispatcher",
    "SinkError",
    "SyslogSinkConfig",
    "WebhookSinkConfig",
    "alert_from_dict",
    "build_sink",
    "parse_sink_configs",
]


class Sink(Protocol):
    """Somewhere alerts go."""

    name: str

    async def send(self, alert: Alert) -> None: ...

    async def close(self) -> None: ...


def build_sink(config: SinkConfig) -> Sink:
    """The sink a config describes."""
    if isinstance(config, JsonlSinkConfig):
        return JsonlSink(config)
    if isinstance(config, SyslogSinkConfig):
        return SyslogSink(config)

    return WebhookSink(config)


def alert_from_dict(doc: dict[str, Any]) -> Alert:
    """An Alert from its dict form (as stored or ingested); unknown keys are ignored."""
    known = Alert.__dataclass_fields__
    fields = {k: v for k, v in doc.items() if k in known}
    for name in known:
        if name not in fields and name != "log":
            f = known[name]
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                fields[name] = None  # to_dict() leaves out the fields that were None
    for key in ("uids", "community_ids"):
        if isinstance(fields.get(key), list):
            fields[key] = tuple(fields[key])
    return Alert(**fields)


@dataclass(slots=True)
class SinkStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0


class SinkDispatcher:
    """Fans alerts out to every sink through a queue and a task each."""

    def __init__(self, sinks: list[tuple[Sink, int]]) -> None:
        """`sinks`: (sink, queue size) pairs."""
        self._sinks = sinks
        self._queues: list[asyncio.Queue[Alert]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.stats = {sink.name: SinkStats() for sink, _ in sinks}

    @classmethod
    def from_configs(cls, configs: list[SinkConfig]) -> SinkDispatcher:
        return cls([(build_sink(c), c.queue_size) for c in configs])

    async def start(self) -> None:
        for sink, size in self._sinks:
            queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=size)
            self._queues.append(queue)
            self._tasks.append(asyncio.create_task(self._run(sink, queue)))

    def submit(self, alert: Alert) -> None:
        """Queue an alert for every sink (call from the event loop's thread)."""
        for (sink, _), queue in zip(self._sinks, self._queues, strict=True):
            try:
                queue.put_nowait(alert)
            except asyncio.QueueFull:
                stats = self.stats[sink.name]
                stats.dropped += 1
                logger.warning(
                    "sink %s is behind: alert %s dropped (%d so far)",
                    sink.name,
                    alert.id,
                    stats.dropped,
                )

    async def _run(self, sink: Sink, queue: asyncio.Queue[Alert]) -> None:
        stats = self.stats[sink.name]
        while True:
            alert = await queue.get()
            try:
                await sink.send(alert)
                stats.sent += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a sink failure is counted, never fatal
                stats.failed += 1
                logger.warning("sink %s could not deliver alert %s: %s", sink.name, alert.id, exc)
            finally:
                queue.task_done()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to `timeout_s`), then close every sink."""
        try:
            await asyncio.wait_for(
                asyncio.gather(*(q.join() for q in self._queues)), timeout=timeout_s
            )
        except TimeoutError:
            logger.warning("sinks still had alerts queued at shut-down")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sink, _ in self._sinks:
            await sink.close()
