"""Skipping unchanged listings, edits during embedding, and two workers racing on one listing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
from pipeline.helpers import HookedEmbedder, OpenPipeline, add_listings, assert_converged, one_row, push
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamEntry
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.texts import build_text, text_hash
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.jobs import Operation
from finally_indexer.schemas.messages import BatchMessage


async def test_resync_of_unchanged_listings_makes_no_embedding_call(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    store: VectorStore,
    embedder: Embedder,
) -> None:
    counting = HookedEmbedder(embedder)
    pipeline = await open_pipeline(embedder=counting)
    await add_listings(pool, 1, 30)
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await pipeline.drain()
    first = len(counting.calls)
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await push(redis, settings, {"operation": "update", "product_ids": [3, 4]})
    await pipeline.drain()
    assert len(counting.calls) == first
    assert await pool.fetchval("SELECT sum(skipped) FROM index_job_batches") == 32
    await assert_converged(pool, store, settings)


async def test_row_edited_while_embedded_stays_unflagged_and_is_picked_up_again(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    store: VectorStore,
    embedder: Embedder,
) -> None:
    edited = asyncio.Event()

    async def edit_once(_: Sequence[str]) -> None:
        if not edited.is_set():
            edited.set()
            await pool.execute("UPDATE products SET content = '방금 수정됨', updated_at = now() WHERE id = 2")

    pipeline = await open_pipeline(embedder=HookedEmbedder(embedder, edit_once))
    await add_listings(pool, 1, 3)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})
    await pipeline.drain()
    flags = dict(await pool.fetch("SELECT id, is_conversion FROM products ORDER BY id"))
    assert flags == {1: True, 2: False, 3: True}
    # The incremental sync (the API's scope "changed") finds it and converges.
    await push(redis, settings, {"operation": "sync", "product_ids": "all", "scope": "changed"})
    await pipeline.drain()
    await assert_converged(pool, store, settings)
    assert await pool.fetchval("SELECT total FROM index_jobs WHERE scope = 'changed'") == 1


async def test_two_workers_racing_leave_the_newer_version(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    store: VectorStore,
    embedder: Embedder,
) -> None:
    """Worker A reads version 1 and is held in its embedding call while B indexes version 2."""
    await add_listings(pool, 1, 1)
    a_read, b_done = asyncio.Event(), asyncio.Event()

    async def hold_a(_: Sequence[str]) -> None:
        a_read.set()
        await b_done.wait()

    worker_a = await open_pipeline(embedder=HookedEmbedder(embedder, hold_a))
    worker_b = await open_pipeline(embedder=embedder)
    entry = StreamEntry(settings.batch_stream, "0-1", {k.encode(): v.encode() for k, v in BatchMessage(
        job_id="race", seq=0, operation=Operation.SYNC, product_ids=[1]).to_fields().items()})  # fmt: skip

    task_a = asyncio.create_task(worker_a.indexer.handle(entry))
    await a_read.wait()
    await pool.execute(
        "UPDATE products SET content = '두 번째 버전', updated_at = now() + interval '1 second' WHERE id = 1"
    )
    await worker_b.indexer.handle(entry)
    b_done.set()
    await task_a

    row = await one_row(pool, "SELECT * FROM products WHERE id = 1")
    held = await store.get([1])
    assert held[1].text_hash == text_hash(build_text(dict(row), settings.text_template))
    assert row["is_conversion"] is True
    state = await one_row(pool, "SELECT text_hash FROM index_state WHERE product_id = 1")
    assert state["text_hash"] == held[1].text_hash


async def test_text_changed_back_while_a_slow_worker_holds_the_middle_version(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    store: VectorStore,
    embedder: Embedder,
) -> None:
    """A→B→A: B's slow write must not land over A once A (same text as stored) has been confirmed."""
    await add_listings(pool, 1, 1)
    first = await open_pipeline(embedder=embedder)
    entry = StreamEntry(settings.batch_stream, "0-1", {k.encode(): v.encode() for k, v in BatchMessage(
        job_id="aba", seq=0, operation=Operation.SYNC, product_ids=[1]).to_fields().items()})  # fmt: skip
    await first.indexer.handle(entry)  # text A stored
    original = await one_row(pool, "SELECT content FROM products WHERE id = 1")

    slow_read, fast_done = asyncio.Event(), asyncio.Event()

    async def hold(_: Sequence[str]) -> None:
        slow_read.set()
        await fast_done.wait()

    slow = await open_pipeline(embedder=HookedEmbedder(embedder, hold))
    await pool.execute(
        "UPDATE products SET content = 'B 버전', updated_at = now() + interval '1 second' WHERE id = 1"
    )
    task = asyncio.create_task(slow.indexer.handle(entry))  # reads B, then waits inside embedding
    await slow_read.wait()
    await pool.execute(
        "UPDATE products SET content = $1, updated_at = now() + interval '2 seconds' WHERE id = 1",
        original["content"],
    )
    await first.indexer.handle(entry)  # reads A again: same text as stored, no embedding call
    fast_done.set()
    await task

    row = await one_row(pool, "SELECT * FROM products WHERE id = 1")
    held = await store.get([1])
    assert held[1].text_hash == text_hash(build_text(dict(row), settings.text_template))
    assert row["is_conversion"] is True
