"""The FastAPI application: thin. Commands go to Temporal; reads go to PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi_offline import FastAPIOffline
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from musrenbang import __version__
from musrenbang.api import (
    commands,
    documents,
    errors,
    forums,
    logs,
    pages,
    profiles,
    public,
    reads,
)
from musrenbang.api.health import address_problem, health_checks
from musrenbang.api.responses import HealthReport, error_responses
from musrenbang.config import Settings
from musrenbang.logging import get_logger
from musrenbang.runtime import app_engine

log = get_logger("musrenbang.api")


def create_app(
    settings: Settings, engine: AsyncEngine | None = None, temporal: Client | None = None
) -> FastAPI:
    """The app. Given an engine and a client (tests), it uses them; otherwise it makes its
    own at start-up from the settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = []
        if engine is None:
            app.state.engine = app_engine(settings)  # the configured database, never a server
            owned.append(app.state.engine)
        if temporal is None:
            # Lazily: the API starts (and /health says so) while Temporal is still down.
            app.state.temporal = await Client.connect(
                settings.temporal_target, namespace=settings.temporal_namespace, lazy=True
            )
        yield
        for eng in owned:
            await eng.dispose()

    # Swagger UI and ReDoc from the fastapi-offline wheel: /docs works on an intranet
    app = FastAPIOffline(
        title="musrenbang",
        version=__version__,
        lifespan=lifespan,
        description="Workflow and audit engine for the Musrenbang-to-RKPD planning cycle.",
    )
    app.state.settings, app.state.engine, app.state.temporal = settings, engine, temporal
    errors.install(app)

    @app.middleware("http")
    async def clean_address(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # A NUL or a lone surrogate in the path or the query can reach no table.
        problem = address_problem(request.scope.get("path", ""), request.query_params.multi_items())
        if problem:
            return errors.answer(request, 422, "ValidationError", problem)
        return await call_next(request)

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        request.state.request_id = rid
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        log.info(
            "http.request",
            method=request.method,
            path=request.url.path,
            status=response.status_code,
        )
        return response

    api = APIRouter(prefix="/api/v1")

    @api.get(
        "/health",
        response_model_exclude_unset=True,
        responses={
            **error_responses(422),
            503: {"model": HealthReport, "description": "PostgreSQL or Temporal is down"},
        },
    )
    async def health(request: Request, response: Response) -> HealthReport:
        """PostgreSQL and Temporal, each checked within a bound; 503 names the one down."""
        checks = await health_checks(request.app.state.engine, request.app.state.temporal)
        down = [name for name, check in checks.items() if not check["ok"]]
        body = {
            "status": "ok" if not down else "unavailable",
            "version": __version__,
            **checks,
        }
        if down:
            body["detail"] = f"{' and '.join(down)} did not answer"
            response.status_code = 503
        return HealthReport.model_validate(body)

    api.include_router(commands.router)
    api.include_router(reads.router)
    api.include_router(forums.router)
    api.include_router(logs.router)
    api.include_router(profiles.router)
    api.include_router(public.router)
    api.include_router(documents.router)
    app.include_router(api)
    app.include_router(pages.router)
    app.mount("/static", pages.static_files(), name="static")
    return app
