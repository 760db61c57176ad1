"""Service settings: command-line flags, then `DRONEWATCH_*` environment variables, then a YAML
config file, then the embedded defaults (SQLite in the data directory, bundled rules and GeoIP).

Every value is validated when the service starts; a bad one stops it with a message naming the
setting and where it came from, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dronewatch.exceptions import DronewatchError
from dronewatch.paths import default_data_dir
from dronewatch.transport.jetstream import BusError, check_url

ENV_PREFIX = "DRONEWATCH_"
DEFAULT_PORT = 8470
MIB = 1024 * 1024


class SettingsError(DronewatchError):
    """A setting is missing, malformed or contradictory."""


class _YamlSource(PydanticBaseSettingsSource):
    """Values from the YAML config file (the lowest-priority source after the defaults)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


class Settings(BaseSettings):
    """What the service runs with."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    """Where the SQLite database and the sink files live by default."""
    db: str | None = None
    """Database URL: `sqlite:///path.db` or `postgresql://user:pass@host/db`; default SQLite in
    data_dir."""
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    open_reads: bool = False
    """Serve GET requests without an API key (a lab on a closed network). Writes always need one."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed to call the API from a browser (exact origins, e.g. https://soc.example)."""
    rules: list[Path] = Field(default_factory=list)
    """Extra rule-pack directories, loaded after the bundled packs."""
    geoip_dir: Path | None = None
    """MaxMind .mmdb files to use instead of the bundled DB-IP data."""
    local_subnets: list[str] = Field(default_factory=list)
    """Extra subnets that count as local for every device."""
    sinks: list[dict[str, Any]] = Field(default_factory=list)
    """Alert sinks (jsonl, syslog, webhook); see the README."""
    sse_poll_s: float = Field(default=1.0, gt=0, le=60)
    """How often the alert stream looks for new alerts."""
    max_page: int = Field(default=500, ge=1, le=10000)
    """Largest page the list endpoints return."""
    consume: str | None = None
    """NATS URL (nats://HOST:PORT) to take batches from JetStream as well as from the API."""
    consume_ack_wait_s: float = Field(default=30.0, gt=0, le=3600)
    """How long a batch taken by a service that then died waits before another service gets it
    (set when the shared consumer is first created)."""
    docs: bool = False
    """Serve the interactive API docs at /docs and /redoc. They load Swagger UI and ReDoc from a
    CDN (cdn.jsdelivr.net), so they are off unless asked for; /openapi.json is always served."""
    max_body_bytes: int = Field(default=MIB, ge=1024, le=1 << 30)
    """Largest request body of every endpoint but ingest; a larger one gets 413 unread."""
    max_ingest_body_bytes: int = Field(default=32 * MIB, ge=1024, le=1 << 32)
    """Largest body of POST /api/v1/ingest (one batch); a larger one gets 413 unread."""
    ingest_queue: int = Field(default=8, ge=1, le=1000)
    """Ingest batches the service holds at once (being received, waiting, or being written);
    one more gets 503 with Retry-After, its body unread."""
    ingest_writer: Literal["process", "thread"] = "process"
    """What applies the batches, one at a time: a process of its own (the default: judging
    never holds the interpreter the reads need) or a thread of the service's process (always,
    for a database in memory)."""
    evidence_max_frames: int = Field(default=32, ge=1, le=100_000)
    """Evidence frames stored per flow; those beyond are dropped and counted."""
    evidence_pcap_max_bytes: int = Field(default=16 * MIB, ge=1024, le=1 << 32)
    """Largest evidence.pcap served; frames past it are left out (and counted in a header)."""
    agent_silence_s: float = Field(default=60.0, gt=0, le=86_400)
    """An agent whose last coverage report, with flows open, is older than this has stopped:
    those flows were captured but never judged, and verdicts over their time are incomplete."""
    ready_min_free_mib: int = Field(default=100, ge=0)
    """/readyz answers 503 when the data directory's file system has less free space (MiB)."""
    ready_timeout_s: float = Field(default=2.0, gt=0, le=60)
    """How long /readyz's write probe may wait for the database."""

    @field_validator("consume")
    @classmethod
    def _consume(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_url(value)
            except BusError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("db")
    @classmethod
    def _db(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("use sqlite:///PATH or postgresql://USER:PASS@HOST[:PORT]/DB")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        data = _CONFIG_DATA.get("data", {})
        return (init_settings, env_settings, _YamlSource(settings_cls, data))

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the database."""
        if self.db is None:
            return f"sqlite:///{self.data_dir / 'dronewatch.db'}"
        if self.db.startswith("postgresql://"):
            return "postgresql+psycopg://" + self.db.removeprefix("postgresql://")
        return self.db


_CONFIG_DATA: dict[str, dict[str, Any]] = {}


def load_settings(flags: dict[str, Any] | None = None, config: Path | None = None) -> Settings:
    """Settings from flags (None values ignored), environment, and the config file.

    The config file is `config`, else `$DRONEWATCH_CONFIG`; it is optional. Raises SettingsError.
    """
    path = config or (
        Path(os.environ[f"{ENV_PREFIX}CONFIG"]) if os.environ.get(f"{ENV_PREFIX}CONFIG") else None
    )
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"config file {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"config file {path}: not valid YAML ({exc})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SettingsError(f"config file {path}: expected a mapping of settings")
        data = {str(k).replace("-", "_"): v for k, v in (loaded or {}).items()}
    _CONFIG_DATA["data"] = data
    try:
        return Settings(**{k: v for k, v in (flags or {}).items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            where = _origin(str(err["loc"][0]) if err["loc"] else "", flags or {}, data, path)
            problems.append(f"{name} ({where}): {err['msg']}")
        raise SettingsError("bad settings: " + "; ".join(problems)) from None
    finally:
        _CONFIG_DATA.pop("data", None)


def _origin(name: str, flags: dict[str, Any], data: dict[str, Any], path: Path | None) -> str:
    if flags.get(name) is not None:
        return f"--{name.replace('_', '-')}"
    if f"{ENV_PREFIX}{name.upper()}" in os.environ:
        return f"${ENV_PREFIX}{name.upper()}"
    if name in data:
        return f"config file {path}"
    return "setting"
