"""Serve the apps with uvicorn inside the caller's event loop until ``stop`` is set.

:func:`serve_api` runs the control API; :func:`start_metrics_server` runs the metrics app of the
worker and bridge processes in the background.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import structlog
import uvicorn
from litestar import Litestar

from finally_indexer.core.settings import Settings
from finally_indexer.http.app import AppDeps, create_app, create_metrics_app

log = structlog.get_logger(__name__)

#: How long start_metrics_server waits for uvicorn to bind its port.
START_TIMEOUT_S = 10.0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process entrypoint (which sets ``stop``)."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def build_server(app: Litestar, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``app``; logging stays with core.logging (no uvicorn log config)."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    return _Server(config)


async def run_until(server: uvicorn.Server, stop: asyncio.Event) -> None:
    """Run ``server`` until ``stop`` is set (or the server exits by itself), then shut it down."""
    serving = asyncio.create_task(server.serve())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        await serving


async def start_in_background(server: uvicorn.Server, stop: asyncio.Event) -> asyncio.Task[None]:
    """Run ``server`` until ``stop`` is set, as a task; return once it listens (or raise if it cannot).

    Callers bound the wait with ``asyncio.timeout``.
    """
    task = asyncio.create_task(run_until(server, stop))
    while not server.started:  # uvicorn offers no event to wait on
        if task.done():
            await task
            raise RuntimeError("server exited before it started listening")
        await asyncio.sleep(0.01)
    return task


def bound_port(server: uvicorn.Server) -> int | None:
    """The port the server listens on (useful with port 0), once started."""
    for s in server.servers:
        for sock in s.sockets:
            port: int = sock.getsockname()[1]
            return port
    return None


@asynccontextmanager
async def serving(app: Litestar, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` in this loop while the block runs; yields its base URL (port 0: a free one)."""
    server = build_server(app, host, port)
    stop = asyncio.Event()
    async with asyncio.timeout(START_TIMEOUT_S):
        task = await start_in_background(server, stop)
    try:
        yield f"http://{host}:{bound_port(server)}"
    finally:
        stop.set()
        await task


async def serve_api(settings: Settings, *, stop: asyncio.Event, deps: AppDeps | None = None) -> None:
    """Serve the control API on ``HTTP_HOST:HTTP_PORT`` until ``stop`` is set."""
    server = build_server(create_app(settings, deps=deps), settings.http_host, settings.http_port)
    log.info("api_starting", host=settings.http_host, port=settings.http_port)
    await run_until(server, stop)
    log.info("api_stopped")


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
