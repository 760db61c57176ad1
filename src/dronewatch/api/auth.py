"""API keys and roles: `reader` (dashboards), `agent` (ingest), `admin` (devices, policy, keys).

A key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Admin may do everything;
agent may ingest and read; reader may only read. With `open_reads`, GET requests need no key;
no write is ever served without one, and neither are the captured frames (`raw`).

`AuthGuard`, an ASGI middleware, checks the key from the headers before any of the body is read,
and caps the body: a request without a valid key gets its 401 (a key of the wrong role its 403)
without the service reading what it sent, and a body larger than the settings allow gets 413
unread. The routes' `Depends(Require(...))` then finds the key the guard admitted.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dronewatch.api.settings import Settings
from dronewatch.api.store import KeyInfo, Role, Store, key_needs_touch

PERMITS: dict[str, frozenset[Role]] = {
    "read": frozenset({"reader", "agent", "admin"}),
    "raw": frozenset({"reader", "agent", "admin"}),
    "ingest": frozenset({"agent", "admin"}),
    "admin": frozenset({"admin"}),
}
"""Which roles each kind of request accepts. `raw` (the captured frames of an alert) is read
with a key even under open_reads: raw packets are not "reads"."""

ANONYMOUS = KeyInfo(0, "anonymous", "reader", "", 0.0, None, None)
"""Who a GET is served to under open_reads when it carries no key."""

SCOPE_KEY = "dronewatch.key"
"""Where AuthGuard leaves the admitted key in the ASGI scope."""


def token_of(headers: Headers) -> str | None:
    """The API key a request carries, if any."""
    header = headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def admit(key: KeyInfo | None, permission: str, open_reads: bool) -> KeyInfo:
    """`key` when its role may do `permission`; no key (None) is ANONYMOUS for reads under
    open_reads. Raises HTTPException: 401 without a key, 403 for a role that may not."""
    if key is None or key is ANONYMOUS:
        if permission == "read" and open_reads:
            return ANONYMOUS
        raise _unauthorized("an API key is required (Authorization: Bearer <key>)")
    roles = PERMITS[permission]
    if key.role not in roles:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"the {key.role} role may not do this (needs {' or '.join(sorted(roles))})",
        )
    return key


def verify(store: Store, token: str | None) -> KeyInfo | None:
    """The live key of `token` (None when no token was sent); 401 for an unknown or revoked
    one. Only reads the database."""
    if token is None:
        return None
    key = store.verify_key(token)
    if key is None:
        raise _unauthorized("unknown or revoked API key")
    return key


class Require:
    """A dependency that admits keys whose role holds `permission` ("read", "raw", "ingest",
    "admin"): the key AuthGuard admitted, else (an app without the guard) the request's own."""

    def __init__(self, permission: str) -> None:
        if permission not in PERMITS:
            raise ValueError(f"unknown permission {permission!r}")
        self.permission = permission

    async def __call__(self, request: Request) -> KeyInfo:
        # A coroutine: the key the guard admitted is checked on the event loop, without a trip
        # through the thread pool (every read made one).
        settings: Settings = request.app.state.settings
        found = request.scope.get(SCOPE_KEY)
        if isinstance(found, KeyInfo):
            return admit(found, self.permission, settings.open_reads)
        store: Store = request.app.state.store
        token = token_of(request.headers)
        key = admit(
            await anyio.to_thread.run_sync(verify, store, token),
            self.permission,
            settings.open_reads,
        )
        await anyio.to_thread.run_sync(store.touch_key, key)
        return key


def require(permission: str) -> Require:
    """A dependency that admits keys whose role holds `permission`."""
    return Require(permission)


Reader = Annotated[KeyInfo, Depends(Require("read"))]
RawReader = Annotated[KeyInfo, Depends(Require("raw"))]
Agent = Annotated[KeyInfo, Depends(Require("ingest"))]
Admin = Annotated[KeyInfo, Depends(Require("admin"))]


@dataclass(frozen=True, slots=True)
class _Rule:
    regex: re.Pattern[str]
    methods: frozenset[str]
    permission: str


def _permission(dependant: Dependant) -> str | None:
    for dep in dependant.dependencies:
        if isinstance(dep.call, Require):
            return dep.call.permission
        found = _permission(dep)
        if found is not None:
            return found
    return None


class AccessTable:
    """Which permission each route needs, read off the routers' `Require` dependencies."""

    def __init__(self, routers: Iterable[APIRouter]) -> None:
        self._rules: list[_Rule] = []
        for router in routers:
            for route in router.routes:
                if isinstance(route, APIRoute):
                    permission = _permission(route.dependant)
                    if permission is not None:
                        methods = frozenset(m.upper() for m in route.methods or ())
                        self._rules.append(_Rule(route.path_regex, methods, permission))

    def permission(self, method: str, path: str) -> str | None:
        """The permission of the route serving `method` `path` (None: none, or no route)."""
        for rule in self._rules:
            if method in rule.methods and rule.regex.match(path):
                return rule.permission
        return None


class BodyTooLarge(HTTPException):
    """The request body grew past the limit while it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"request body larger than {limit} bytes",
            headers={"Connection": "close"},
        )


def _declared_length(headers: Headers) -> int | None:
    """The Content-Length a request declares (None: none that reads as a number)."""
    value = headers.get("content-length", "").strip()
    if not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= 18 else 10**18  # beyond any limit: no need to parse it


class AuthGuard:
    """ASGI middleware: admit the request's key from its headers, then cap its body, before the
    application reads any of it.

    The permission a route needs comes from `table`; the settings (`open_reads`, the body
    limits) and the store from the application's state at each request. A key's last use is
    recorded after the response has started, best effort, so no request waits on that write.
    """

    def __init__(self, app: ASGIApp, table: AccessTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        settings: Settings = state.settings
        store: Store = state.store
        headers = Headers(scope=scope)
        length = _declared_length(headers)
        has_body = bool(length) or "transfer-encoding" in headers
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        permission = self.table.permission(scope["method"], path)
        touch: KeyInfo | None = None
        if permission is not None:
            try:
                key = await anyio.to_thread.run_sync(verify, store, token_of(headers))
                admitted = admit(key, permission, settings.open_reads)
            except HTTPException as exc:
                await _refuse(exc, has_body, scope, receive, send)
                return
            scope[SCOPE_KEY] = admitted
            if key_needs_touch(admitted, time.time()):
                touch = admitted
        limit = (
            settings.max_ingest_body_bytes if permission == "ingest" else settings.max_body_bytes
        )
        if length is not None and length > limit:
            await _refuse(BodyTooLarge(limit), True, scope, receive, send)
            return

        received = 0
        started = False
        touching: list[asyncio.Task[bool]] = []

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            await send(message)
            if message["type"] == "http.response.start":
                started = True
                if touch is not None:
                    touching.append(
                        asyncio.create_task(anyio.to_thread.run_sync(store.touch_key, touch))
                    )

        try:
            await self.app(scope, capped_receive, watched_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _refuse(exc, True, scope, receive, send)
        finally:
            for task in touching:
                await task


async def _refuse(
    exc: HTTPException, has_body: bool, scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer with the error without reading the body; close the connection when one was
    coming, so the server does not read (and discard) the rest either."""
    headers: dict[str, Any] = dict(exc.headers or {})
    if has_body:
        headers["Connection"] = "close"
    response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
    await response(scope, receive, send)
