"""The ``/status`` projection: queues from Redis, listings, jobs and failures from PostgreSQL.

:class:`StatusProjector` is shared by ``GET /status``, the dashboard and the ``/metrics`` gauges
(:mod:`finally_indexer.http.collector`), so the three always agree.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import batch_group, jobs_group
from finally_indexer.db import failures, reports
from finally_indexer.http.deps import PgPool
from finally_indexer.http.job_views import progress
from finally_indexer.http.streams import StreamStats, stream_stats
from finally_indexer.http.throughput import MinuteBucket, ThroughputTracker
from finally_indexer.schemas.api import JobProgress

#: Latest failures listed on /status and the dashboard.
RECENT_ERRORS = 10
#: Completed minutes averaged for the "listings per minute" figure.
RATE_MINUTES = 5


@dataclass(frozen=True, slots=True)
class ListingsFigures:
    total: int
    indexed: int
    pending: int
    coverage: float
    freshness_seconds: float


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """Everything about Redis: the legacy list, the two work streams, dead letters."""

    legacy_list: str
    legacy_list_length: int
    streams: list[StreamStats]
    dead_letter_stream: str
    dead_letter_length: int


@dataclass(frozen=True, slots=True)
class DbFigures:
    listings: ListingsFigures
    failures_total: int
    failures_open: int
    failures_last_hour: int


@dataclass(frozen=True, slots=True)
class JobSummary:
    job_id: str
    status: str
    operation: str
    scope: str
    source: str
    created_at: datetime
    finished_at: datetime | None
    progress: JobProgress


@dataclass(frozen=True, slots=True)
class RecentError:
    id: int
    created_at: datetime
    operation_type: str
    product_id: int | None
    reason: str
    error_message: str


@dataclass(frozen=True, slots=True)
class Throughput:
    window_minutes: int
    listings_per_minute: float
    per_minute: list[MinuteBucket]


@dataclass(frozen=True, slots=True)
class StatusReport:
    """``GET /status``."""

    generated_at: datetime
    listings: ListingsFigures
    queues: QueueFigures
    throughput: Throughput
    jobs: list[JobSummary]
    failures_total: int
    failures_open: int
    failures_last_hour: int
    recent_errors: list[RecentError]


class StatusProjector:
    """Computes the figures; holds the throughput tracker's state between calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.throughput = ThroughputTracker(settings.events_stream)

    async def queues(self, redis: Redis) -> QueueFigures:
        s = self.settings
        legacy, jobs, batches, dead = await asyncio.gather(
            redis.llen(s.legacy_list),
            stream_stats(redis, jobs_group(s)),
            stream_stats(redis, batch_group(s)),
            redis.xlen(s.dead_letter_stream),
        )
        return QueueFigures(s.legacy_list, int(legacy), [jobs, batches], s.dead_letter_stream, int(dead))

    async def database(self, pool: PgPool) -> DbFigures:
        listings, fails = await asyncio.gather(reports.listing_counts(pool), failures.failure_counts(pool))
        figures = ListingsFigures(
            listings.total,
            listings.indexed,
            listings.pending,
            round(listings.coverage, 4),
            round(listings.freshness_seconds, 1),
        )
        return DbFigures(figures, fails.total, fails.open, fails.last_hour)

    async def report(self, pool: PgPool, redis: Redis) -> StatusReport:
        """The whole ``/status`` document."""
        queues, db, minutes, job_rows, error_rows = await asyncio.gather(
            self.queues(redis),
            self.database(pool),
            self.throughput.refresh(redis),
            reports.current_jobs(pool),
            failures.recent_failures(pool, RECENT_ERRORS),
        )
        return StatusReport(
            generated_at=datetime.fromtimestamp(time.time()).astimezone(),
            listings=db.listings,
            queues=queues,
            throughput=Throughput(len(minutes), _rate(minutes), minutes),
            jobs=[_job_summary(r) for r in job_rows],
            failures_total=db.failures_total,
            failures_open=db.failures_open,
            failures_last_hour=db.failures_last_hour,
            recent_errors=[_recent_error(r) for r in error_rows],
        )


def _rate(minutes: list[MinuteBucket]) -> float:
    """Listings per minute over the last completed minutes (the current one is still filling)."""
    done = minutes[-1 - RATE_MINUTES : -1]
    return round(sum(m.listings for m in done) / len(done), 1) if done else 0.0


def _job_summary(row: asyncpg.Record) -> JobSummary:
    return JobSummary(
        row["job_id"],
        row["status"],
        row["operation"],
        row["scope"],
        row["source"],
        row["created_at"],
        row["finished_at"],
        progress(row),
    )


def _recent_error(row: asyncpg.Record) -> RecentError:
    return RecentError(
        row["id"],
        row["created_at"],
        row["operation_type"],
        row["product_id"],
        row["reason"],
        row["error_message"][:500],
    )
