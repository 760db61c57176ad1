"""API keys and roles: `reader` (dashboards), `agent` (ingest), `admin` (devices, policy, keys).

A key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Admin may do everything;
agent may ingest and read; reader may only read. With `open_reads`, GET requests need no key;
no write is ever served without one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from dronewatch.api.store import KeyInfo, Role, Store

PERMITS: dict[str, frozenset[Role]] = {
    "read": frozenset({"reader", "agent", "admin"}),
    "ingest": frozenset({"agent", "admin"}),
    "admin": frozenset({"admin"}),
}
"""Which roles each kind of request accepts."""

ANONYMOUS = KeyInfo(0, "anonymous", "reader", "", 0.0, None, None)
"""Who a GET is served to under open_reads when it carries no key."""


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = request.headers.get("x-api-key", "").strip()
    return key or None


def require(permission: str) -> Callable[[Request], KeyInfo]:
    """A dependency that admits keys whose role holds `permission` ("read", "ingest", "admin")."""
    roles = PERMITS[permission]

    def check(request: Request) -> KeyInfo:
        store: Store = request.app.state.store
        token = _token(request)
        if token is None:
            if permission == "read" and request.app.state.settings.open_reads:
                return ANONYMOUS
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "an API key is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = store.verify_key(token)
        if key is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown or revoked API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if key.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"the {key.role} role may not do this (needs {' or '.join(sorted(roles))})",
            )
        return key

    return check


Reader = Annotated[KeyInfo, Depends(require("read"))]
Agent = Annotated[KeyInfo, Depends(require("ingest"))]
Admin = Annotated[KeyInfo, Depends(require("admin"))]
