"""The FastAPI application: routers, key checks and body limits, CORS, security headers, the
web page, and start-up/shut-down."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dronewatch import __version__
from dronewatch.api.auth import AccessTable, AuthGuard
from dronewatch.api.ingest_queue import IngestGate, IngestQueue
from dronewatch.api.routers import alerts, devices, health, ingest, keys, overview
from dronewatch.api.schemas import AUTH_ERRORS, BAD_REQUEST
from dronewatch.api.service import Service
from dronewatch.api.settings import Settings
from dronewatch.api.sinks import SinkDispatcher, alert_from_dict

logger = logging.getLogger(__name__)

WEB_DIR = Path(str(resources.files("dronewatch.api") / "web"))

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The page may load its own scripts, styles and images and call its own service, nothing else:
no inline script or style, no other origin, and no framing."""
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
DOCS_PATHS = ("/docs", "/redoc")
"""The interactive docs (when turned on) run an inline script and load from a CDN: no CSP."""


class SecurityHeaders:
    """ASGI middleware that adds the CSP, nosniff, frame and referrer headers to every answer."""

    def __init__(self, app: ASGIApp, docs: bool) -> None:
        self.app = app
        self.docs = docs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with_csp = not (self.docs and scope["path"].startswith(DOCS_PATHS))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if with_csp:
                    headers.setdefault("content-security-policy", CONTENT_SECURITY_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _path_methods(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    """Each documented path as a regex, with its methods (built once per app)."""
    cached: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "paths", None)
    if cached is None:
        cached = []
        for template, ops in app.openapi()["paths"].items():
            regex, _, _ = compile_path(template)
            cached.append((regex, {m.upper() for m in ops}))
        app.state.paths = cached
    return cached


def create_app(settings: Settings, service: Service | None = None) -> FastAPI:
    """The application over `service` (opened from `settings` when not given)."""
    svc = service or Service.open(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dispatcher = SinkDispatcher.from_configs(svc.sinks) if svc.sinks else None
        listener = None
        if dispatcher is not None:
            await dispatcher.start()
            loop = asyncio.get_running_loop()

            def listener(docs: list[dict[str, Any]]) -> None:
                for doc in docs:
                    loop.call_soon_threadsafe(dispatcher.submit, alert_from_dict(doc))

            svc.listeners.append(listener)
            app.state.sinks = dispatcher
        for hook in getattr(app.state, "startup_hooks", []):
            await hook(app)
        try:
            yield
        finally:
            for hook in reversed(getattr(app.state, "shutdown_hooks", [])):
                await hook(app)
            await asyncio.to_thread(queue.close)  # the batches in hand are written first
            if dispatcher is not None:
                svc.listeners.remove(listener)
                await dispatcher.stop()
            if service is None:
                svc.close()

    app = FastAPI(
        title="dronewatch",
        version=__version__,
        description=(
            "Alerts when data leaves a drone ground-station device while its local-data mode is "
            "on. Authenticate with `Authorization: Bearer <API key>`."
        ),
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
        swagger_ui_oauth2_redirect_url="/docs/oauth2-redirect" if settings.docs else None,
    )
    app.state.settings = settings
    app.state.service = svc
    app.state.store = svc.store
    queue = IngestQueue(settings, svc)
    app.state.ingest_queue = queue
    app.state.startup_hooks = []
    app.state.shutdown_hooks = []
    routers = (alerts.router, devices.router, ingest.router, keys.router, overview.router)
    # Middleware added later runs earlier. The key check and body cap run right before the
    # routes (inside the 405 fixer, whose task group would wrap a too-large body's error), and
    # the ingest gate right after the key check; CORS wraps them, so a browser can read a 401;
    # the security headers wrap everything.
    table = AccessTable((health.router, *routers))
    app.add_middleware(IngestGate, table=table)
    app.add_middleware(AuthGuard, table=table)

    @app.middleware("http")
    async def allow_header(request: Request, call_next: Any) -> Response:
        """A 405 lists every method of the path, not only those of the first route matched."""
        response: Response = await call_next(request)
        if response.status_code == 405:
            methods: set[str] = set()
            for regex, verbs in _path_methods(app):
                if regex.fullmatch(request.url.path):
                    methods |= verbs
            if methods:
                response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "If-None-Match",
                "Last-Event-ID",
            ],
            expose_headers=["ETag", "X-Next-Cursor", "X-Frames-Omitted", "X-Frames-Dropped"],
        )
    app.add_middleware(SecurityHeaders, docs=settings.docs)

    app.include_router(health.router)
    for router in routers:
        app.include_router(router, responses={**AUTH_ERRORS, **BAD_REQUEST})
    if (WEB_DIR / "index.html").is_file():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html")
    else:

        @app.get("/", include_in_schema=False)
        def docs() -> RedirectResponse:
            return RedirectResponse("/docs" if settings.docs else "/openapi.json")

    return app
