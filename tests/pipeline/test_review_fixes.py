"""Legacy job ids that repeat, events for payload-only refreshes, no Redis call under the job's row
lock, and rows whose ``updated_at`` is naive or NULL."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import asyncpg
from pipeline.helpers import add_listings, assert_converged, entries, events, one_row, push
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamEntry
from finally_indexer.processor.events import EventLog
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.texts import version_of
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.jobs import JobSource
from finally_indexer.schemas.messages import Event, EventType, JobEntry


async def test_legacy_jobs_repeating_a_producer_job_id_are_all_applied(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings
) -> None:
    await add_listings(pool, 1, 4)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2], "job_id": "nightly-update"})
    await pipeline.drain()
    await push(redis, settings, {"operation": "sync", "product_ids": [3, 4], "job_id": "nightly-update"})
    await pipeline.drain()

    await assert_converged(pool, store, settings)
    rows = await pool.fetch(
        "SELECT job_id, external_id, stream_entry_id, product_ids, status FROM index_jobs ORDER BY created_at"
    )
    assert [(r["external_id"], list(r["product_ids"]), r["status"]) for r in rows] == [
        ("nightly-update", [1, 2], "completed"),
        ("nightly-update", [3, 4], "completed"),
    ]
    assert all(r["job_id"] == r["stream_entry_id"] for r in rows)


async def test_redelivered_legacy_entry_replans_the_same_job(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings
) -> None:
    await add_listings(pool, 1, 2)
    raw = json.dumps({"operation": "sync", "product_ids": [1, 2], "job_id": "nightly-update"}).encode()
    fields = {
        k.encode(): v if isinstance(v, bytes) else v.encode()
        for k, v in JobEntry(payload=raw).to_fields().items()
    }
    entry = StreamEntry(settings.jobs_stream, "1700000000000-0", fields)
    await pipeline.planner.handle(entry)
    await pipeline.planner.handle(entry)  # a redelivery of the same entry
    row = await one_row(pool, "SELECT job_id, external_id, batches FROM index_jobs")
    assert (row["job_id"], row["external_id"], row["batches"]) == ("1700000000000-0", "nightly-update", 1)
    assert await redis.xlen(settings.batch_stream) == 2  # the pending batch, published once per delivery
    await pipeline.drain()
    await assert_converged(pool, store, settings)
    assert await pool.fetchval("SELECT count(*) FROM index_jobs") == 1


async def test_api_job_keeps_the_id_the_api_inserted(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    await add_listings(pool, 1, 2)
    raw = json.dumps({"operation": "sync", "product_ids": [1, 2], "job_id": "api-1"}).encode()
    await redis.xadd(settings.jobs_stream, JobEntry(payload=raw, source=JobSource.API).to_fields())  # type: ignore[arg-type]
    await pipeline.drain()
    row = await one_row(pool, "SELECT job_id, external_id, status FROM index_jobs")
    assert (row["job_id"], row["external_id"], row["status"]) == ("api-1", None, "completed")


async def test_payload_only_refresh_is_announced_in_batch_indexed(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    await add_listings(pool, 1, 2)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2]})
    await pipeline.drain()
    # A new url: not part of the embedded text, so no embedding, but the stored payload changes.
    await pool.execute(
        "UPDATE products SET url = 'https://example.test/new', updated_at = now() + interval '1 second' WHERE id = 1"
    )
    await redis.delete(settings.events_stream)
    await push(redis, settings, {"operation": "update", "product_ids": [1, 2]})
    await pipeline.drain()
    indexed = [e for e in await events(redis, settings) if e.type is EventType.BATCH_INDEXED]
    assert [e.product_ids for e in indexed] == [[1]]
    row = await one_row(pool, "SELECT updated_at FROM products WHERE id = 1")
    assert (await pipeline.store.get([1]))[1].version == version_of(row["updated_at"])


class _LockProbe(EventLog):
    """An event log that records, for each append, whether a job row was locked at that moment."""

    def __init__(self, inner: EventLog, pool: asyncpg.Pool[Any]) -> None:
        super().__init__(inner._redis, inner.stream)
        self.pool = pool
        self.locked_while_appending: list[bool] = []
        self.appended: list[Event] = []

    async def _probe(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                await conn.fetch("SELECT job_id FROM index_jobs FOR UPDATE NOWAIT")
                self.locked_while_appending.append(False)
            except asyncpg.LockNotAvailableError:
                self.locked_while_appending.append(True)

    async def append(self, event: Event) -> str:
        await self._probe()
        self.appended.append(event)
        return await super().append(event)

    async def extend(self, events: Iterable[Event]) -> None:
        await self._probe()
        events = list(events)
        self.appended.extend(events)
        await super().extend(events)


async def test_job_completed_is_appended_after_the_commit(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    await add_listings(pool, 1, 3)
    probe = _LockProbe(pipeline.events, pool)
    pipeline.indexer._events = probe
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})
    await pipeline.drain()
    assert [e.type for e in probe.appended] == [EventType.BATCH_INDEXED, EventType.JOB_COMPLETED]
    assert probe.locked_while_appending
    assert not any(probe.locked_while_appending)
    completed = [e for e in await events(redis, settings) if e.type is EventType.JOB_COMPLETED]
    assert [e.reason for e in completed] == ["completed"]


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
