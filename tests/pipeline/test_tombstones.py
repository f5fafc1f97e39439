"""Deletes a stale read cannot undo, and deletes that never remove a listing re-created since."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from pipeline.helpers import HookedEmbedder, OpenPipeline, add_listings, assert_converged, push
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamEntry
from finally_indexer.db import tombstones
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.jobs import Operation
from finally_indexer.schemas.messages import BatchMessage


def _batch(settings: Settings, operation: Operation, ids: list[int], *, force: bool = False) -> StreamEntry:
    message = BatchMessage(
        job_id=f"t-{operation.value}", seq=0, operation=operation, product_ids=ids, force=force,
        received_ms=int(time.time() * 1000),
    )  # fmt: skip
    fields = {k.encode(): v.encode() for k, v in message.to_fields().items()}
    return StreamEntry(settings.batch_stream, f"{time.time_ns()}-0", fields)


async def _indexed(pipeline: Pipeline, redis: Redis, settings: Settings, ids: list[int]) -> None:
    await push(redis, settings, {"operation": "sync", "product_ids": ids})
    await pipeline.drain()


@pytest.mark.parametrize("row_deleted", [True, False], ids=["row-deleted", "row-kept"])
async def test_a_sync_that_read_the_row_before_a_delete_leaves_no_point(
    *, open_pipeline: OpenPipeline, settings: Settings, redis: Redis, pool: asyncpg.Pool[Any],
    store: VectorStore, embedder: Embedder, row_deleted: bool,
) -> None:  # fmt: skip
    """Sync A reads row 5 and is held in its embedding call until the delete has committed."""
    await add_listings(pool, 1, 5)
    await _indexed(await open_pipeline(), redis, settings, [1, 2, 3, 4, 5])
    a_read, delete_done = asyncio.Event(), asyncio.Event()

    async def hold(_: Sequence[str]) -> None:
        a_read.set()
        await delete_done.wait()

    worker_a = await open_pipeline(embedder=HookedEmbedder(embedder, hold))
    worker_b = await open_pipeline()
    sync_a = asyncio.create_task(worker_a.indexer.handle(_batch(settings, Operation.SYNC, [5], force=True)))
    await a_read.wait()
    if row_deleted:
        await pool.execute("DELETE FROM products WHERE id = 5")
    await worker_b.indexer.handle(_batch(settings, Operation.DELETE, [5]))  # commits, removes the point
    delete_done.set()
    await sync_a  # upserts its stale copy of row 5 …

    assert await store.get([5]) == {}  # … which does not survive
    assert await pool.fetchval("SELECT count(*) FROM index_state WHERE product_id = 5") == 0
    flag = await pool.fetchval("SELECT is_conversion FROM products WHERE id = 5")
    assert flag is (None if row_deleted else False)
    # Nothing brings it back later: a full sync leaves it out (the row version is the deleted one).
    await _indexed(worker_b, redis, settings, [1, 2, 3, 4, 5])
    assert await store.get([5]) == {}
    assert sorted((await store.get([1, 2, 3, 4])).keys()) == [1, 2, 3, 4]


async def test_a_redelivered_old_delete_keeps_a_listing_re_created_since(
    pipeline: Pipeline, settings: Settings, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore
) -> None:
    await add_listings(pool, 7, 7)
    await _indexed(pipeline, redis, settings, [7])
    old_delete = _batch(settings, Operation.DELETE, [7])
    await pipeline.indexer.handle(old_delete)
    assert await store.get([7]) == {}
    # The scraper re-creates the listing after the delete: a newer row version.
    await pool.execute("UPDATE products SET updated_at = now() + interval '1 second' WHERE id = 7")
    await _indexed(pipeline, redis, settings, [7])
    assert list(await store.get([7])) == [7]

    await pipeline.indexer.handle(old_delete, deliveries=2)  # the old delete, delivered again

    assert list(await store.get([7])) == [7]
    await assert_converged(pool, store, settings)


async def test_a_sync_of_a_row_newer_than_its_tombstone_brings_it_back(
    pipeline: Pipeline, settings: Settings, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore
) -> None:
    await add_listings(pool, 3, 3)
    await _indexed(pipeline, redis, settings, [3])
    await push(redis, settings, {"operation": "delete", "product_ids": [3]})
    await pipeline.drain()
    assert await store.get([3]) == {}
    assert await pool.fetchval("SELECT count(*) FROM index_tombstones WHERE product_id = 3") == 1

    await _indexed(pipeline, redis, settings, [3])  # the same row version: stays deleted
    assert await store.get([3]) == {}
    await pool.execute(
        "UPDATE products SET content = '다시 등록', updated_at = now() + interval '1 second' WHERE id = 3"
    )
    await _indexed(pipeline, redis, settings, [3])

    assert list(await store.get([3])) == [3]
    await assert_converged(pool, store, settings)


async def test_a_delete_naming_an_id_twice_is_recorded_once(pool: asyncpg.Pool[Any]) -> None:
    await tombstones.record(pool, [5, 5, 6], version=10)
    await tombstones.record(pool, [5], version=7)  # an older delete never lowers a tombstone

    rows = await pool.fetch("SELECT product_id, version FROM index_tombstones ORDER BY product_id")
    assert [(r["product_id"], r["version"]) for r in rows] == [(5, 10), (6, 10)]
