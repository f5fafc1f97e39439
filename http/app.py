"""The Litestar application: control API, dashboard, ``/metrics`` and the OpenAPI document.

``create_app(settings)`` connects to PostgreSQL, Redis and the vector store in its lifespan and
closes them on shutdown; tests and ``run_all`` may inject their own :class:`AppDeps` instead
(then the caller closes them).
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

from finally_indexer.core.settings import Settings
from finally_indexer.http import routes_dashboard, routes_failures, routes_health, routes_jobs, routes_status
from finally_indexer.http.auth import API_KEY_HEADER, SECURITY_SCHEME
from finally_indexer.http.deps import AppDeps
from finally_indexer.http.errors import EXCEPTION_HANDLERS
from finally_indexer.http.status import StatusProjector

__all__ = ["AppDeps", "create_app"]

API_VERSION = "1.0.0"


def create_app(settings: Settings, *, deps: AppDeps | None = None) -> Litestar:
    """Build the app. ``deps`` given: used as is and left open; absent: opened and closed by the lifespan."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if deps is not None:  # injected: already in the state, closed by its owner
            yield
            return
        app.state.deps = await AppDeps.open(settings)
        try:
            yield
        finally:
            await app.state.deps.aclose()

    return Litestar(
        route_handlers=[
            *routes_jobs.ROUTES,
            *routes_failures.ROUTES,
            *routes_health.ROUTES,
            *routes_status.ROUTES,
            *routes_dashboard.ROUTES,
        ],
        state=State({"settings": settings, "projector": StatusProjector(settings), "deps": deps}),
        dependencies={
            "deps": Provide(_deps, sync_to_thread=False),
            "settings": Provide(_settings, sync_to_thread=False),
            "projector": Provide(_projector, sync_to_thread=False),
        },
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=_openapi(),
        # core/logging.py configures logging once; Litestar's default would take over the root logger
        logging_config=None,
        template_config=TemplateConfig(
            directory=routes_dashboard.HERE / "templates", engine=JinjaTemplateEngine
        ),
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
