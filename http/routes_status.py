"""``GET /status`` (the projection as JSON) and ``GET /metrics`` (the same figures for Prometheus)."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.types import ControllerRouterHandler
from prometheus_client import CONTENT_TYPE_LATEST

from finally_indexer.http.collector import render
from finally_indexer.http.deps import AppDeps
from finally_indexer.http.status import StatusProjector, StatusReport


@get("/status", tags=["status"], summary="Queues, lag, throughput, jobs in progress and failures")
async def status(deps: NamedDependency[AppDeps], projector: NamedDependency[StatusProjector]) -> StatusReport:
    return await projector.report(deps.pool, deps.redis)


@get(
    "/metrics", tags=["status"], summary="Prometheus exposition (projection gauges refreshed at scrape time)"
)
async def metrics(
    deps: NamedDependency[AppDeps], projector: NamedDependency[StatusProjector]
) -> Response[bytes]:
    return Response(await render(projector, deps.pool, deps.redis), media_type=CONTENT_TYPE_LATEST)


ROUTES: list[ControllerRouterHandler] = [status, metrics]
