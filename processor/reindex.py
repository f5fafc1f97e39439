"""Starting a reindex: record a new generation as *building* and queue the job that builds it.

The target is the identity of the settings the reindex is started with (``EMBEDDING_MODEL``,
``VECTOR_SIZE``, ``TEXT_TEMPLATE`` … of this process), recorded with the generation so that every
worker builds the same embedder for it (:mod:`.generations`). The job is an ordinary sync of every
listing (scope ``all``): planned, rate-limited, retried, dead-lettered and counted like any other;
its batches are routed to the new generation only. The record and the job row commit together,
and the database refuses a second building generation (:class:`ReindexBusy`).

A dry run estimates the same job forced (every listing embedded with the new settings: the new
generation starts empty) and queues nothing (:mod:`.estimate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from redis.asyncio import Redis

from finally_indexer.core.errors import ConfigurationError
from finally_indexer.core.settings import Settings
from finally_indexer.db import generations as records
from finally_indexer.db.generations import BuildRunning
from finally_indexer.processor.enqueue import enqueue_job
from finally_indexer.processor.estimate import Estimate, dry_run
from finally_indexer.processor.generations import identity_of, new_row
from finally_indexer.processor.stores.generations import generation_name
from finally_indexer.schemas.jobs import Job, JobSource, Operation

__all__ = ["ReindexBusy", "Started", "estimate_reindex", "reindex_job", "start_reindex"]

log = structlog.get_logger(__name__)


class ReindexBusy(RuntimeError):
    """A generation of the served name is being built already."""


@dataclass(frozen=True, slots=True)
class Started:
    """A reindex that was queued: the generation it builds and the job that builds it."""

    job_id: str
    generation: str
    serving: str


def reindex_job(*, requested_by: str | None, force: bool = False) -> Job:
    """The job that builds a generation: a sync of every listing (and of orphaned index rows)."""
    return Job.build(
        source=JobSource.API, operation=Operation.SYNC, product_ids="all", scope="all", force=force,
        requested_by=requested_by,
    )  # fmt: skip


async def start_reindex(
    pool: asyncpg.Pool[Any], redis: Redis, settings: Settings, *, requested_by: str | None
) -> Started:
    """Record the generation of ``settings``' identity as building and queue its job.

    :class:`ReindexBusy` when a build runs; :class:`ConfigurationError` before any worker has
    recorded a serving generation (there is nothing to re-index from yet).
    """
    served = settings.collection
    serving = await records.serving(pool, served)
    if serving is None:
        raise ConfigurationError(
            f"no generation serves {served!r} yet: start a worker first (it records the collection it serves)"
        )
    running = await records.building(pool, served)
    if running is not None:
        raise ReindexBusy(_busy(running.name, running.job_id))
    job = reindex_job(requested_by=requested_by)
    identity = identity_of(settings)
    try:
        async with pool.acquire() as conn, conn.transaction():
            name = generation_name(served, identity, await records.names(conn))
            await records.insert_building(conn, new_row(settings, name, status="building", job_id=job.job_id))
            # the row and the job commit together: a worker never sees the job without its generation
            await enqueue_job(conn, redis, jobs_stream=settings.jobs_stream, job=job)
    except BuildRunning:
        running = await records.building(pool, served)
        raise ReindexBusy(
            _busy(running.name if running else "?", running.job_id if running else None)
        ) from None
    log.info("reindex_started", served=served, generation=name, job_id=job.job_id, serving=serving.name)
    return Started(job_id=job.job_id, generation=name, serving=serving.name)


def _busy(name: str, job_id: str | None) -> str:
    return (
        f"a reindex is already running: generation {name} is being built by job {job_id}; "
        "wait for it to finish (GET /status shows its progress) before starting another"
    )


async def estimate_reindex(
    pool: asyncpg.Pool[Any], settings: Settings, *, redis: Redis | None = None
) -> Estimate:
    """What a reindex with ``settings`` would embed, its tokens, cost and duration; queues nothing."""
    return await dry_run(pool, settings, reindex_job(requested_by="dry-run", force=True), redis=redis)
