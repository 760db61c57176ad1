"""Fixtures of the service tests: the service over SQLite and over a real PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.pcaps import PCAPS
from tests.ports import free_port

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from dronewatch.api.service import Service
    from dronewatch.api.settings import Settings

# The service's modules (FastAPI, SQLAlchemy, the pipeline: most of a second) are imported by the
# fixtures that use them, not when this plugin is loaded: pytest-xdist's controller loads it too,
# before it starts the workers, and runs no test.
SCENARIOS = PCAPS / "scenarios"


@cache
def records_of(name: str) -> tuple[dict[str, Any], ...]:
    """The pipeline records of a scenario capture, as an agent would post them."""
    from dronewatch.capture.files import FileSource
    from dronewatch.core.pipeline import AnalysisConfig, run_source
    from dronewatch.geoip.maxmind import MaxMindResolver
    from dronewatch.judge.classify import Classifier
    from dronewatch.judge.evidence import EvidenceOptions
    from dronewatch.transport.replay import Batcher

    out: list[dict[str, Any]] = []
    config = AnalysisConfig(
        classifier=Classifier.load(),
        resolver=MaxMindResolver.bundled(),
        evidence=EvidenceOptions(),
    )
    batcher = Batcher(lambda _batch, records: out.extend(records), size=1 << 30)
    run_source(FileSource(str(SCENARIOS / name)), batcher, config)
    batcher.flush()
    return tuple(out)


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite service database, migrated once per session: a test copies it into its
    data directory instead of running every migration again (that took half of a short test)."""
    from dronewatch.api.db import make_engine
    from dronewatch.api.migrations import migrate
    from dronewatch.api.settings import Settings

    settings = Settings(data_dir=tmp_path_factory.mktemp("migrated"))
    db = settings.data_dir / "dronewatch.db"
    assert settings.database_url == f"sqlite:///{db}"
    engine = make_engine(settings.database_url)
    migrate(engine)
    engine.dispose()
    assert not db.with_name(db.name + "-wal").exists()  # closed: the file is the whole database
    return db


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Service settings over a fresh SQLite file (a copy of `migrated_sqlite`), or a fresh
    database on a real PostgreSQL.

    Over SQLite the batches are applied by a thread of the service (`ingest_writer="thread"`),
    over PostgreSQL by the writer process the service starts by default: every API test runs
    with both writers (the PostgreSQL half in the `system` run), and the quick run does not
    start a writer process per test. tests/unit/api/test_ingest_queue.py tests the process
    writer itself over SQLite."""
    from dronewatch.api.settings import Settings

    if request.param == "postgresql":
        db = request.getfixturevalue("pg_db_url")
        return Settings(data_dir=tmp_path, db=db, port=free_port(), sse_poll_s=0.1)
    template: Path = request.getfixturevalue("migrated_sqlite")
    shutil.copyfile(template, tmp_path / template.name)
    return Settings(data_dir=tmp_path, port=free_port(), sse_poll_s=0.1, ingest_writer="thread")


@pytest.fixture
def service(settings: Settings) -> Iterator[Service]:
    from dronewatch.api.service import Service

    svc = Service.open(settings)
    try:
        yield svc
    finally:
        svc.close()


class Api:
    """A TestClient with one key per role."""

    def __init__(self, client: TestClient, service: Service) -> None:
        self.client = client
        self.service = service
        self.keys = {
            role: service.store.create_key(f"test-{role}", role)[1]  # type: ignore[arg-type]
            for role in ("reader", "agent", "admin")
        }

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def get(self, path: str, role: str = "reader", **kw: Any) -> Any:
        return self.client.get(path, headers={**self.headers(role), **kw.pop("headers", {})}, **kw)

    def post(self, path: str, role: str = "admin", **kw: Any) -> Any:
        return self.client.post(path, headers=self.headers(role), **kw)

    def put(self, path: str, role: str = "admin", **kw: Any) -> Any:
        return self.client.put(path, headers=self.headers(role), **kw)

    def patch(self, path: str, role: str = "admin", **kw: Any) -> Any:
        return self.client.patch(path, headers=self.headers(role), **kw)

    def delete(self, path: str, role: str = "admin", **kw: Any) -> Any:
        return self.client.delete(path, headers=self.headers(role), **kw)

    def ingest(self, records: Any, batch: str = "b1", role: str = "agent", **extra: Any) -> Any:
        body = {"batch_id": batch, "agent": "test", "records": list(records), **extra}
        return self.post("/api/v1/ingest", role=role, json=body)

    def device(self, ip: str, ldm_at: float | None = 0.0, **fields: Any) -> dict[str, Any]:
        """Declare a device; with `ldm_at`, LDM on from that time."""
        resp = self.post("/api/v1/devices", json={"ip": ip, **fields})
        assert resp.status_code == 201, resp.text
        dev: dict[str, Any] = resp.json()
        if ldm_at is not None:
            resp = self.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": True, "at": ldm_at})
            assert resp.status_code == 200, resp.text
            dev = resp.json()
        return dev


@pytest.fixture
def api(settings: Settings, service: Service) -> Iterator[Api]:
    from fastapi.testclient import TestClient

    from dronewatch.api.app import create_app

    app = create_app(settings, service)
    with TestClient(app) as client:
        yield Api(client, service)
