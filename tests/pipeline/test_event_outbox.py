"""Events survive crashes: a batch's events are committed with its effects (the outbox) and reach
the events stream at least once, each with a stable ``outbox_id`` — after a failed XADD, after a
process stopped between its commit and its XADD, and with several relays at once."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from pipeline.helpers import OpenPipeline, add_listings, events, one_row, push
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.db import outbox
from finally_indexer.processor import indexer as indexer_module
from finally_indexer.processor import pipeline as pipeline_module
from finally_indexer.processor.events import EventLog
from finally_indexer.processor.outbox import relay_outbox, run_relay, stage
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.schemas.messages import Event, EventType


def _of(found: list[Event], kind: EventType) -> list[Event]:
    return [e for e in found if e.type is kind]


async def _assert_batch_reported_once(redis: Redis, settings: Settings, product_ids: list[int]) -> None:
    found = await events(redis, settings)
    assert [sorted(e.product_ids) for e in _of(found, EventType.BATCH_INDEXED)] == [product_ids]
    assert [e.reason for e in _of(found, EventType.JOB_COMPLETED)] == ["completed"]
    ids = [e.outbox_id for e in found]
    assert None not in ids
    assert len(set(ids)) == len(ids)


async def test_events_of_a_batch_committed_while_xadd_fails_reach_the_stream_once(
    pipeline: Pipeline, redis: Redis, pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    await add_listings(pool, 1, 3)
    await redis.set(settings.events_stream, "x")  # a real WRONGTYPE error on every events XADD
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})
    await pipeline.drain(timeout_s=10)
    assert (await one_row(pool, "SELECT status FROM index_jobs"))["status"] == "completed"
    assert await outbox.pending(pool) > 0

    await redis.delete(settings.events_stream)
    await pipeline.drain()  # nothing queued: one relay round, as a worker's relay loop does

    await _assert_batch_reported_once(redis, settings, [1, 2, 3])
    assert await outbox.pending(pool) == 0


async def _no_relay(*_args: Any) -> int:
    return 0


async def test_a_fresh_relay_sends_what_a_process_stopped_after_its_commit_never_sent(
    open_pipeline: OpenPipeline,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await add_listings(pool, 1, 3)
    doomed = await open_pipeline()
    # the process stops right after the indexer's commit: its events never leave PostgreSQL
    monkeypatch.setattr(indexer_module, "relay_soon", _no_relay)
    monkeypatch.setattr(pipeline_module, "relay_soon", _no_relay)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})
    await doomed.drain()
    assert _of(await events(redis, settings), EventType.BATCH_INDEXED) == []
    monkeypatch.undo()

    fresh = await open_pipeline()
    stop = asyncio.Event()
    stop.set()
    await run_relay(fresh.pool, fresh.events, stop=stop)  # one round of the worker's relay loop

    await _assert_batch_reported_once(redis, settings, [1, 2, 3])
    assert await outbox.pending(pool) == 0


async def test_concurrent_relays_send_each_event_once(
    pool: asyncpg.Pool[Any], redis: Redis, settings: Settings
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await stage(conn, [Event(type=EventType.BATCH_INDEXED, job_id="j", seq=i) for i in range(600)])
    log = EventLog(redis, settings.events_stream)

    sent = await asyncio.gather(*(relay_outbox(pool, log, limit=50) for _ in range(4)))

    assert sum(sent) == 600
    found = await events(redis, settings)
    assert sorted(e.seq for e in found if e.seq is not None) == list(range(600))
    assert len({e.outbox_id for e in found}) == 600
