"""The one consume path: dead-letter decision, failure memory and acks, for new and reclaimed entries."""

from __future__ import annotations

from typing import Any

import asyncpg
from pipeline.helpers import HookedEmbedder, OpenPipeline, add_listings, entries, fail_times, one_row, push
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.processor.consume import read_new
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.pipeline import Pipeline


async def test_exhausted_legacy_job_with_a_producer_job_id_ends_failed_with_its_reason(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    """The job row is keyed by the entry id, not the producer's ``job_id``: dead-lettering must find it."""
    await add_listings(pool, 1, 3)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3], "job_id": "nightly-update"})
    await pipeline.bridge.drain()
    lane = pipeline.planner_lane
    [entry] = await read_new(redis, lane.pair, pipeline.consumer.name, count=10)
    # The batch stream refuses writes (a real Redis WRONGTYPE error): each delivery plans the job
    # (its row commits as 'running') and then fails to publish its batches.
    await redis.delete(settings.batch_stream)
    await redis.set(settings.batch_stream, "not a stream")

    for delivery in range(1, settings.max_deliveries + 1):
        consumed = await pipeline.consumer.consume(lane, [entry], {entry.entry_id: delivery})
        assert list(consumed.failed) == [entry.entry_id]
    assert (await one_row(pool, "SELECT status FROM index_jobs"))["status"] == "running"

    consumed = await pipeline.consumer.consume(lane, [entry], {entry.entry_id: settings.max_deliveries + 1})

    assert consumed.acked == [entry.entry_id]
    job = await one_row(pool, "SELECT job_id, external_id, status, error FROM index_jobs")
    assert (job["job_id"], job["external_id"], job["status"]) == (entry.entry_id, "nightly-update", "failed")
    assert "WRONGTYPE" in job["error"]
    failure = await one_row(pool, "SELECT reason, job_id, entry_id FROM failed_operations")
    assert (failure["reason"], failure["entry_id"]) == ("max_deliveries", entry.entry_id)
    assert (await redis.xpending(lane.pair.stream, lane.pair.group))["pending"] == 0


async def test_drain_remembers_the_first_delivery_failure_for_the_dead_letter(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    embedder: Embedder,
) -> None:
    """A batch failing on its only allowed delivery is dead-lettered with that failure's message."""
    failing = HookedEmbedder(embedder, fail_times(10))
    pipeline = await open_pipeline(embedder=failing, max_deliveries=1)
    settings = pipeline.settings
    await add_listings(pool, 1, 2)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2]})
    await pipeline.drain()

    [(_, dead)] = await entries(redis, settings.dead_letter_stream)
    assert dead[b"dl_reason"] == b"max_deliveries"
    assert b"embedding API briefly unavailable" in dead[b"dl_error"]
    assert len(failing.calls) == 1  # the first delivery only; the second was dead-lettered at once


async def test_partial_failure_acks_only_what_succeeded(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    embedder: Embedder,
) -> None:
    """One read of two batches, one failing: one XACK for the other, the failing one stays pending."""
    failing = HookedEmbedder(embedder, fail_times(1))
    pipeline = await open_pipeline(embedder=failing)
    await add_listings(pool, 1, settings.batch_size * 2)
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await pipeline.bridge.drain()
    jobs = pipeline.planner_lane
    await pipeline.consumer.consume(jobs, await read_new(redis, jobs.pair, "c", count=10))
    lane = pipeline.indexer_lane
    batches = await read_new(redis, lane.pair, pipeline.consumer.name, count=10)
    assert len(batches) == 2

    consumed = await pipeline.consumer.consume(lane, batches)

    assert len(consumed.acked) == 1
    assert len(consumed.failed) == 1
    [pending] = await redis.xpending_range(lane.pair.stream, lane.pair.group, min="-", max="+", count=10)
    assert pending["message_id"] == next(iter(consumed.failed)).encode()
