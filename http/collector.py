"""Refreshes the projection gauges of :mod:`finally_indexer.core.metrics` just before a scrape.

prometheus_client collectors are synchronous, and the figures need Redis and PostgreSQL calls, so
``/metrics`` awaits :func:`refresh_gauges` and then renders the registry ("refresh before
generate"). A dependency that does not answer leaves its gauges at their last value and is logged;
the scrape itself still succeeds, and ``up``/the health alerts say what is down.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from prometheus_client import generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from finally_indexer.core import metrics as m
from finally_indexer.http.deps import PgPool
from finally_indexer.http.status import DbFigures, QueueFigures, StatusProjector

log = structlog.get_logger(__name__)

#: A scrape must answer well inside Prometheus' default 10 s scrape timeout.
REFRESH_TIMEOUT_S = 3.0


async def refresh_gauges(projector: StatusProjector, pool: PgPool | None, redis: Redis) -> None:
    """Set every projection gauge from Redis (and PostgreSQL when a pool is given)."""
    try:
        async with asyncio.timeout(REFRESH_TIMEOUT_S):
            set_queue_gauges(await projector.queues(redis))
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("metrics_refresh_failed", dependency="redis", error=repr(exc))
    if pool is None:
        return
    try:
        async with asyncio.timeout(REFRESH_TIMEOUT_S):
            set_db_gauges(await projector.database(pool))
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        log.warning("metrics_refresh_failed", dependency="postgres", error=repr(exc))


def set_queue_gauges(q: QueueFigures) -> None:
    m.LEGACY_LIST_LENGTH.set(q.legacy_list_length)
    m.STREAM_LENGTH.labels(stream=q.dead_letter_stream).set(q.dead_letter_length)
    for s in q.streams:
        g = s.group
        m.STREAM_LENGTH.labels(stream=s.name).set(s.length)
        m.GROUP_LAG.labels(stream=s.name, group=g.group).set(g.lag)
        m.GROUP_PENDING.labels(stream=s.name, group=g.group).set(g.pending)
        m.OLDEST_PENDING_AGE.labels(stream=s.name, group=g.group).set(g.oldest_pending_idle_seconds)
        m.CONSUMERS_ALIVE.labels(stream=s.name, group=g.group).set(g.consumers_alive)


def set_db_gauges(d: DbFigures) -> None:
    m.LISTINGS_TOTAL.set(d.listings.total)
    m.LISTINGS_INDEXED.set(d.listings.indexed)
    m.INDEX_COVERAGE.set(d.listings.coverage)
    m.FRESHNESS.set(d.listings.freshness_seconds)
    m.FAILURES_OPEN.set(d.failures_open)


async def render(projector: StatusProjector, pool: PgPool | None, redis: Redis) -> bytes:
    """Refresh, then the text exposition of the whole registry."""
    await refresh_gauges(projector, pool, redis)
    return generate_latest(m.REGISTRY)
