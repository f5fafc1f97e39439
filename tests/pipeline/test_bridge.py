"""The bridge: FIFO order, an atomic move (nothing lost or doubled), and hand-over while it idles."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest
from pipeline.helpers import entries, wait_until
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.processor.bridge import Bridge


@pytest.fixture
def settings(redis_settings: Settings) -> Settings:
    """Redis only: no database schema is set up for these tests."""
    return redis_settings


def _bridge(redis: Redis, settings: Settings, batch: int = 100) -> Bridge:
    return Bridge(redis, list_key=settings.legacy_list, stream_key=settings.jobs_stream, batch=batch)


async def test_fifo_and_fields(redis: Redis, settings: Settings) -> None:
    for i in range(250):
        await redis.lpush(settings.legacy_list, f"job-{i}")
    before_ms = time.time() * 1000
    assert await _bridge(redis, settings).drain() == 250
    after_ms = time.time() * 1000
    found = await entries(redis, settings.jobs_stream)
    assert [f[b"payload"] for _, f in found] == [f"job-{i}".encode() for i in range(250)]
    fields = found[0][1]
    assert fields[b"source"] == b"legacy"
    assert fields[b"v"] == b"1"
    assert int(before_ms) <= int(fields[b"received_ms"]) <= after_ms  # stamped at the move, in ms
    assert await redis.llen(settings.legacy_list) == 0


async def test_concurrent_bridges_neither_lose_nor_double(redis: Redis, settings: Settings) -> None:
    jobs = [f"job-{i}".encode() for i in range(2000)]
    await redis.lpush(settings.legacy_list, *jobs)
    bridges = [_bridge(redis, settings, batch=7) for _ in range(4)]
    moved = await asyncio.gather(*(b.drain() for b in bridges))
    assert sum(moved) == 2000
    payloads = [f[b"payload"] for _, f in await entries(redis, settings.jobs_stream)]
    assert sorted(payloads) == sorted(jobs)


async def test_wake_up_does_not_take_the_job(redis: Redis, settings: Settings) -> None:
    await redis.lpush(settings.legacy_list, b"a", b"b")
    assert await _bridge(redis, settings).wait_for_job(1)
    assert await redis.lrange(settings.legacy_list, 0, -1) == [b"b", b"a"]


async def test_idle_bridge_hands_over_each_job_as_it_comes(redis: Redis, settings: Settings) -> None:
    """While the bridge waits on BLMOVE, each job pushed one at a time reaches the stream, in order,
    and leaves the list. (Its latency is a speed figure: ``bench/pipeline.py`` prints it.)"""
    stop = asyncio.Event()
    runner = asyncio.create_task(_bridge(redis, settings).run(stop))
    try:
        for i in range(50):
            await redis.lpush(settings.legacy_list, f"job-{i}")
            await wait_until(functools.partial(_stream_holds, redis, settings, i + 1))
    finally:
        stop.set()
        await runner
    payloads = [f[b"payload"] for _, f in await entries(redis, settings.jobs_stream)]
    assert payloads == [f"job-{i}".encode() for i in range(50)]
    assert await redis.llen(settings.legacy_list) == 0


async def _stream_holds(redis: Redis, settings: Settings, count: int) -> bool:
    return bool(await redis.xlen(settings.jobs_stream) >= count)
