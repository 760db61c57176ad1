"""/healthz (alive), /readyz (database reachable, migrated and writable, disk space left),
/metrics (Prometheus)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from dronewatch.api.auth import Reader
from dronewatch.api.db import StorageError, check_connection
from dronewatch.api.migrations import current, head
from dronewatch.api.schemas import Health
from dronewatch.api.settings import Settings
from dronewatch.api.store import Store

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Any:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request) -> Any:
    """Ready to take ingest: the database answers (`database`), is at the newest schema
    revision (`schema`) and commits a write within `ready_timeout_s` (`database_write`), and
    the data directory has `ready_min_free_mib` free (`disk_space`). A 503 names each check
    that failed in `detail` ("name: why; ...")."""
    store: Store = request.app.state.store
    settings: Settings = request.app.state.settings
    problems = []
    try:
        check_connection(store.engine)
        rev = current(store.engine)
    except (StorageError, SQLAlchemyError) as exc:
        problems.append(f"database: {exc}")
    else:
        if rev != head():
            problems.append(f"schema: at revision {rev}, expected {head()}")
        try:
            store.probe_write(settings.ready_timeout_s)
        except SQLAlchemyError as exc:
            why = getattr(exc, "orig", None) or exc
            problems.append(f"database_write: no write within {settings.ready_timeout_s} s ({why})")
    free = _free_mib(settings.data_dir)
    if free is not None and free < settings.ready_min_free_mib:
        problems.append(
            f"disk_space: {free} MiB free in {settings.data_dir}, "
            f"below {settings.ready_min_free_mib} MiB"
        )
    if problems:
        return JSONResponse(
            {"status": "unavailable", "detail": "; ".join(problems)}, status_code=503
        )
    return {"status": "ok"}


def _free_mib(path: Path) -> int | None:
    """Free MiB on the file system of `path` (or of its nearest existing parent)."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free // (1024 * 1024)
        except OSError:
            continue
    return None


@router.get(
    "/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}}
)
def metrics(request: Request, _key: Reader) -> Response:
    """Prometheus text format: packets, flows, alerts by category, ingest lag, drops."""
    data = generate_latest(request.app.state.service.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
