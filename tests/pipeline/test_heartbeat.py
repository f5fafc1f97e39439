"""The heartbeat: entries a handler is still working on are not reclaimed by another consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
from pipeline.helpers import (
    HookedEmbedder,
    OpenPipeline,
    add_listings,
    expected_index,
    push,
    run_until,
    stored_index,
)
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamGroup
from finally_indexer.processor.consume import keep_claimed
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.vectorstore import VectorStore

GROUP = "g"


async def _one_read_entry(redis: Redis, stream: str, consumer: str) -> str:
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    entry_id: Any = await redis.xadd(stream, {"k": "v"})
    await redis.xreadgroup(GROUP, consumer, {stream: ">"}, count=1)
    return str(entry_id.decode())


async def _pending(redis: Redis, stream: str, entry_id: str) -> dict[str, Any]:
    found = await redis.xpending_range(stream, GROUP, min=entry_id, max=entry_id, count=1)
    assert len(found) == 1
    return dict(found[0])


async def test_idle_entry_is_claimable_without_heartbeat(redis: Redis, redis_settings: Settings) -> None:
    """The control: without the heartbeat, another consumer takes the entry after the idle time."""
    stream = f"t{redis_settings.collection}:hb"
    entry_id = await _one_read_entry(redis, stream, "a")
    await asyncio.sleep(redis_settings.reclaim_idle_ms / 1000 + 0.1)
    _, claimed, *_ = await redis.xautoclaim(stream, GROUP, "b", redis_settings.reclaim_idle_ms, "0-0")
    assert [i.decode() for i, _ in claimed] == [entry_id]


async def test_entry_under_heartbeat_is_not_claimable(redis: Redis, redis_settings: Settings) -> None:
    stream = f"t{redis_settings.collection}:hb"
    idle_ms = redis_settings.reclaim_idle_ms
    entry_id = await _one_read_entry(redis, stream, "a")
    async with keep_claimed(
        redis, StreamGroup(stream, GROUP, "test"), "a", [entry_id], every_s=idle_ms / 1000 / 3
    ):
        for _ in range(10):  # ~4 idle periods
            await asyncio.sleep(idle_ms / 1000 / 2.5)
            _, claimed, *_ = await redis.xautoclaim(stream, GROUP, "b", idle_ms, "0-0")
            assert claimed == []
    pending = await _pending(redis, stream, entry_id)
    assert pending["consumer"] == b"a"
    assert pending["times_delivered"] == 1


async def test_every_entry_of_a_read_stays_claimed(redis: Redis, redis_settings: Settings) -> None:
    """A worker reads up to 2 x WORKER_CONCURRENCY batch entries at once: the heartbeat renews them all.

    Measured with ``bench/embedding.py`` (3 workers, ``RECLAIM_IDLE_MS=5000``): the script renewed
    only the first id of a read (Lua expands ``unpack`` in the middle of an argument list to one
    value), so the other batches were reclaimed by other workers while still being worked on,
    and embedded twice: 8-17 % of the tokens billed were spent twice.
    """
    stream = f"t{redis_settings.collection}:hb"
    idle_ms = redis_settings.reclaim_idle_ms
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    for n in range(5):
        await redis.xadd(stream, {"n": str(n)})
    read: Any = await redis.xreadgroup(GROUP, "a", {stream: ">"}, count=5)
    ids = [i.decode() for i, _ in read[0][1]]
    assert len(ids) == 5
    async with keep_claimed(redis, StreamGroup(stream, GROUP, "test"), "a", ids, every_s=idle_ms / 1000 / 3):
        for _ in range(10):  # ~4 idle periods
            await asyncio.sleep(idle_ms / 1000 / 2.5)
            _, claimed, *_ = await redis.xautoclaim(stream, GROUP, "b", idle_ms, "0-0", count=10)
            assert [i.decode() for i, _ in claimed] == []
    for entry_id in ids:
        pending = await _pending(redis, stream, entry_id)
        assert (pending["consumer"], pending["times_delivered"]) == (b"a", 1)


async def test_a_handler_that_overruns_releases_its_entries(redis: Redis, redis_settings: Settings) -> None:
    """After HANDLER_MAX_S the heartbeat stops: a hung handler's entry goes to another worker."""
    stream = f"t{redis_settings.collection}:hb"
    idle_ms = redis_settings.reclaim_idle_ms
    entry_id = await _one_read_entry(redis, stream, "a")
    pair = StreamGroup(stream, GROUP, "test")
    async with keep_claimed(redis, pair, "a", [entry_id], every_s=idle_ms / 1000 / 3, max_s=idle_ms / 1000):
        await asyncio.sleep(idle_ms / 1000 * 3)  # the handler hangs for three idle periods
        _, claimed, *_ = await redis.xautoclaim(stream, GROUP, "b", idle_ms, "0-0")
    assert [i.decode() for i, _ in claimed] == [entry_id]


async def test_heartbeat_does_not_pull_back_an_entry_taken_over(
    redis: Redis, redis_settings: Settings
) -> None:
    """An entry another consumer claimed (after missed heartbeats) stays with that consumer."""
    stream = f"t{redis_settings.collection}:hb"
    entry_id = await _one_read_entry(redis, stream, "a")
    await redis.xclaim(stream, GROUP, "b", 0, [entry_id])
    async with keep_claimed(redis, StreamGroup(stream, GROUP, "test"), "a", [entry_id], every_s=0.05):
        await asyncio.sleep(0.3)
    pending = await _pending(redis, stream, entry_id)
    assert pending["consumer"] == b"b"
    assert pending["times_delivered"] == 2


async def test_worker_does_not_reclaim_a_slow_batch(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    store: VectorStore,
    embedder: Embedder,
) -> None:
    """A batch whose embedding takes several idle periods is embedded once, not reclaimed meanwhile."""
    slow_s = settings.reclaim_idle_ms / 1000 * 8

    async def slow_first(_: Sequence[str]) -> None:
        if len(slow.calls) == 1:
            await asyncio.sleep(slow_s)

    slow = HookedEmbedder(embedder, slow_first)
    pipeline = await open_pipeline(embedder=slow)
    await add_listings(pool, 1, 5)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3, 4, 5]})

    async def converged() -> bool:
        pending = (await redis.xpending(settings.batch_stream, "indexer"))["pending"]
        same = await stored_index(store) == await expected_index(pool, settings.text_template)
        return same and pending == 0

    await run_until(pipeline, converged)
    assert len(slow.calls) == 1
    assert await redis.xlen(settings.dead_letter_stream) == 0
    assert await pool.fetchval("SELECT deliveries FROM index_job_batches") == 1
