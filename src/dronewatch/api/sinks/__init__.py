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
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from dronewatch.exceptions import DronewatchError
from dronewatch.judge.alert import Alert

logger = logging.getLogger(__name__)


class SinkError(DronewatchError):
    """A sink is misconfigured or cannot deliver."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    queue_size: int = Field(10_000, ge=1, le=1_000_000)
    """Alerts waiting for this sink; beyond that they are dropped (and counted)."""


class JsonlSinkConfig(_Config):
    """Append one ECS document per line to a file."""

    type: Literal["jsonl"] = "jsonl"
    path: str
    fsync: bool = False
    """fsync after each line (slower, survives power loss)."""


class SyslogSinkConfig(_Config):
    """RFC 5424 messages carrying CEF, over UDP or TCP (RFC 6587 octet counting)."""

    type: Literal["syslog"] = "syslog"
    host: str
    port: int = Field(514, ge=1, le=65535)
    transport: Literal["udp", "tcp"] = "udp"
    app_name: str = "dronewatch"
    facility: int = Field(10, ge=0, le=23)
    """Syslog facility (10: security/authorization)."""


class WebhookSinkConfig(_Config):
    """A JSON POST per alert, retried with exponential backoff."""

    type: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(10.0, gt=0, le=300)
    max_retries: int = Field(5, ge=0, le=100)
    backoff_initial_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=3600)
    secret: str | None = None
    """When set, the body is signed: header X-Dronewatch-Signature: sha256=<HMAC hex>."""


SinkConfig = Annotated[
    JsonlSinkConfig | SyslogSinkConfig | WebhookSinkConfig, Field(discriminator="type")
]
_ADAPTER: TypeAdapter[list[SinkConfig]] = TypeAdapter(list[SinkConfig])


def parse_sink_configs(raw: list[dict[str, Any]]) -> list[SinkConfig]:
    """Validate the settings' `sinks` list; raises SinkError naming the bad entry."""
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = [
            f"sinks[{'.'.join(str(p) for p in e['loc'])}]: {e['msg']}" for e in exc.errors()
        ]
        raise SinkError("; ".join(problems)) from None


class Sink(Protocol):
    """Somewhere alerts go."""

    name: str

    async def send(self, alert: Alert) -> None: ...

    async def close(self) -> None: ...


def build_sink(config: SinkConfig) -> Sink:
    """The sink a config describes."""
    if isinstance(config, JsonlSinkConfig):
        from dronewatch.api.sinks.jsonl import JsonlSink

        return JsonlSink(config)
    if isinstance(config, SyslogSinkConfig):
        from dronewatch.api.sinks.syslog import SyslogSink

        return SyslogSink(config)
    from dronewatch.api.sinks.webhook import WebhookSink

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
