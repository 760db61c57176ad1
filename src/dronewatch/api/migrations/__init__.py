"""Alembic migrations of the service database; `migrate()` brings a database to the newest."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from dronewatch.api.db import StorageError, redact

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> str:
    """Upgrade the database to the newest revision; returns that revision. A database already
    there is only read (its revision), not run through Alembic's upgrade.

    Raises StorageError when the database cannot be reached or a migration fails.
    """
    try:
        if current(engine) == head():
            return head()
        command.upgrade(_config(engine), "head")
    except SQLAlchemyError as exc:
        raise StorageError(f"migrating {redact(str(engine.url))}: {exc}") from None
    return head()


@functools.cache
def head() -> str:
    """The newest revision the migrations define."""
    script = ScriptDirectory.from_config(_config_stub())
    rev = script.get_current_head()
    assert rev is not None
    return rev


def current(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _config_stub() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg
