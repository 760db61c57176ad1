"""/healthz (alive), /readyz (database reachable and migrated), /metrics (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dronewatch.api.auth import Reader
from dronewatch.api.db import StorageError, check_connection
from dronewatch.api.migrations import current, head
from dronewatch.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Any:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request) -> Any:
    """The database answers and is at the newest schema revision."""
    engine = request.app.state.store.engine
    try:
        check_connection(engine)
        rev = current(engine)
    except StorageError as exc:
        return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
    if rev != head():
        detail = f"schema at revision {rev}, expected {head()}"
        return JSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
    return {"status": "ok"}


@router.get(
    "/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}}
)
def metrics(request: Request, _key: Reader) -> Response:
    """Prometheus text format: packets, flows, alerts by category, ingest lag, drops."""
    data = generate_latest(request.app.state.service.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
