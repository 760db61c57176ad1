"""`migrate()` brings a database of any earlier revision to the newest, and leaves one already
there as it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from dronewatch.api.db import StorageError, make_engine
from dronewatch.api.migrations import HERE, _config, current, head, migrate

REVISIONS = sorted(p.name[:4] for p in (HERE / "versions").glob("0*.py"))
"""Every revision the migrations define, oldest first."""


@pytest.mark.parametrize("start", [None, *REVISIONS[:-1]])
def test_an_older_database_is_brought_to_the_newest(tmp_path: Path, start: str | None) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        if start is not None:
            command.upgrade(_config(engine), start)
            assert current(engine) == start
        assert migrate(engine) == head() == REVISIONS[-1]
        assert current(engine) == head()
        assert "devices" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_a_database_at_the_newest_is_left_as_it_is(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        migrate(engine)
        tables = sorted(inspect(engine).get_table_names())
        assert migrate(engine) == head()
        assert sorted(inspect(engine).get_table_names()) == tables
    finally:
        engine.dispose()


def test_an_unreadable_database_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(b"not a database" * 100)
    engine = make_engine(f"sqlite:///{tmp_path / 'bad.db'}")
    try:
        with pytest.raises(StorageError, match="migrating"):
            migrate(engine)
    finally:
        engine.dispose()
