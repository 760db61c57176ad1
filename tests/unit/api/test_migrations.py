"""`migrate()` brings a database of any earlier revision to the newest, and leaves one already
there as it is."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
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


def test_flows_stored_before_0010_get_their_end_reason(tmp_path: Path) -> None:
    """Flows stored at 0009 get the `end_reason` column filled from their documents, read in
    Python (a NUL escaped in a document does not stop it)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        command.upgrade(_config(engine), "0009")
        doc = '{"uid": "C1", "end_reason": "evicted", "server_name": "a\\u0000.example"}'
        with engine.begin() as conn:
            for uid, text in (("C1", doc), ("C2", '{"uid": "C2"}')):
                conn.execute(
                    sa.text(
                        "INSERT INTO flows (uid, agent, device_ip, ts, last_ts, resp_h, resp_p,"
                        " proto, bytes_out, bytes_in, doc) VALUES (:uid, 'a', '10.0.0.2', 1, 2,"
                        " '203.0.113.1', 443, 'tcp', 0, 0, :doc)"
                    ),
                    {"uid": uid, "doc": text.replace("C1", uid)},
                )
        migrate(engine)
        with engine.connect() as conn:
            got = dict(conn.execute(sa.text("SELECT uid, end_reason FROM flows")).all())
        assert got == {"C1": "evicted", "C2": None}
    finally:
        engine.dispose()
