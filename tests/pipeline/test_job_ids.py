"""Job ids: a legacy job is its jobs-stream entry (a producer's job_id is a label that may repeat);
an API job keeps the id the API inserted."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from pipeline.helpers import add_listings, assert_converged, one_row, push
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamEntry
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.jobs import JobSource
from finally_indexer.schemas.messages import JobEntry


async def test_legacy_jobs_repeating_a_producer_job_id_are_all_applied(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings
) -> None:
    await add_listings(pool, 1, 4)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2], "job_id": "nightly-update"})
    await pipeline.drain()
    await push(redis, settings, {"operation": "sync", "product_ids": [3, 4], "job_id": "nightly-update"})
    await pipeline.drain()

    await assert_converged(pool, store, settings)
    rows = await pool.fetch(
        "SELECT job_id, external_id, stream_entry_id, product_ids, status FROM index_jobs ORDER BY created_at"
    )
    assert [(r["external_id"], list(r["product_ids"]), r["status"]) for r in rows] == [
        ("nightly-update", [1, 2], "completed"),
        ("nightly-update", [3, 4], "completed"),
    ]
    assert all(r["job_id"] == r["stream_entry_id"] for r in rows)


async def test_redelivered_legacy_entry_replans_the_same_job(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings
) -> None:
    await add_listings(pool, 1, 2)
    raw = json.dumps({"operation": "sync", "product_ids": [1, 2], "job_id": "nightly-update"}).encode()
    fields = {
        k.encode(): v if isinstance(v, bytes) else v.encode()
        for k, v in JobEntry(payload=raw).to_fields().items()
    }
    entry = StreamEntry(settings.jobs_stream, "1700000000000-0", fields)
    await pipeline.planner.handle(entry)
    await pipeline.planner.handle(entry)  # a redelivery of the same entry
    row = await one_row(pool, "SELECT job_id, external_id, batches FROM index_jobs")
    assert (row["job_id"], row["external_id"], row["batches"]) == ("1700000000000-0", "nightly-update", 1)
    assert await redis.xlen(settings.batch_stream) == 2  # the pending batch, published once per delivery
    await pipeline.drain()
    await assert_converged(pool, store, settings)
    assert await pool.fetchval("SELECT count(*) FROM index_jobs") == 1


async def test_api_job_keeps_the_id_the_api_inserted(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    await add_listings(pool, 1, 2)
    raw = json.dumps({"operation": "sync", "product_ids": [1, 2], "job_id": "api-1"}).encode()
    await redis.xadd(settings.jobs_stream, JobEntry(payload=raw, source=JobSource.API).to_fields())  # type: ignore[arg-type]
    await pipeline.drain()
    row = await one_row(pool, "SELECT job_id, external_id, status FROM index_jobs")
    assert (row["job_id"], row["external_id"], row["status"]) == ("api-1", None, "completed")
