"""What the settings' `sinks` list may say: one validated config per sink."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from dronewatch.exceptions import DronewatchError


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
    sd_id: str | None = Field(None, max_length=32, pattern=r"^[A-Za-z0-9._-]+@[0-9]+(\.[0-9]+)*$")
    """RFC 5424 SD-ID (`name@<your IANA enterprise number>`) under which each message also
    carries the alert's id, note, addresses and destination as structured data; none when
    unset."""


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
