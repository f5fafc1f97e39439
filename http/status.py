"""``GET /status``: queues from Redis, listings, jobs and failures from PostgreSQL, as one document.

:class:`StatusProjector` computes the figures for ``GET /status``, the dashboard (which polls it)
and the ``/metrics`` gauges (:mod:`finally_indexer.http.metrics`), so the three always agree. The
stream figures come from :mod:`~finally_indexer.http.status_streams`, the per-minute throughput
from :mod:`~finally_indexer.http.status_throughput`; the response models are in
:mod:`finally_indexer.schemas.status`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from litestar import get
from litestar.di import NamedDependency
from litestar.types import ControllerRouterHandler
from redis.asyncio import Redis

from finally_indexer.core.settings import EmbedderKind, Settings
from finally_indexer.core.streams import batch_group, jobs_group
from finally_indexer.db import failures, reports
from finally_indexer.db import generations as generation_records
from finally_indexer.http.auth import require_read_key
from finally_indexer.http.deps import AppDeps, PgPool
from finally_indexer.http.jobs import cost, progress
from finally_indexer.http.status_streams import stream_stats
from finally_indexer.http.status_throughput import ThroughputTracker
from finally_indexer.processor.embedders.budget import budget_key, read_budget
from finally_indexer.processor.embedders.factory import limits_of
from finally_indexer.schemas.status import (
    EmbeddingBudget,
    JobSummary,
    ListingsFigures,
    MinuteBucket,
    QueueFigures,
    RecentError,
    ReindexFigures,
    StatusReport,
    Throughput,
)

#: Latest failures listed on /status and the dashboard.
RECENT_ERRORS = 10
#: Completed minutes averaged for the "listings per minute" figure.
RATE_MINUTES = 5


@dataclass(frozen=True, slots=True)
class DbFigures:
    """What PostgreSQL says: listings and failure counts (for ``/status`` and the gauges)."""

    listings: ListingsFigures
    failures_total: int
    failures_open: int
    failures_last_hour: int


class StatusProjector:
    """Computes the figures; holds the throughput tracker's state between calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.throughput = ThroughputTracker(settings.events_stream)

    async def queues(self, redis: Redis) -> QueueFigures:
        """The legacy list, the jobs and batch streams with their groups, the dead letters."""
        s = self.settings
        legacy, jobs, batches, dead = await asyncio.gather(
            redis.llen(s.legacy_list),
            stream_stats(redis, jobs_group(s)),
            stream_stats(redis, batch_group(s)),
            redis.xlen(s.dead_letter_stream),
        )
        return QueueFigures(s.legacy_list, int(legacy), [jobs, batches], s.dead_letter_stream, int(dead))

    async def database(self, pool: PgPool) -> DbFigures:
        """Listing coverage and freshness, failure counts."""
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
        queues, db, minutes, job_rows, error_rows, budget = await asyncio.gather(
            self.queues(redis),
            self.database(pool),
            self.throughput.refresh(redis),
            reports.current_jobs(pool),
            failures.recent_failures(pool, RECENT_ERRORS),
            self.embedding_budget(redis),
        )
        building = await self.reindex(pool)
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
            embedding_budget=budget,
            reindex=building,
        )

    async def reindex(self, pool: PgPool) -> ReindexFigures | None:
        """The generation being built and its progress (None when no reindex runs)."""
        served = self.settings.collection
        build = await generation_records.building(pool, served)
        if build is None:
            return None
        serving = await generation_records.serving(pool, served)
        found = await generation_records.build_progress(pool, build.job_id) if build.job_id else None
        done, total = (found.done, found.total) if found else (0, 0)
        elapsed = max(time.time() - build.created_at.timestamp(), 1e-3)
        rate = done / elapsed
        return ReindexFigures(
            generation=build.name, serving=serving.name if serving else None, job_id=build.job_id,
            job_status=found.status if found else "pending", done=done, total=total,
            listings_per_second=round(rate, 2), eta_seconds=round((total - done) / rate, 1) if rate > 0 else None,
            started_at=build.created_at,
        )  # fmt: skip

    async def embedding_budget(self, redis: Redis) -> EmbeddingBudget | None:
        """The shared embedding budget of the configured key and model (None: offline embedder)."""
        s = self.settings
        if s.resolved_embedder() != EmbedderKind.OPENAI or s.openai_api_key is None:
            return None
        raw, (now_s, _) = await asyncio.gather(
            read_budget(redis, budget_key(s.openai_api_key, s.embedding_model)), redis.time()
        )
        tpm, rpm = limits_of(s, raw)
        minute = int(now_s // 60)  # Redis's clock, as the workers' script counts minutes (``TIME``)
        # the hash's counters move only when a request is made: a quiet minute leaves them stale
        this = int(raw.get("um", 0)) if int(raw.get("m", -1)) == minute else 0
        last = {minute: int(raw.get("pm", 0)), minute - 1: int(raw.get("um", 0))}.get(
            int(raw.get("m", -1)), 0
        )
        return EmbeddingBudget(
            tokens_per_minute_limit=tpm,
            requests_per_minute_limit=rpm,
            tokens_this_minute=this,
            tokens_last_minute=last,
            used_last_minute=round(last / tpm, 4) if tpm else 0.0,
            pace=round(raw.get("f", 1.0), 4),
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
        cost(row),
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


@get(
    "/status",
    guards=[require_read_key],
    tags=["status"],
    summary="Queues, lag, throughput, jobs in progress and failures",
)
async def status(deps: NamedDependency[AppDeps], projector: NamedDependency[StatusProjector]) -> StatusReport:
    return await projector.report(deps.pool, deps.redis)


ROUTES: list[ControllerRouterHandler] = [status]
