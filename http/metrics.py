"""``GET /metrics``: the Prometheus exposition, one route for every process that serves it.

The API app serves it beside the control API; the worker and bridge processes serve it from the
metrics app (:func:`finally_indexer.http.app.create_metrics_app`, run by
:func:`finally_indexer.http.server.start_metrics_server`). Each process has its own counters
(prometheus_client keeps them per process), so Prometheus scrapes every process.

The queue gauges of :mod:`finally_indexer.core.metrics` are projections of Redis and PostgreSQL
and read the same in every process (aggregate them with ``max``). prometheus_client collectors
are synchronous while the figures need Redis and PostgreSQL calls, so the route refreshes them
(:func:`refresh_gauges`, from the same :class:`~finally_indexer.http.status.StatusProjector` as
``/status``) and then renders the registry. A dependency that does not answer leaves its gauges
at their last value and is logged; the scrape still succeeds, and ``up``/the health alerts say
what is down.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.types import ControllerRouterHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from finally_indexer.core import metrics as m
from finally_indexer.db import outbox
from finally_indexer.http.deps import PgPool
from finally_indexer.http.status import DbFigures, StatusProjector
from finally_indexer.processor.audit import refresh_audit_gauges
from finally_indexer.schemas.status import QueueFigures

log = structlog.get_logger(__name__)

#: A scrape must answer well inside Prometheus' default 10 s scrape timeout.
REFRESH_TIMEOUT_S = 3.0


@get(
    "/metrics", tags=["status"], summary="Prometheus exposition (projection gauges refreshed at scrape time)"
)
async def metrics(
    # ``pool`` is None in a process without PostgreSQL (the bridge): its gauges are not refreshed
    projector: NamedDependency[StatusProjector],
    redis: NamedDependency[Redis],
    pool: NamedDependency[PgPool | None],
) -> Response[bytes]:
    await refresh_gauges(projector, pool, redis)
    return Response(generate_latest(m.REGISTRY), media_type=CONTENT_TYPE_LATEST)


ROUTES: list[ControllerRouterHandler] = [metrics]


async def refresh_gauges(projector: StatusProjector, pool: PgPool | None, redis: Redis) -> None:
    """Set every projection gauge from Redis (and PostgreSQL when a pool is given)."""
    try:
        async with asyncio.timeout(REFRESH_TIMEOUT_S):
            _set_queue_gauges(await projector.queues(redis))
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("metrics_refresh_failed", dependency="redis", error=repr(exc))
    if pool is None:
        return
    try:
        async with asyncio.timeout(REFRESH_TIMEOUT_S):
            _set_db_gauges(await projector.database(pool))
            await refresh_audit_gauges(pool)
            m.EVENT_OUTBOX_ROWS.set(await outbox.pending(pool))
            building = await projector.reindex(pool)
            m.REINDEX_TOTAL.set(building.total if building else 0)
            m.REINDEX_DONE.set(building.done if building else 0)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        log.warning("metrics_refresh_failed", dependency="postgres", error=repr(exc))


def _set_queue_gauges(q: QueueFigures) -> None:
    m.LEGACY_LIST_LENGTH.set(q.legacy_list_length)
    m.STREAM_LENGTH.labels(stream=q.dead_letter_stream).set(q.dead_letter_length)
    for s in q.streams:
        g = s.group
        m.STREAM_LENGTH.labels(stream=s.name).set(s.length)
        m.GROUP_LAG.labels(stream=s.name, group=g.group).set(g.lag)
        m.GROUP_PENDING.labels(stream=s.name, group=g.group).set(g.pending)
        m.OLDEST_PENDING_AGE.labels(stream=s.name, group=g.group).set(g.oldest_pending_age_seconds)
        m.CONSUMERS_ALIVE.labels(stream=s.name, group=g.group).set(g.consumers_alive)


def _set_db_gauges(d: DbFigures) -> None:
    m.LISTINGS_TOTAL.set(d.listings.total)
    m.LISTINGS_INDEXED.set(d.listings.indexed)
    m.INDEX_COVERAGE.set(d.listings.coverage)
    m.FRESHNESS.set(d.listings.freshness_seconds)
    m.FAILURES_OPEN.set(d.failures_open)
