"""/api/v1/keys: API keys (admin only). Secrets are shown once, at creation."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from dronewatch.api.auth import Admin
from dronewatch.api.schemas import CONFLICT, NOT_FOUND, KeyIn, KeyOut, NewKey
from dronewatch.api.store import Conflict, NotFound, Store

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@router.get("", response_model=list[KeyOut])
def list_keys(request: Request, _key: Admin) -> Any:
    """Every key, live or revoked (never the secrets)."""
    return [asdict(k) for k in _store(request).list_keys()]


@router.post("", response_model=NewKey, status_code=201, responses=CONFLICT)
def create_key(body: KeyIn, request: Request, _key: Admin) -> Any:
    """A new key for a dashboard (reader), an agent, or an administrator."""
    try:
        info, secret = _store(request).create_key(body.name, body.role)
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    return {**asdict(info), "key": secret}


@router.delete("/{name}", status_code=204, responses={**NOT_FOUND, **CONFLICT})
def revoke_key(name: str, request: Request, key: Admin) -> Response:
    """Revoke a key; requests with it are refused from now on."""
    if name == key.name:
        raise HTTPException(409, "a key cannot revoke itself; use another admin key")
    try:
        _store(request).revoke_key(name)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(status_code=204)
