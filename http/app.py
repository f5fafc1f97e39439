"""The Litestar applications: the control API, and the metrics app of the worker and bridge.

``create_app(settings)`` serves every resource module (commands, jobs, failures, health, status,
metrics, dashboard) and the OpenAPI document. It connects to PostgreSQL, Redis and the vector
store in its lifespan and closes them on shutdown; tests and ``run_all`` may inject their own
:class:`AppDeps` instead (then the caller closes them).

``create_metrics_app(settings)`` serves only ``/metrics`` and ``/health/live`` — the same route
handlers as the API — for processes that serve no API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.db.pool import create_pool
from finally_indexer.http import audit, commands, dashboard, failures, health, jobs, listings, metrics, status
from finally_indexer.http.auth import API_KEY_HEADER, SECURITY_SCHEME
from finally_indexer.http.deps import AppDeps, PgPool, redis_client
from finally_indexer.http.errors import EXCEPTION_HANDLERS
from finally_indexer.http.headers import EVERY_RESPONSE
from finally_indexer.http.ratelimit import FailureLimiter
from finally_indexer.http.status import StatusProjector

__all__ = ["AppDeps", "create_app", "create_metrics_app"]

API_VERSION = "1.0.0"


def create_app(settings: Settings, *, deps: AppDeps | None = None) -> Litestar:
    """Build the app. ``deps`` given: used as is and left open; absent: opened and closed by the lifespan."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if deps is None:  # injected deps are already in the state, closed by their owner
            app.state.deps = await AppDeps.open(settings)
        try:
            yield
        finally:
            # background audits first: they hold the connections closed below
            if (running := app.state.get("auditor")) is not None:
                await running.aclose()
            if deps is None:
                await app.state.deps.aclose()

    return Litestar(
        route_handlers=[
            *commands.ROUTES,
            *audit.ROUTES,
            *jobs.ROUTES,
            *listings.ROUTES,
            *failures.ROUTES,
            *health.ROUTES,
            *status.ROUTES,
            *metrics.ROUTES,
            *dashboard.ROUTES,
        ],
        state=State(
            {
                "settings": settings,
                "projector": StatusProjector(settings),
                "deps": deps,
                "auth_failures": FailureLimiter(settings.auth_failures_per_minute),
            }
        ),
        response_headers=EVERY_RESPONSE,
        dependencies={
            "deps": Provide(_deps, sync_to_thread=False),
            "settings": Provide(_settings, sync_to_thread=False),
            "projector": Provide(_projector, sync_to_thread=False),
            "auditor": Provide(audit.auditor, sync_to_thread=False),
            # what /metrics reads, named as the metrics app names them
            "redis": Provide(_deps_redis, sync_to_thread=False),
            "pool": Provide(_deps_pool, sync_to_thread=False),
        },
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=_openapi(),
        # core/logging.py configures logging once; Litestar's default would take over the root logger
        logging_config=None,
        template_config=TemplateConfig(directory=dashboard.HERE / "templates", engine=JinjaTemplateEngine),
    )


def create_metrics_app(settings: Settings, *, with_db: bool = True) -> Litestar:
    """``/metrics`` (PostgreSQL gauges only ``with_db``) and ``/health/live``; its own connections."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.redis = redis_client(settings)
        app.state.pool = await create_pool(settings) if with_db else None
        try:
            yield
        finally:
            await app.state.redis.aclose()
            if app.state.pool is not None:
                await app.state.pool.close()

    return Litestar(
        route_handlers=[*metrics.ROUTES, health.live],
        state=State({"projector": StatusProjector(settings)}),
        dependencies={
            "projector": Provide(_projector, sync_to_thread=False),
            "redis": Provide(_own_redis, sync_to_thread=False),
            "pool": Provide(_own_pool, sync_to_thread=False),
        },
        lifespan=[lifespan],
        openapi_config=None,
        logging_config=None,
    )


def _deps(state: State) -> AppDeps:
    deps: AppDeps = state.deps
    return deps


def _settings(state: State) -> Settings:
    settings: Settings = state.settings
    return settings


def _projector(state: State) -> StatusProjector:
    projector: StatusProjector = state.projector
    return projector


def _deps_redis(state: State) -> Redis:
    return _deps(state).redis


def _deps_pool(state: State) -> PgPool:
    return _deps(state).pool


def _own_redis(state: State) -> Redis:
    redis: Redis = state.redis
    return redis


def _own_pool(state: State) -> PgPool | None:
    pool: PgPool | None = state.pool
    return pool


def _openapi() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="finally-indexer control API",
        version=API_VERSION,
        description=(
            "Queue synchronisations, follow jobs, inspect and re-queue failures, check health and "
            f"status. Mutating routes need the `{API_KEY_HEADER}` header when the service has an API key."
        ),
        path="/schema",
        render_plugins=[SwaggerRenderPlugin(path="/swagger")],
        components=Components(
            security_schemes={
                SECURITY_SCHEME: SecurityScheme(
                    type="apiKey", name=API_KEY_HEADER, security_scheme_in="header"
                )
            }
        ),
    )
