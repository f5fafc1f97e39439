"""Rows whose ``updated_at`` is NULL (fails only that listing) or naive (read as UTC)."""

from __future__ import annotations

from typing import Any

import asyncpg
from pipeline.helpers import add_listings, assert_converged, entries, events, one_row, push
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.messages import EventType


async def test_null_updated_at_fails_only_that_listing(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings
) -> None:
    await pool.execute("ALTER TABLE products ALTER COLUMN updated_at DROP NOT NULL")
    await add_listings(pool, 1, 3)
    await pool.execute("UPDATE products SET updated_at = NULL WHERE id = 2")
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})
    await pipeline.drain()

    assert set(await store.get([1, 2, 3])) == {1, 3}
    flags = dict(await pool.fetch("SELECT id, is_conversion FROM products ORDER BY id"))
    assert flags == {1: True, 2: False, 3: True}
    batch = await one_row(pool, "SELECT status, indexed, failed FROM index_job_batches")
    assert (batch["status"], batch["indexed"], batch["failed"]) == ("done", 2, 1)
    failure = await one_row(pool, "SELECT product_id, reason, error_class, job_id FROM failed_operations")
    assert (failure["product_id"], failure["reason"], failure["error_class"]) == (
        2,
        "missing_updated_at",
        "MissingUpdatedAt",
    )
    failed = [e for e in await events(redis, settings) if e.type is EventType.ITEM_FAILED]
    assert [(e.product_ids, e.reason) for e in failed] == [([2], "missing_updated_at")]
    assert await redis.xlen(settings.dead_letter_stream) == 0
    assert await entries(redis, settings.dead_letter_stream) == []


async def test_naive_updated_at_column_is_read_as_utc(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings
) -> None:
    """A scraper table with ``timestamp without time zone`` indexes and converges like timestamptz."""
    await pool.execute(
        "ALTER TABLE products ALTER COLUMN updated_at TYPE timestamp USING updated_at AT TIME ZONE 'UTC'"
    )
    await add_listings(pool, 1, 5)
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await pipeline.drain()
    await assert_converged(pool, store, settings)
    assert await pool.fetchval("SELECT sum(indexed) FROM index_job_batches") == 5
    # Nothing looks changed afterwards: the incremental sync finds no listing.
    await push(redis, settings, {"operation": "sync", "product_ids": "all", "scope": "changed"})
    await pipeline.drain()
    assert await pool.fetchval("SELECT total FROM index_jobs WHERE scope = 'changed'") == 0
