"""/api/v1/ingest: agents post batches of pipeline records."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from dronewatch.api.auth import Agent
from dronewatch.api.ingest_queue import IngestQueue
from dronewatch.api.schemas import IngestIn, IngestOut
from dronewatch.exceptions import RecordError

router = APIRouter(prefix="/api/v1", tags=["ingest"])


@router.post(
    "/ingest",
    response_model=IngestOut,
    responses={
        503: {
            "description": "busy: every ingest slot is taken; send the batch again after "
            "Retry-After seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        }
    },
)
async def ingest(body: IngestIn, request: Request, key: Agent) -> Any:
    """Apply a batch: flows are stored, devices discovered, alerts raised under the service's
    policy. Idempotent: a batch id seen before changes nothing (`duplicate: true`). Every record
    is checked against its log's schema first: one bad field refuses the batch (422, naming
    `records.<i>.<field>`), and alerts or verdicts from an agent are refused (the service judges).
    Answered once the batch is committed. Batches are written one at a time; when
    `ingest_queue` batches are already in hand, the answer is 503 with Retry-After at once.
    """
    queue: IngestQueue = request.app.state.ingest_queue
    agent = body.agent if body.agent != "agent" else key.name
    if body.discovered_ldm is not None and key.role != "admin":
        raise HTTPException(403, "discovered_ldm sets policy: it needs an admin key")
    try:
        result = await queue.ingest(body.batch_id, agent, body.records, body.discovered_ldm)
    except RecordError as exc:
        raise HTTPException(422, [{**e, "loc": ["body", *e["loc"]]} for e in exc.errors]) from None
    return {
        "batch_id": result.batch_id,
        "duplicate": result.duplicate,
        "records": result.records,
        "flows_new": result.flows_new,
        "devices_discovered": result.devices_discovered,
        "alerts_changed": len(result.alerts),
    }
