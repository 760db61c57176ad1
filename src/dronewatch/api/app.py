"""The FastAPI application: routers, CORS, the web page, and start-up/shut-down."""

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
from starlette.routing import compile_path

from dronewatch import __version__
from dronewatch.api.routers import alerts, devices, health, ingest, keys
from dronewatch.api.schemas import AUTH_ERRORS, BAD_REQUEST
from dronewatch.api.service import Service
from dronewatch.api.settings import Settings
from dronewatch.api.sinks import SinkDispatcher, alert_from_dict

logger = logging.getLogger(__name__)

WEB_DIR = Path(str(resources.files("dronewatch.api") / "web"))


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
    )
    app.state.settings = settings
    app.state.service = svc
    app.state.store = svc.store
    app.state.startup_hooks = []
    app.state.shutdown_hooks = []
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
            expose_headers=["ETag"],
        )

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

    app.include_router(health.router)
    for router in (alerts.router, devices.router, ingest.router, keys.router):
        app.include_router(router, responses={**AUTH_ERRORS, **BAD_REQUEST})
    if (WEB_DIR / "index.html").is_file():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(WEB_DIR / "index.html")
    else:

        @app.get("/", include_in_schema=False)
        def docs() -> RedirectResponse:
            return RedirectResponse("/docs")

    return app
