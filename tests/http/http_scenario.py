"""A known state of Redis and PostgreSQL whose /status and /metrics figures the tests can predict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from finally_indexer.core import constants as c
from finally_indexer.core.settings import Settings
from finally_indexer.schemas.messages import Event, EventType


@dataclass(frozen=True)
class Scenario:
    job_id: str


async def build(pool: asyncpg.Pool[Any], redis: aioredis.Redis, settings: Settings) -> Scenario:
    """10 listings (6 indexed, the oldest pending 2 min old), queues with lag and pending, events, a job, failures."""
    await pool.executemany(
        "INSERT INTO products (id, title, is_conversion, updated_at) VALUES ($1, $2, $3, now() - make_interval(secs => $4))",
        [(i, f"매물 {i}", i <= 6, 120 if i == 7 else 10) for i in range(1, 11)],
    )
    await redis.lpush(settings.legacy_list, b"a", b"b", b"c")
    await _stream(redis, settings.jobs_stream, c.PLANNER_GROUP, added=4, read=1, acked=0)
    await _stream(redis, settings.batch_stream, c.INDEXER_GROUP, added=5, read=2, acked=1)
    for _ in range(2):
        await redis.xadd(settings.dead_letter_stream, {"x": "1"})
    for _ in range(3):
        event = Event(
            type=EventType.BATCH_INDEXED, job_id="j", counts={"indexed": 5, "skipped": 1, "failed": 1}
        )
        await redis.xadd(settings.events_stream, event.to_fields())  # type: ignore[arg-type]
    await redis.xadd(settings.events_stream, Event(type=EventType.JOB_PLANNED, job_id="j").to_fields())  # type: ignore[arg-type]

    job_id = "api-scenario"
    await pool.execute(
        "INSERT INTO index_jobs (job_id, operation, scope, source, status, total, batches) VALUES ($1, 'sync', 'all', 'api', 'running', 10, 2)",
        job_id,
    )
    await pool.execute(
        "INSERT INTO index_job_batches (job_id, seq, operation, product_ids, status, indexed) VALUES ($1, 0, 'sync', '{1,2,3,4,5}', 'done', 5)",
        job_id,
    )
    for pid, resolved in ((7, False), (8, False), (9, True)):
        await pool.execute(
            "INSERT INTO failed_operations (operation_type, product_id, reason, error_class, error_message, resolved_at)"
            " VALUES ('update', $1, 'EmbeddingInputRejected', 'EmbeddingInputRejected', '입력 거부됨', $2)",
            pid,
            datetime.now(UTC) if resolved else None,
        )
    return Scenario(job_id)


async def _stream(redis: aioredis.Redis, name: str, group: str, *, added: int, read: int, acked: int) -> None:
    await redis.xgroup_create(name, group, id="0", mkstream=True)
    for i in range(added):
        await redis.xadd(name, {"n": str(i)})
    got = await redis.xreadgroup(group, "worker-1", {name: ">"}, count=read)
    ids = [entry_id for _, entries in got for entry_id, _ in entries]
    if acked:
        await redis.xack(name, group, *ids[:acked])
