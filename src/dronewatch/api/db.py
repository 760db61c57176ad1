"""The service's tables (SQLAlchemy Core) and the engine for SQLite or PostgreSQL.

The schema is created and upgraded by the Alembic migrations in `dronewatch/api/migrations`;
these table objects are what the queries are written against, and a test checks that the
migrated database and these definitions agree.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import ArgumentError, OperationalError

from dronewatch.exceptions import DronewatchError

logger = logging.getLogger(__name__)


class StorageError(DronewatchError):
    """The database cannot be opened, migrated or written."""


metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
)

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200)),
    Column("mac", String(17), unique=True),
    Column("ip", String(45), unique=True),
    Column("hostname", String(255)),
    Column("scope", String(16), nullable=False, default="dedicated"),
    Column("local_subnets", JSON, nullable=False),
    Column("allowed_categories", JSON, nullable=False),
    Column("allowed_destinations", JSON, nullable=False),
    Column("roles", JSON, nullable=False),
    Column("discovered", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("net", String(49)),
    Column("parent_id", Integer, ForeignKey("devices.id", ondelete="SET NULL")),
)
"""Ground stations. A row with `net`, or a `hostname` and neither IP nor MAC, is a declaration
that names devices under test (`--device CIDR|NAME`); each host it matches gets a row of its own
with `parent_id` pointing at it, and its policy and LDM history."""

ldm_changes = Table(
    "ldm_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("at", Float, nullable=False),
    Column("ldm_on", Boolean, nullable=False),
    Column("changed_by", String(100), nullable=False),
    Column("recorded_at", Float, nullable=False),
    Index("ix_ldm_changes_device_at", "device_id", "at"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="SET NULL")),
    Column("device_ip", String(45), nullable=False),
    Column("device_mac", String(17)),
    Column("note", String(64), nullable=False),
    Column("category", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("vendor", String(100)),
    Column("rule_id", String(200)),
    Column("dest_name", String(255)),
    Column("dest_ip", String(45)),
    Column("dest_country", String(2)),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("bytes_out", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("acked_by", String(100)),
    Column("acked_at", Float),
    Column("resolved_by", String(100)),
    Column("resolved_at", Float),
    Column("doc", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_alerts_last_seen", "last_seen"),
    Index("ix_alerts_device_ip", "device_ip"),
)

flows = Table(
    "flows",
    metadata,
    Column("uid", String(32), primary_key=True),
    Column("agent", String(100), nullable=False),
    Column("device_ip", String(45), nullable=False),
    Column("ts", Float, nullable=False),
    Column("last_ts", Float, nullable=False),
    Column("resp_h", String(45), nullable=False),
    Column("resp_p", Integer, nullable=False),
    Column("proto", String(8), nullable=False),
    Column("server_name", String(255)),
    Column("category", String(32)),
    Column("vendor", String(100)),
    Column("scope", String(16)),
    Column("bytes_out", BigInteger, nullable=False),
    Column("bytes_in", BigInteger, nullable=False),
    Column("end_reason", String(16)),
    Column("doc", JSON, nullable=False),
    Index("ix_flows_device_ts", "device_ip", "ts"),
)
"""Flows as agents sent them (`doc`), with the fields the service queries as columns:
`end_reason` counts a device's evicted flows (reading it out of `doc` in SQL fails on
PostgreSQL for a document with an escaped NUL anywhere in it)."""

egress = Table(
    "egress",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(400), nullable=False, unique=True),
    Column("agent", String(100), nullable=False),
    Column("host_ip", String(45), nullable=False),
    Column("doc", JSON, nullable=False),
    Index("ix_egress_host_ip", "host_ip"),
)
"""Egress observations (egress.jsonl records), in arrival order: what the judge folds into a
device's alerts, again whenever the device, its LDM history or its observations change."""

captures = Table(
    "captures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent", String(100), nullable=False),
    Column("source", Text, nullable=False),
    Column("packets", BigInteger, nullable=False),
    Column("drops", BigInteger),
    Column("complete", Boolean, nullable=False),
    Column("first_ts", Float, nullable=False),
    Column("last_ts", Float),
    Column("received_at", Float, nullable=False),
    Column("open_flows", BigInteger),
    Column("open_since", Float),
    Column("analyzer_errors", BigInteger),
    Column("evicted_flows", BigInteger),
    Column("gap_flows", BigInteger),
    Column("missed_bytes", BigInteger),
    Column("inspection_stopped", BigInteger),
    Column("bad_checksums", BigInteger),
    Column("encrypted", Text),
)
"""Coverage reports. `open_flows` (since `open_since`): flows the agent held open, not yet
judged, when it cut the report; `analyzer_errors`: failed analyzer hook calls in the interval;
`evicted_flows`: flows its full flow table ended early in the interval; `gap_flows` (with
`missed_bytes`) and `inspection_stopped`: flows ended in it with content gaps, or whose
inspection stopped; `bad_checksums`: packets it dropped unread for a wrong checksum;
`encrypted`: the protected 802.11 data frames it could not read, by sender MAC (JSON)."""

ingest_batches = Table(
    "ingest_batches",
    metadata,
    Column("batch_id", String(100), primary_key=True),
    Column("agent", String(100), nullable=False),
    Column("records", Integer, nullable=False),
    Column("received_at", Float, nullable=False),
)

evidence = Table(
    "evidence",
    metadata,
    Column("uid", String(32), primary_key=True),
    Column("agent", String(100), nullable=False),
    Column("linktype", Integer, nullable=False),
    Column("frames", JSON, nullable=False),
    Column("frames_dropped", Integer, nullable=False, server_default="0"),
)
"""The first frames of flows that left a device (`frames_dropped`: those beyond the service's
cap per flow, or malformed, that were not kept)."""

counters = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)


def nul_free(text: str) -> str:
    """`text` as a text column stores it: NUL as U+FFFD. Keys compared in Python with stored
    ones go through this too."""
    return text.replace("\x00", "\ufffd")


class _NulFree(TypeDecorator[str]):
    """A text column that takes any wire string: PostgreSQL refuses NUL in text and strings
    longer than a VARCHAR's length, so NUL is stored as U+FFFD and a longer string is cut to
    the column, on every backend alike. The record's JSON document (`doc`) keeps the exact
    string, NUL escaped."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if not isinstance(value, str):
            return value
        length = getattr(self.impl_instance, "length", None)
        if length and len(value) > length:  # PostgreSQL refuses what SQLite would keep
            value = value[:length]
        return nul_free(value)


class _NulFreeText(_NulFree):
    impl = Text
    cache_ok = True


for _table in metadata.tables.values():
    for _column in _table.columns:
        if isinstance(_column.type, Text):
            _column.type = _NulFreeText()
        elif isinstance(_column.type, String):
            _column.type = _NulFree(_column.type.length)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL mode, foreign keys and a busy timeout.

    Raises StorageError when the URL is malformed or its directory cannot be created.
    """
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(
                    f"cannot create the database directory for {path}: {exc}"
                ) from None
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"database URL {redact(url)}: {exc}") from None
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def redact(url: str) -> str:
    """The URL with its password replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def check_connection(engine: Engine) -> None:
    """Raise StorageError when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except OperationalError as exc:
        raise StorageError(f"database {redact(str(engine.url))}: {exc.orig}") from None
