"""The seed's example jobs, pushed with plain LPUSH, converge: the store reflects PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg
from pipeline.helpers import add_listings, assert_converged, push
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.vectorstore import VectorStore


async def test_seed_example_jobs_converge(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings
) -> None:
    await add_listings(pool, 1, 130)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await pipeline.drain()
    await assert_converged(pool, store, settings)

    await pool.execute(
        "UPDATE products SET content = '가격 인하', updated_at = now(), is_conversion = false WHERE id = 123"
    )
    await pool.execute("DELETE FROM products WHERE id = 77")
    await push(redis, settings, {"operation": "update", "product_ids": [123]})
    await push(redis, settings, {"operation": "delete", "product_ids": [77]})
    await pipeline.drain()
    await assert_converged(pool, store, settings)
    assert await pool.fetchval("SELECT count(*) FROM index_jobs WHERE status <> 'completed'") == 0
    assert await pool.fetchval("SELECT count(*) FROM index_state") == 129
