"""Events after the commit: payload-only refreshes are announced, job_completed follows the commit
(no Redis call under the job's row lock)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg
from pipeline.helpers import add_listings, events, one_row, push
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.processor.events import EventLog
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.texts import version_of
from finally_indexer.schemas.messages import Event, EventType


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
