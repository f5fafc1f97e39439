"""The one consume path: dead-letter decision, failure memory and acks, for new and reclaimed entries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
from pipeline.helpers import (
    HookedEmbedder,
    OpenPipeline,
    add_listings,
    assert_converged,
    entries,
    fail_times,
    one_row,
    planned_batches,
    push,
    wait_until,
)
from redis.asyncio import Redis

from finally_indexer.core.errors import ConfigurationError, TransientError
from finally_indexer.core.roles import serve_worker
from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamEntry
from finally_indexer.processor.consume import FailureMemory, read_new
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.vectorstore import VectorStore


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
    failing = HookedEmbedder(embedder, fail_times(10, RuntimeError))
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
    lane = pipeline.indexer_lane
    batches = await planned_batches(pipeline)
    assert len(batches) == 2

    consumed = await pipeline.consumer.consume(lane, batches)

    assert len(consumed.acked) == 1
    assert len(consumed.failed) == 1
    [pending] = await redis.xpending_range(lane.pair.stream, lane.pair.group, min="-", max="+", count=10)
    assert pending["message_id"] == next(iter(consumed.failed)).encode()


async def test_an_outage_longer_than_max_deliveries_never_dead_letters(
    *, open_pipeline: OpenPipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, embedder: Embedder
) -> None:  # fmt: skip
    """Eight deliveries fail on the embedding API (a dependency), MAX_DELIVERIES is 2: nothing is lost."""
    flaky = HookedEmbedder(embedder, fail_times(8))
    pipeline = await open_pipeline(embedder=flaky, max_deliveries=2)
    settings = pipeline.settings
    await add_listings(pool, 1, 3)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})

    await pipeline.drain()

    assert len(flaky.calls) == 9
    assert await redis.xlen(settings.dead_letter_stream) == 0
    assert await pool.fetchval("SELECT count(*) FROM failed_operations") == 0
    assert await pool.fetchval("SELECT status FROM index_jobs") == "completed"
    await assert_converged(pool, store, settings)
    assert await redis.hlen(FailureMemory.key(settings.batch_stream)) == 0  # forgotten with the ack


async def test_a_misconfiguration_is_remembered_across_a_restart(
    *, open_pipeline: OpenPipeline, redis: Redis, pool: asyncpg.Pool[Any], embedder: Embedder
) -> None:  # fmt: skip
    """The restart that fixes OPENAI_API_KEY must not dead-letter what waited past MAX_DELIVERIES."""
    switch = _Broken()
    before = await open_pipeline(embedder=HookedEmbedder(embedder, switch), max_deliveries=1)
    settings = before.settings
    await add_listings(pool, 1, 2)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2]})
    lane = before.indexer_lane
    [batch] = await planned_batches(before)
    assert list((await before.consumer.consume(lane, [batch])).failed) == [batch.entry_id]

    switch.broken = False  # the fix, then a restart: a new process with empty memory
    after = await open_pipeline(max_deliveries=1)
    consumed = await after.consumer.consume(after.indexer_lane, [batch], {batch.entry_id: 5})

    assert consumed.acked == [batch.entry_id]
    assert await redis.xlen(settings.dead_letter_stream) == 0
    assert await pool.fetchval("SELECT status FROM index_jobs") == "completed"


class _Broken:
    """An embedding hook failing as a revoked API key does, until switched off."""

    def __init__(self) -> None:
        self.broken = True

    async def __call__(self, _: Sequence[str]) -> None:
        if self.broken:
            raise ConfigurationError("embedding API refused the key (401)")


async def test_a_worker_reads_one_job_at_a_time(
    *, open_pipeline: OpenPipeline, redis: Redis, pool: asyncpg.Pool[Any]
) -> None:  # fmt: skip
    """While a job is being planned, the other jobs stay undelivered (no other worker would plan them twice)."""
    pipeline = await open_pipeline()
    settings = pipeline.settings
    await add_listings(pool, 1, 3)
    gate, planning = asyncio.Event(), asyncio.Event()
    plan = pipeline.planner.handle

    async def gated(entry: StreamEntry) -> None:
        planning.set()
        await gate.wait()
        await plan(entry)

    pipeline.planner.handle = gated  # type: ignore[method-assign]
    for i in (1, 2, 3, 1, 2, 3):
        await push(redis, settings, {"operation": "sync", "product_ids": [i]})
    await pipeline.bridge.drain()
    stop = asyncio.Event()
    worker = asyncio.create_task(serve_worker(pipeline, stop=stop))
    try:
        await asyncio.wait_for(planning.wait(), 20)
        jobs = pipeline.planner_lane.pair
        assert (await redis.xpending(jobs.stream, jobs.group))["pending"] == 1
        gate.set()

        async def all_planned() -> bool:
            return bool(await pool.fetchval("SELECT count(*) = 6 FROM index_jobs WHERE status = 'completed'"))

        await wait_until(all_planned)
    finally:
        stop.set()
        await worker


async def test_neither_an_outage_nor_a_misconfiguration_counts_toward_dead_lettering(
    redis: Redis, redis_settings: Settings
) -> None:
    memory = FailureMemory(redis)
    entry = StreamEntry(redis_settings.batch_stream, "1-0", {})
    for _ in range(3):
        await memory.note(entry, ConfigurationError("revoked key"))
    await memory.note(entry, TransientError("embedding API down"))
    await memory.note(entry, RuntimeError("a deadlock"))  # one failure of the entry's own

    past = await memory.recall(entry)

    assert (past.transient, past.misconfigured) == (4, False)
    assert past.error is not None
    assert "a deadlock" in past.error
