"""POST /retry's two steps (commit the marks, then append) and the version a retried delete keeps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pipeline.helpers import OpenPipeline, add_listings, assert_converged, push, stored_index
from redis.asyncio import Redis

from finally_indexer.core.errors import DependencyUnavailable
from finally_indexer.core.settings import Settings
from finally_indexer.db import jobs
from finally_indexer.db.failures import Failure, FailureFilter, record_failures
from finally_indexer.devenv._process import free_port
from finally_indexer.processor.enqueue import requeue_failures
from finally_indexer.processor.housekeeping import housekeeping_round
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.jobs import Job, JobSource, Operation

ALL = FailureFilter()


async def _two_failures(pool: asyncpg.Pool[Any]) -> None:
    """An exhausted sync of listing 1 and a raw legacy job (valid now) to replay."""
    raw = json.dumps({"operation": "sync", "product_ids": [2]}).encode()
    await record_failures(pool, [
        Failure(operation_type="sync", reason="max_deliveries", error_class="MaxDeliveries", error_message="x", product_id=1),
        Failure(operation_type="job", reason="invalid", error_class="MalformedJob", error_message="y", payload=raw),
    ])  # fmt: skip


async def test_a_database_failure_before_the_commit_appends_nothing(
    pool: asyncpg.Pool[Any], redis: Redis, settings: Settings
) -> None:
    """Before, the entries were appended inside the transaction: a later failure rolled the marks
    back while the entries ran, and the next /retry queued the same failures again."""
    await _two_failures(pool)
    await pool.execute("""
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused (test)'; END $$;
        CREATE TRIGGER refuse BEFORE UPDATE ON failed_operations FOR EACH ROW EXECUTE FUNCTION refuse();
    """)  # a real PostgreSQL error while the rows are being marked

    with pytest.raises(asyncpg.RaiseError):
        await requeue_failures(pool, redis, jobs_stream=settings.jobs_stream, flt=ALL, limit=10)

    assert await redis.xlen(settings.jobs_stream) == 0
    assert await pool.fetchval("SELECT count(*) FROM index_jobs") == 0
    assert await pool.fetchval("SELECT count(*) FROM failed_operations WHERE resolved_at IS NULL") == 2


async def test_a_redis_failure_after_the_commit_is_finished_later_exactly_once(
    *, open_pipeline: OpenPipeline, pool: asyncpg.Pool[Any], redis: Redis, settings: Settings
) -> None:
    """The marks and the retry job are committed; Redis refuses the appends. The next worker
    housekeeping round appends what is owed, once; a later /retry appends nothing twice."""
    await add_listings(pool, 1, 2)
    await _two_failures(pool)
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(DependencyUnavailable):
            await requeue_failures(pool, down, jobs_stream=settings.jobs_stream, flt=ALL, limit=10)
    finally:
        await down.aclose()

    rows = await pool.fetch(
        "SELECT resolution, retry_count, replay_entry_id FROM failed_operations ORDER BY id"
    )
    assert [(r["resolution"], r["retry_count"]) for r in rows] == [("requeued", 1), ("requeued", 1)]
    job = await pool.fetchrow("SELECT job_id, status, stream_entry_id FROM index_jobs")
    assert job is not None
    assert (job["status"], job["stream_entry_id"]) == ("pending", None)
    assert await redis.xlen(settings.jobs_stream) == 0

    await housekeeping_round(redis, settings, consumer="c", pool=pool)
    assert await redis.xlen(settings.jobs_stream) == 2  # the retry job and the raw payload
    again = await requeue_failures(pool, redis, jobs_stream=settings.jobs_stream, flt=ALL, limit=10)
    assert (again.requeued, again.job_ids, again.replayed_payloads) == (0, [], 0)
    assert await redis.xlen(settings.jobs_stream) == 2
    assert await pool.fetchval(
        "SELECT stream_entry_id IS NOT NULL FROM index_jobs WHERE job_id = $1", job["job_id"]
    )
    assert await pool.fetchval("SELECT count(*) FROM failed_operations WHERE replay_entry_id IS NULL") == 1

    pipeline = await open_pipeline()
    await pipeline.drain()
    assert await pool.fetchval("SELECT count(*) FROM index_jobs WHERE status = 'completed'") == 2


# --- a retried or re-published delete keeps its version ------------------------------------------------
async def _recreated_after_a_delete(
    open_pipeline: OpenPipeline, pool: asyncpg.Pool[Any], redis: Redis, settings: Settings
) -> tuple[datetime, Job]:
    """A delete of listing 1 received at T0 (its job row only); listing 1 re-created at T1 > T0 and indexed."""
    now = datetime.now(UTC)
    received, recreated = now - timedelta(minutes=2), now - timedelta(minutes=1)
    delete = Job.build(source=JobSource.API, operation=Operation.DELETE, product_ids=[1], scope="ids")
    delete = delete.model_copy(update={"received_at": received})
    await jobs.insert_job(pool, delete)
    await add_listings(pool, 1, 1)
    await pool.execute("UPDATE products SET updated_at = $1", recreated)
    await push(redis, settings, {"operation": "sync", "product_ids": [1]})
    await (await open_pipeline()).drain()
    return received, delete


async def test_a_retried_delete_spares_a_listing_recreated_after_it_was_received(
    *, open_pipeline: OpenPipeline, pool: asyncpg.Pool[Any], redis: Redis, settings: Settings,
    store: VectorStore,
) -> None:  # fmt: skip
    """Before, a retried delete took the retry's time as its version and removed the listing."""
    _, delete = await _recreated_after_a_delete(open_pipeline, pool, redis, settings)
    await record_failures(pool, [Failure(
        operation_type="delete", reason="max_deliveries", error_class="MaxDeliveries", error_message="x",
        product_id=1, job_id=delete.job_id,
    )])  # fmt: skip

    result = await requeue_failures(pool, redis, jobs_stream=settings.jobs_stream, flt=ALL, limit=10)
    await (await open_pipeline()).drain()

    [retry] = result.job_ids
    assert await pool.fetchval("SELECT status FROM index_jobs WHERE job_id = $1", retry) == "completed"
    assert 1 in await stored_index(store)
    await assert_converged(pool, store, settings)


async def test_a_republished_delete_keeps_the_time_it_was_received(
    *, open_pipeline: OpenPipeline, pool: asyncpg.Pool[Any], redis: Redis, settings: Settings,
    store: VectorStore,
) -> None:  # fmt: skip
    """Recovery after a Redis flush re-publishes a running delete: its version is its received
    time, not the time its row was written (later than received for a job planned late)."""
    _, delete = await _recreated_after_a_delete(open_pipeline, pool, redis, settings)
    await jobs.insert_batches(pool, delete.job_id, "delete", [[1]])
    await jobs.mark_planned(pool, delete.job_id, total=1, batches=1)
    pipeline = await open_pipeline()

    republished = await pipeline.republish_unfinished()
    await pipeline.drain()

    assert republished.batches == 1
    assert (
        await pool.fetchval("SELECT status FROM index_jobs WHERE job_id = $1", delete.job_id) == "completed"
    )
    assert 1 in await stored_index(store)
    await assert_converged(pool, store, settings)
