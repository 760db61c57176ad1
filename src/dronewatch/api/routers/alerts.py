"""/api/v1/alerts: list and poll, stream, get with evidence, acknowledge and resolve.

Every number a client passes (cursor, since, limit, start, end, Last-Event-ID) is checked
against its bounds, the database's integer range included: a bad one is a 422 naming it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, Field

from dronewatch.api.auth import Admin, RawReader, Reader
from dronewatch.api.dissect import dissect
from dronewatch.api.schemas import (
    BAD_REQUEST,
    NOT_FOUND,
    AlertDetail,
    AlertPage,
    Epoch,
    EvidenceOut,
    StatusChange,
)
from dronewatch.api.store import DB_INT_MAX, AlertFilter, NotFound, Store
from dronewatch.capture.pcapwrite import FILE_HEADER, RECORD_HEADER, pcap_bytes

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

HEARTBEAT_S = 15.0
EVIDENCE_PAGE = 20
"""Frames in a page of dissected evidence unless `limit` says otherwise."""


def _in_db_range(value: str | None) -> str | None:
    if value is not None and int(value) > DB_INT_MAX:
        raise ValueError(f"must be at most {DB_INT_MAX}")
    return value


SeqCursor = Annotated[
    str | None,
    Query(pattern=r"^[0-9]{1,19}$", description="next_cursor of the previous page"),
    AfterValidator(_in_db_range),
]
"""A cursor: ASCII digits within the database's integer range (a bad one is a 422)."""


class EvidenceFlowOut(EvidenceOut):
    """The dissected frames of one evidence flow in this page."""

    frames_dropped: int = Field(
        0, description="frames of this flow the service did not keep (beyond its cap, or bad)"
    )


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@router.get(
    "", response_model=AlertPage, responses={**BAD_REQUEST, 304: {"description": "unchanged"}}
)
def list_alerts(
    request: Request,
    response: Response,
    _key: Reader,
    device: Annotated[str | None, Query(description="device IP or MAC")] = None,
    vendor: str | None = None,
    category: str | None = None,
    severity: str | None = None,
    status: Annotated[str | None, Query(description="open, acknowledged or resolved")] = None,
    start: Annotated[Epoch, Query(description="last seen at or after (epoch s)")] = None,
    end: Annotated[Epoch, Query(description="first seen before (epoch s)")] = None,
    since: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="only alerts changed after this seq, oldest first"),
    ] = None,
    cursor: SeqCursor = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> Any:
    """Alerts, newest change first; with `since`, what changed after that seq, oldest first.

    A dashboard polls with `since=<last_seq of the previous answer>`: every new or updated alert
    comes exactly once. Answers carry an ETag; send it back as If-None-Match to get 304.
    """
    if since is not None and cursor:
        raise HTTPException(400, "use either since (polling) or cursor (paging), not both")
    cur = int(cursor) if cursor is not None else None
    limit = min(limit, request.app.state.settings.max_page)
    flt = AlertFilter(device, vendor, category, severity, status, start, end)
    items = _store(request).list_alerts(flt, since=since, cursor=cur, limit=limit + 1)
    has_more = len(items) > limit
    items = items[:limit]
    last_seq = max((a["seq"] for a in items), default=since or 0)
    page = {
        "items": items,
        "next_cursor": str(items[-1]["seq"]) if has_more and since is None else None,
        "last_seq": last_seq,
        "has_more": has_more,
    }
    body = json.dumps(page, sort_keys=True, default=str).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = "no-cache"
    return page


@router.get("/stream", responses={200: {"content": {"text/event-stream": {}}}})
async def stream_alerts(
    request: Request,
    _key: Reader,
    since: Annotated[int | None, Query(ge=0, le=2**62, description="start after this seq")] = None,
) -> StreamingResponse:
    """Server-sent events: one `alert` event per new or updated alert, `id` = its seq.

    Reconnecting with the Last-Event-ID header (browsers do it) resumes where the stream left.
    """
    last = request.headers.get("last-event-id")
    start = since
    if last:
        if not (last.isascii() and last.isdigit() and len(last) <= 19 and int(last) <= 2**62):
            raise RequestValidationError(
                [
                    {
                        "type": "last_event_id",
                        "loc": ("header", "last-event-id"),
                        "msg": "Last-Event-ID must be the id of an event of this stream",
                        "input": last,
                    }
                ]
            )
        start = int(last)
    store = _store(request)
    if start is None:
        start = await anyio.to_thread.run_sync(store.max_alert_seq)
    poll = request.app.state.settings.sse_poll_s

    async def events() -> AsyncIterator[str]:
        seq = start
        idle = 0.0
        yield f"retry: {int(poll * 1000)}\n\n"
        while not await request.is_disconnected():
            items = await anyio.to_thread.run_sync(_changed_after, store, seq)
            for item in items:
                seq = item["seq"]
                yield f"id: {seq}\nevent: alert\ndata: {json.dumps(item, default=str)}\n\n"
            if items:
                idle = 0.0
                continue
            await asyncio.sleep(poll)
            idle += poll
            if idle >= HEARTBEAT_S:
                idle = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _changed_after(store: Store, seq: int) -> list[dict[str, Any]]:
    return store.list_alerts(AlertFilter(), since=seq, cursor=None, limit=200)


@router.get("/{alert_id}", response_model=AlertDetail, responses=NOT_FOUND)
def get_alert(alert_id: str, request: Request, _key: Reader) -> Any:
    """One alert, with the flows it was raised on (their records as stored)."""
    store = _store(request)
    try:
        alert = store.get_alert(alert_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    alert["evidence_flows"] = store.flows_by_uid(alert.get("uids", []))
    return alert


@router.get(
    "/{alert_id}/evidence",
    response_model=list[EvidenceFlowOut],
    responses={
        200: {
            "headers": {
                "X-Next-Cursor": {
                    "description": "pass as cursor= for the next page; absent on the last page",
                    "schema": {"type": "string"},
                }
            }
        },
        **NOT_FOUND,
    },
)
async def alert_evidence(
    alert_id: str,
    request: Request,
    response: Response,
    _key: RawReader,
    limit: Annotated[int, Query(ge=1, le=10000, description="frames in this page")] = (
        EVIDENCE_PAGE
    ),
    cursor: SeqCursor = None,
) -> Any:
    """The kept frames of the alert's flows, dissected (Wireshark layers via pyshark/tshark
    when installed, else dronewatch's own fields), `limit` frames a page, flow by flow; the
    X-Next-Cursor header carries the cursor of the next page. Empty when the agent sent no
    evidence. Needs a key even under open_reads (these are the captured packets)."""
    store = _store(request)
    try:
        alert = await anyio.to_thread.run_sync(store.get_alert, alert_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    stored = await anyio.to_thread.run_sync(store.evidence_for, alert.get("uids", []))
    limit = min(limit, request.app.state.settings.max_page)
    page, next_at = _frame_page(stored, int(cursor) if cursor is not None else 0, limit)
    if next_at is not None:
        response.headers["X-Next-Cursor"] = str(next_at)
    out = []
    for e in page:
        dissected = await anyio.to_thread.run_sync(dissect, e)
        out.append({**dissected, "frames_dropped": e.get("frames_dropped", 0)})
    return out


def _frame_page(
    stored: list[dict[str, Any]], at: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """The evidence records cut to frames [at, at + limit) of all their frames in order, and
    the position of the next page (None when this one is the last)."""
    page: list[dict[str, Any]] = []
    seen = 0
    end = at + limit
    for e in stored:
        frames = list(e.get("frames") or [])
        lo, hi = max(at - seen, 0), min(end - seen, len(frames))
        if lo < hi:
            page.append({**e, "frames": frames[lo:hi]})
        seen += len(frames)
    return page, (end if seen > end else None)


def _pcap_frames(stored: list[dict[str, Any]], linktype: int) -> list[tuple[float, bytes, int]]:
    """The frames of the records of one link type, by time (malformed ones left out)."""
    frames = []
    for e in stored:
        if int(e["linktype"]) != linktype:
            continue
        for f in e["frames"]:
            try:
                data = base64.b64decode(f["data"], validate=True)
                frames.append((float(f["ts"]), data, int(f.get("wirelen", 0))))
            except (KeyError, TypeError, ValueError, binascii.Error):
                continue
    frames.sort(key=lambda f: f[0])
    return frames


@router.get(
    "/{alert_id}/evidence.pcap",
    response_class=Response,
    responses={
        200: {
            "content": {"application/vnd.tcpdump.pcap": {}},
            "description": "The kept frames of the alert's flows, as a pcap file",
            "headers": {
                "X-Frames-Omitted": {
                    "description": "frames left out to keep the file within the size limit",
                    "schema": {"type": "integer"},
                },
                "X-Frames-Dropped": {
                    "description": "frames the service did not keep (beyond its cap per flow)",
                    "schema": {"type": "integer"},
                },
            },
        },
        **NOT_FOUND,
    },
)
async def alert_evidence_pcap(alert_id: str, request: Request, _key: RawReader) -> Response:
    """Download the kept frames of the alert's flows as a pcap file (Wireshark, tcpdump,
    dronewatch analyze), earliest first up to the size limit (`evidence_pcap_max_bytes`);
    404 when no frames were kept. Needs a key even under open_reads."""
    store = _store(request)
    try:
        alert = await anyio.to_thread.run_sync(store.get_alert, alert_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    stored = await anyio.to_thread.run_sync(store.evidence_for, alert.get("uids", []))
    if not stored:
        raise HTTPException(404, "no frames were kept for this alert's flows")
    linktype = int(stored[0]["linktype"])
    frames = _pcap_frames(stored, linktype)
    budget = request.app.state.settings.evidence_pcap_max_bytes - FILE_HEADER.size
    kept = 0
    for _, data, _ in frames:
        budget -= RECORD_HEADER.size + len(data)
        if budget < 0:
            break
        kept += 1
    dropped = sum(int(e.get("frames_dropped") or 0) for e in stored)
    return Response(
        pcap_bytes(linktype, frames[:kept]),
        media_type="application/vnd.tcpdump.pcap",
        headers={
            "Content-Disposition": f'attachment; filename="alert-{alert_id}.pcap"',
            "X-Frames-Omitted": str(len(frames) - kept),
            "X-Frames-Dropped": str(dropped),
        },
    )


def _set_status(
    request: Request, alert_id: str, status: str, by: str, body: StatusChange | None
) -> Any:
    comment = body.comment if body is not None else None
    try:
        return _store(request).set_alert_status(alert_id, status, by=by, comment=comment)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


@router.post("/{alert_id}/ack", response_model=AlertDetail, responses=NOT_FOUND)
def acknowledge(
    alert_id: str, request: Request, key: Admin, body: StatusChange | None = None
) -> Any:
    """Acknowledge: someone is looking at it (records who and when)."""
    return _set_status(request, alert_id, "acknowledged", key.name, body)


@router.post("/{alert_id}/resolve", response_model=AlertDetail, responses=NOT_FOUND)
def resolve(alert_id: str, request: Request, key: Admin, body: StatusChange | None = None) -> Any:
    """Resolve: dealt with. New traffic on the same alert reopens it."""
    return _set_status(request, alert_id, "resolved", key.name, body)


@router.post("/{alert_id}/reopen", response_model=AlertDetail, responses=NOT_FOUND)
def reopen(alert_id: str, request: Request, key: Admin, body: StatusChange | None = None) -> Any:
    """Reopen an acknowledged or resolved alert."""
    return _set_status(request, alert_id, "open", key.name, body)
