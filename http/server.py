"""Serve the app with uvicorn inside the caller's event loop until ``stop`` is set."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from contextlib import contextmanager

import structlog
import uvicorn
from litestar import Litestar

from finally_indexer.core.settings import Settings
from finally_indexer.http.app import AppDeps, create_app

log = structlog.get_logger(__name__)


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


async def serve_api(settings: Settings, *, stop: asyncio.Event, deps: AppDeps | None = None) -> None:
    """Serve the control API on ``HTTP_HOST:HTTP_PORT`` until ``stop`` is set."""
    server = build_server(create_app(settings, deps=deps), settings.http_host, settings.http_port)
    log.info("api_starting", host=settings.http_host, port=settings.http_port)
    await run_until(server, stop)
    log.info("api_stopped")
