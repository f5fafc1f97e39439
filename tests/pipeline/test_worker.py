"""The real worker path: FastStream subscribers, one XACK per batch, reclaim by XAUTOCLAIM.

Acks are checked with XPENDING on the real server (FastStream's docs example acks against the
wrong group; ours must not).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from pipeline.helpers import (
    HookedEmbedder,
    OpenPipeline,
    add_listings,
    assert_converged,
    fail_times,
    pending_counts,
    push,
    run_until_converged,
)
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.vectorstore import VectorStore


async def test_worker_processes_backlog_and_acks_on_the_right_groups(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings
) -> None:
    await add_listings(pool, 1, 60)
    # Pushed before the worker starts: the groups created at 0 must read this backlog.
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await push(redis, settings, b"\xff not utf-8")
    await run_until_converged(pipeline, settings)
    await assert_converged(pool, store, settings)
    assert await pending_counts(redis, settings) == (0, 0)
    groups = {g["name"]: g for g in await redis.xinfo_groups(settings.batch_stream)}
    assert groups[b"indexer"]["lag"] == 0
    assert await redis.xlen(settings.dead_letter_stream) == 1


async def test_worker_reclaims_a_failed_batch(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    store: VectorStore,
    embedder: Embedder,
) -> None:
    flaky = HookedEmbedder(embedder, fail_times(1))
    pipeline = await open_pipeline(embedder=flaky)
    await add_listings(pool, 1, 8)
    await push(redis, settings, {"operation": "sync", "product_ids": list(range(1, 9))})
    await run_until_converged(pipeline, settings)
    await assert_converged(pool, store, settings)
    assert len(flaky.calls) == 2
    assert await pool.fetchval("SELECT deliveries FROM index_job_batches") == 2
