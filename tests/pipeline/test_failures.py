"""Failure paths in drain mode: transient failures retried, too many deliveries dead-lettered."""

from __future__ import annotations

from typing import Any

import asyncpg
from pipeline.helpers import (
    HookedEmbedder,
    add_listings,
    assert_converged,
    entries,
    fail_times,
    one_row,
    push,
)
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.roles import Pipeline
from finally_indexer.processor.vectorstore import VectorStore


async def _pipeline(
    settings: Settings, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, embedder: Embedder
) -> Pipeline:
    return await Pipeline.open(settings, redis=redis, pool=pool, store=store, embedder=embedder)


async def test_transient_failure_is_retried_after_idle_time(
    settings: Settings, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, embedder: Embedder
) -> None:
    flaky = HookedEmbedder(embedder, fail_times(2))
    pipeline = await _pipeline(settings, redis, pool, store, flaky)
    await add_listings(pool, 1, 5)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3, 4, 5]})
    report = await pipeline.drain()
    assert report.reclaimed == 2
    await assert_converged(pool, store, settings)
    row = await one_row(pool, "SELECT status, deliveries FROM index_job_batches")
    assert row["status"] == "done"
    assert row["deliveries"] == 3
    assert await pool.fetchval("SELECT count(*) FROM failed_operations") == 0


async def test_entry_delivered_too_often_is_dead_lettered(
    settings: Settings, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, embedder: Embedder
) -> None:
    settings = settings.model_copy(update={"max_deliveries": 2})
    broken = HookedEmbedder(embedder, fail_times(1000))
    pipeline = await _pipeline(settings, redis, pool, store, broken)
    await add_listings(pool, 1, 3)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})
    await pipeline.drain()
    assert len(broken.calls) == 2  # the first delivery and one redelivery, then the dead letter
    dead = await entries(redis, settings.dead_letter_stream)
    assert len(dead) == 1
    assert dead[0][1][b"dl_reason"] == b"max_deliveries"
    assert b"TransientError" in dead[0][1][b"dl_error"]
    rows = await pool.fetch("SELECT product_id, reason FROM failed_operations ORDER BY product_id")
    assert [(r["product_id"], r["reason"]) for r in rows] == [
        (1, "max_deliveries"),
        (2, "max_deliveries"),
        (3, "max_deliveries"),
    ]
    assert await pool.fetchval("SELECT status FROM index_jobs") == "failed"
    assert await pool.fetchval("SELECT failed FROM index_job_batches") == 3
    assert (await redis.xpending(settings.batch_stream, "indexer"))["pending"] == 0
