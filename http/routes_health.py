"""``GET /health`` (dependencies) and ``GET /health/live`` (the process answers)."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import ControllerRouterHandler

from finally_indexer.http.deps import AppDeps
from finally_indexer.http.health import check_all
from finally_indexer.schemas.api import HealthReport


@get(
    "/health",
    tags=["health"],
    summary="PostgreSQL, Redis and Qdrant connectivity",
    description="200 when all three answer within 1 s; 503 with `down` naming those that do not.",
    responses={
        HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
            data_container=HealthReport, description="A dependency is down."
        )
    },
)
async def health(deps: NamedDependency[AppDeps]) -> Response[HealthReport]:
    report = await check_all(deps.pool, deps.redis, deps.store)
    return Response(report, status_code=HTTP_503_SERVICE_UNAVAILABLE if report.down else HTTP_200_OK)


@get("/health/live", tags=["health"], summary="Liveness: the process answers (no dependency calls)")
async def live() -> dict[str, str]:
    return {"status": "alive"}


ROUTES: list[ControllerRouterHandler] = [health, live]
