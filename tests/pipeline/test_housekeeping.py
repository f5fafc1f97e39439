"""Trimming never removes an undelivered or pending entry; dead consumers with nothing pending go."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.processor.housekeeping import forget_dead_consumers, trim_stream


@pytest.fixture
def settings(redis_settings: Settings) -> Settings:
    """Redis only: no database schema is set up for these tests."""
    return redis_settings


GROUP = "g"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _stream_with_group(redis: Redis, settings: Settings, n: int) -> list[str]:
    stream = settings.batch_stream
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    return [_text(await redis.xadd(stream, {"i": str(i)})) for i in range(n)]


async def _ids(redis: Redis, stream: str) -> list[str]:
    return [_text(i) for i, _ in await redis.xrange(stream) or []]


async def test_trim_keeps_pending_and_undelivered_entries(redis: Redis, settings: Settings) -> None:
    stream = settings.batch_stream
    ids = await _stream_with_group(redis, settings, 6)
    await redis.xreadgroup(GROUP, "c1", {stream: ">"}, count=4)  # deliver 0..3
    await redis.xack(stream, GROUP, ids[0], ids[2])  # 1 and 3 stay pending, 4 and 5 undelivered

    assert await trim_stream(redis, stream, GROUP, retention_ms=0) == 1
    assert await _ids(redis, stream) == ids[1:]

    await redis.xack(stream, GROUP, ids[1], ids[3])  # all delivered ones acked: 4 and 5 still undelivered
    assert await trim_stream(redis, stream, GROUP, retention_ms=0) == 2
    assert await _ids(redis, stream) == ids[3:]  # the last delivered id itself is kept (MINID is inclusive)
    assert len(await redis.xreadgroup(GROUP, "c1", {stream: ">"})) == 1  # 4 and 5 still delivered


async def test_retention_keeps_recent_acknowledged_entries(redis: Redis, settings: Settings) -> None:
    stream = settings.batch_stream
    ids = await _stream_with_group(redis, settings, 3)
    await redis.xreadgroup(GROUP, "c1", {stream: ">"})
    await redis.xack(stream, GROUP, *ids)
    assert await trim_stream(redis, stream, GROUP, retention_ms=3_600_000) == 0
    assert await _ids(redis, stream) == ids


async def test_trim_without_stream_or_group_is_a_no_op(redis: Redis, settings: Settings) -> None:
    assert await trim_stream(redis, settings.batch_stream, GROUP, retention_ms=0) == 0
    await redis.xadd(settings.batch_stream, {"i": "0"})
    assert await trim_stream(redis, settings.batch_stream, GROUP, retention_ms=0) == 0
    assert await redis.xlen(settings.batch_stream) == 1


async def test_only_idle_consumers_without_pending_entries_are_forgotten(
    redis: Redis, settings: Settings
) -> None:
    stream = settings.batch_stream
    ids = await _stream_with_group(redis, settings, 3)
    await redis.xreadgroup(GROUP, "dead-acked", {stream: ">"}, count=1)
    await redis.xack(stream, GROUP, ids[0])
    await redis.xreadgroup(GROUP, "dead-pending", {stream: ">"}, count=1)
    await redis.xreadgroup(GROUP, "me", {stream: ">"}, count=1)

    gone = await forget_dead_consumers(redis, stream, GROUP, keep="me", idle_ms=-1)

    assert gone == ["dead-acked"]
    names = {c["name"].decode() for c in await redis.xinfo_consumers(stream, GROUP)}
    assert names == {"dead-pending", "me"}
