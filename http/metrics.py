"""A ``/metrics`` endpoint for processes that do not serve the API (worker, bridge).

Each process has its own counters (prometheus_client keeps them per process), so Prometheus
scrapes every process; the queue gauges are projections of Redis and PostgreSQL and read the
same in every process (aggregate them with ``max``). ``METRICS_PORT=0`` disables the endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog
from litestar import Litestar, Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST

from finally_indexer.core.settings import Settings
from finally_indexer.db.pool import create_pool
from finally_indexer.http.collector import render
from finally_indexer.http.deps import redis_client
from finally_indexer.http.server import bound_port, build_server, start_in_background
from finally_indexer.http.status import StatusProjector

log = structlog.get_logger(__name__)

#: How long start_metrics_server waits for uvicorn to bind its port.
START_TIMEOUT_S = 10.0


@get("/metrics")
async def _metrics(state: State) -> Response[bytes]:
    return Response(await render(state.projector, state.pool, state.redis), media_type=CONTENT_TYPE_LATEST)


@get("/health/live")
async def _live() -> dict[str, str]:
    return {"status": "alive"}


def create_metrics_app(settings: Settings, *, with_db: bool = True) -> Litestar:
    """A two-route app: ``/metrics`` and ``/health/live``."""

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
        route_handlers=[_metrics, _live],
        state=State({"projector": StatusProjector(settings)}),
        lifespan=[lifespan],
        openapi_config=None,
        # core/logging.py configures logging once; Litestar's default would take over the root logger
        logging_config=None,
    )


@dataclass
class MetricsServer:
    """A running metrics endpoint; ``await aclose()`` stops it."""

    port: int
    _stop: asyncio.Event = field(repr=False)
    _task: asyncio.Task[None] = field(repr=False)

    async def aclose(self) -> None:
        """Stop serving and wait until the server has shut down."""
        self._stop.set()
        await self._task


async def start_metrics_server(settings: Settings, *, with_db: bool = True) -> MetricsServer | None:
    """Serve ``/metrics`` on ``HTTP_HOST:METRICS_PORT`` in this loop; None when the port is 0."""
    if settings.metrics_port == 0:
        return None
    server = build_server(
        create_metrics_app(settings, with_db=with_db), settings.http_host, settings.metrics_port
    )
    stop = asyncio.Event()
    async with asyncio.timeout(START_TIMEOUT_S):
        task = await start_in_background(server, stop)
    port = bound_port(server) or settings.metrics_port
    log.info("metrics_serving", port=port)
    return MetricsServer(port, stop, task)


__all__ = ["MetricsServer", "create_metrics_app", "start_metrics_server"]
