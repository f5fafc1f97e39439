"""The roles a process can play: bridge, worker, API, or all of them in one process (``up``).

Each role takes the settings and a ``stop`` event, builds what it needs through the composition
root (:mod:`finally_indexer.processor.pipeline`) and runs until ``stop``; in-flight work finishes
or is released. This module is where the stream side and the HTTP side meet: ``processor/`` never
imports ``http/``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from finally_indexer.core.redis_client import open_redis
from finally_indexer.core.settings import Settings
from finally_indexer.http.deps import AppDeps
from finally_indexer.http.server import serve_api, start_metrics_server
from finally_indexer.processor.audit import Auditor, run_scheduled
from finally_indexer.processor.bridge import Bridge
from finally_indexer.processor.generations import ServingAuditor
from finally_indexer.processor.housekeeping import run_housekeeping
from finally_indexer.processor.outbox import run_relay
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.recovery import BrokerSupervisor

__all__ = ["run_all", "run_api", "run_bridge", "run_worker", "serve_worker"]

log = structlog.get_logger(__name__)


async def serve_worker(pipeline: Pipeline, *, stop: asyncio.Event) -> None:
    """Run the planner, indexer, reclaimers and the outbox relay until ``stop``; in-flight work
    finishes or is released.

    The broker is supervised (:class:`BrokerSupervisor`): lost groups are recreated and unfinished
    work re-published; :class:`~finally_indexer.core.errors.BrokerUnrecoverable` ends the worker.
    """
    settings = pipeline.settings
    supervisor = BrokerSupervisor(
        redis=pipeline.redis,
        settings=settings,
        build=pipeline.broker,
        republish=pipeline.republish_unfinished,
    )
    # groups missing at start-up: Redis lost its data while no worker ran (or this is the first start)
    await supervisor.start(republish=bool(pipeline.groups_created), stop=stop)
    consumer = pipeline.consumer.name
    log.info("worker_started", consumer=consumer)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(supervisor.run(stop))
            tasks.create_task(
                run_housekeeping(pipeline.redis, settings, consumer=consumer, stop=stop, pool=pipeline.pool)
            )
            # events a crash or a failed XADD left in the outbox (the fast path relays the others)
            tasks.create_task(run_relay(pipeline.pool, pipeline.events, stop=stop))
            if pipeline.generations is not None:  # finish builds, follow the record, drop old ones
                tasks.create_task(pipeline.generations.run(stop=stop))
            if settings.audit_interval_s > 0:
                auditor = (
                    Auditor(pool=pipeline.pool, redis=pipeline.redis, store=pipeline.store, settings=settings)
                    if pipeline.generations is None
                    else ServingAuditor(
                        pipeline.generations, pool=pipeline.pool, redis=pipeline.redis, store=pipeline.store,
                        settings=settings,
                    )
                )  # fmt: skip
                tasks.create_task(run_scheduled(auditor, interval_s=settings.audit_interval_s, stop=stop))
    finally:
        # Stops reading, waits up to SHUTDOWN_GRACE_S for handlers, cancels the rest (left pending).
        await supervisor.stop()
        log.info("worker_stopped")


async def run_bridge(settings: Settings, *, stop: asyncio.Event) -> None:
    """The bridge role: move legacy jobs onto the jobs stream until ``stop``."""
    redis = open_redis(settings)
    try:
        async with _metrics_endpoint(settings, with_db=False):
            await Bridge(redis, list_key=settings.legacy_list, stream_key=settings.jobs_stream).run(stop)
    finally:
        await redis.aclose()


async def run_worker(settings: Settings, *, stop: asyncio.Event) -> None:
    """The worker role: planner + indexer + reclaimers until ``stop``."""
    pipeline = await Pipeline.open(settings)
    try:
        async with _metrics_endpoint(settings):
            await serve_worker(pipeline, stop=stop)
    finally:
        await pipeline.aclose()


@contextlib.asynccontextmanager
async def _metrics_endpoint(settings: Settings, *, with_db: bool = True) -> AsyncIterator[None]:
    """This process's own ``/metrics`` on ``METRICS_PORT`` (none when it is 0): counters are per process."""
    server = await start_metrics_server(settings, with_db=with_db)
    try:
        yield
    finally:
        if server is not None:
            await server.aclose()


async def run_api(settings: Settings, *, stop: asyncio.Event) -> None:
    """The API role: the control API, dashboard and ``/metrics`` until ``stop``."""
    await serve_api(settings, stop=stop)


async def run_all(settings: Settings, *, stop: asyncio.Event) -> None:
    """Bridge, worker and the HTTP API in one process until ``stop``."""
    pipeline = await Pipeline.open(settings)
    # The API shares the pipeline's connections: an in-process store (edge, local path) has one opener.
    deps = AppDeps(pool=pipeline.pool, redis=pipeline.redis, store=pipeline.store)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(pipeline.bridge.run(stop))
            tasks.create_task(serve_worker(pipeline, stop=stop))
            tasks.create_task(serve_api(settings, stop=stop, deps=deps))
    finally:
        await pipeline.aclose()
