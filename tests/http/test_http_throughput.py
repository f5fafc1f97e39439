"""Per-minute throughput from the events stream: concurrent refreshes count every event once."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.http.status_throughput import ThroughputTracker
from finally_indexer.schemas.messages import Event, EventType


async def test_concurrent_refreshes_count_each_event_once(redis: Redis, redis_settings: Settings) -> None:
    settings = redis_settings  # Redis only: no schema is migrated
    for seq in range(3):
        event = Event(type=EventType.BATCH_INDEXED, job_id="j", seq=seq, counts={"indexed": 64})
        await redis.xadd(settings.events_stream, event.to_fields())  # type: ignore[arg-type]
    tracker = ThroughputTracker(settings.events_stream)

    results = await asyncio.gather(*(tracker.refresh(redis) for _ in range(4)))

    assert sum(m.listings for m in results[-1]) == 3 * 64
    assert sum(m.batches for m in results[-1]) == 3
    # and a later refresh adds only what is new
    later = Event(type=EventType.BATCH_INDEXED, counts={"skipped": 5}).to_fields()
    await redis.xadd(settings.events_stream, later)  # type: ignore[arg-type]
    assert sum(m.listings for m in await tracker.refresh(redis)) == 3 * 64 + 5
