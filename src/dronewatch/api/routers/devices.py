"""/api/v1/devices: ground stations, their local-data mode and policy, flows and verdicts."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from dronewatch.api.auth import Admin, Reader
from dronewatch.api.schemas import (
    BAD_REQUEST,
    CONFLICT,
    NOT_FOUND,
    DeviceIn,
    DeviceOut,
    DevicePatch,
    Epoch,
    FlowCursor,
    FlowPage,
    LdmChange,
    VerdictOut,
)
from dronewatch.api.store import AlertFilter, Conflict, NotFound, Store
from dronewatch.api.verdict import device_verdict

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

DeviceId = Annotated[int, Path(ge=1, le=2**31 - 1, description="device id")]


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _rejudged(request: Request, device: dict[str, Any]) -> dict[str, Any]:
    """Judge a device's stored traffic again under the policy it now has; returns the device."""
    request.app.state.service.rejudge(device)
    return device


def _device(request: Request, device_id: DeviceId) -> dict[str, Any]:
    try:
        return _store(request).get_device(device_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


def _check_identity(fields: dict[str, Any]) -> None:
    """A device is named by a MAC and/or IP, or by a network or a host name (400 otherwise)."""
    if fields.get("net") and (fields.get("mac") or fields.get("ip")):
        raise HTTPException(400, "a network names its hosts: give no mac or ip with net")
    if not any(fields.get(k) for k in ("mac", "ip", "net", "hostname")):
        raise HTTPException(400, "a device needs a mac, an ip, a net or a hostname")


@router.get("", response_model=list[DeviceOut])
def list_devices(request: Request, _key: Reader) -> Any:
    """Every device, declared or discovered in the traffic, with its LDM state and history."""
    return _store(request).list_devices()


@router.post("", response_model=DeviceOut, status_code=201, responses={**CONFLICT, **BAD_REQUEST})
def create_device(body: DeviceIn, request: Request, key: Admin) -> Any:
    """Declare a device by MAC and/or IP, with its policy; `ldm` sets its mode from now. Or
    name devices under test by a network (`net`) or a DHCP host name (`hostname` alone), as
    `--device` does: every host it names that the traffic shows becomes a device of its own
    with this policy and LDM history (`parent_id`), judged on all it sent before and after."""
    _check_identity(body.model_dump())
    try:
        device = _store(request).create_device(body.model_dump(), by=key.name)
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return _rejudged(request, device)


@router.get("/{device_id}", response_model=DeviceOut, responses=NOT_FOUND)
def get_device(device_id: DeviceId, request: Request, _key: Reader) -> Any:
    return _device(request, device_id)


@router.patch("/{device_id}", response_model=DeviceOut, responses={**NOT_FOUND, **CONFLICT})
def update_device(device_id: DeviceId, body: DevicePatch, request: Request, key: Admin) -> Any:
    """Change a device's identity or policy; fields left out keep their value."""
    fields = body.model_dump(exclude_unset=True)
    for k in ("scope", "local_subnets", "allowed_categories", "allowed_destinations"):
        if k in fields and fields[k] is None:
            fields.pop(k)
    current = _device(request, device_id)
    _check_identity({k: fields.get(k, current[k]) for k in ("mac", "ip", "net", "hostname")})
    try:
        device = _store(request).update_device(device_id, fields, by=key.name)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return _rejudged(request, device)


@router.delete("/{device_id}", status_code=204, responses=NOT_FOUND)
def delete_device(device_id: DeviceId, request: Request, _key: Admin) -> Response:
    """Forget a device and its LDM history (its alerts stay)."""
    try:
        _store(request).delete_device(device_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(status_code=204)


@router.put("/{device_id}/ldm", response_model=DeviceOut, responses=NOT_FOUND)
def set_ldm(device_id: DeviceId, body: LdmChange, request: Request, key: Admin) -> Any:
    """Turn local-data mode on or off; traffic from `at` (default now) on is judged by it."""
    at = body.at if body.at is not None else time.time()
    try:
        device = _store(request).set_ldm(device_id, body.on, at, by=key.name)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return _rejudged(request, device)


@router.get("/{device_id}/flows", response_model=FlowPage, responses={**NOT_FOUND, **BAD_REQUEST})
def device_flows(
    device_id: DeviceId,
    request: Request,
    _key: Reader,
    start: Annotated[Epoch, Query(description="epoch s")] = None,
    end: Annotated[Epoch, Query(description="epoch s")] = None,
    cursor: FlowCursor = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 200,
) -> Any:
    """The device's flows in a time window, oldest first."""
    device = _device(request, device_id)
    cur = None
    if cursor:
        ts, _, uid = cursor.partition(":")
        try:
            cur = (float(ts), uid)
        except ValueError:
            raise HTTPException(400, "cursor must be the next_cursor of a previous page") from None
    limit = min(limit, request.app.state.settings.max_page)
    store = _store(request)
    items = store.flows_for(store.device_hosts(device), start, end, limit + 1, cur)
    more = len(items) > limit
    items = items[:limit]
    nxt = f"{items[-1]['ts']}:{items[-1]['uid']}" if more else None
    return {"items": items, "next_cursor": nxt}


@router.get("/{device_id}/verdict", response_model=VerdictOut, responses=NOT_FOUND)
def verdict(
    device_id: DeviceId,
    request: Request,
    _key: Reader,
    start: Annotated[Epoch, Query(description="epoch s")] = None,
    end: Annotated[Epoch, Query(description="epoch s")] = None,
) -> Any:
    """ "Nothing left the device", or the destinations that were reached, with coverage."""
    device = _device(request, device_id)
    store = _store(request)
    alerts = []
    if device["ip"] or device["mac"]:
        flt = AlertFilter(device=device["ip"] or device["mac"], start=start, end=end)
        alerts = store.list_alerts(flt, since=None, cursor=None, limit=10000)
    return device_verdict(store, device, alerts, start, end)
