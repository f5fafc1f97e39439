"""The real worker path: FastStream subscribers, one XACK per batch, reclaim by XAUTOCLAIM.

Acks are checked with XPENDING on the real server (FastStream's docs example acks against the
wrong group; ours must not).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from pipeline.helpers import (
    HookedEmbedder,
    OpenPipeline,
    add_listings,
    assert_converged,
    expected_index,
    fail_times,
    push,
    stored_index,
    wait_until,
)
from redis.asyncio import Redis

from finally_indexer.core.roles import serve_worker
from finally_indexer.core.settings import Settings
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.vectorstore import VectorStore


async def _pending(redis: Redis, settings: Settings) -> tuple[int, int]:
    jobs = await redis.xpending(settings.jobs_stream, "planner")
    batches = await redis.xpending(settings.batch_stream, "indexer")
    return jobs["pending"], batches["pending"]


async def _run_until_converged(pipeline: Pipeline, settings: Settings) -> None:
    stop = asyncio.Event()
    worker = asyncio.create_task(serve_worker(pipeline, stop=stop))
    bridge = asyncio.create_task(pipeline.bridge.run(stop))

    async def converged() -> bool:
        done = await pipeline.pool.fetchval("SELECT count(*) = 0 FROM index_jobs WHERE status <> 'completed'")
        same = await stored_index(pipeline.store) == await expected_index(
            pipeline.pool, settings.text_template
        )
        return bool(done) and same and await _pending(pipeline.redis, settings) == (0, 0)

    try:
        await wait_until(converged)
    finally:
        stop.set()
        await asyncio.gather(worker, bridge)


async def test_worker_processes_backlog_and_acks_on_the_right_groups(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings
) -> None:
    await add_listings(pool, 1, 60)
    # Pushed before the worker starts: the groups created at 0 must read this backlog.
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await push(redis, settings, b"\xff not utf-8")
    await _run_until_converged(pipeline, settings)
    await assert_converged(pool, store, settings)
    assert await _pending(redis, settings) == (0, 0)
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
    await _run_until_converged(pipeline, settings)
    await assert_converged(pool, store, settings)
    assert len(flaky.calls) == 2
    assert await pool.fetchval("SELECT deliveries FROM index_job_batches") == 2
