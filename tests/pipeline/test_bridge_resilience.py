"""The bridge survives a Redis restart: it logs, backs off and moves the jobs pushed afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pipeline.helpers import entries, wait_until
from redis.asyncio import Redis
from structlog.testing import capture_logs

from finally_indexer.core.settings import Settings
from finally_indexer.devenv.redis import RedisServer
from finally_indexer.processor.bridge import Bridge


@pytest.fixture
def settings(redis_settings: Settings) -> Settings:
    """Redis only: no database schema is set up for these tests."""
    return redis_settings


@pytest.mark.slow
async def test_bridge_keeps_running_across_a_redis_restart(settings: Settings, server_dir: Path) -> None:
    server = RedisServer(server_dir / "redis")
    url = await asyncio.to_thread(server.start)
    restarted = RedisServer(server.data_dir, port=server.port)
    client = Redis.from_url(url)  # the bridge's: it must recover on its own
    mine = Redis.from_url(url)  # the test's, reconnected after the restart (its connections go stale too)
    bridge = Bridge(client, list_key=settings.legacy_list, stream_key=settings.jobs_stream)
    stop = asyncio.Event()
    try:
        with capture_logs() as logs:
            runner = asyncio.create_task(bridge.run(stop))
            await mine.lpush(settings.legacy_list, b"before")

            async def moved(n: int) -> bool:
                return await mine.xlen(settings.jobs_stream) == n

            await wait_until(lambda: moved(1))
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(1.5)  # the bridge meets connection errors meanwhile
            assert not runner.done()
            await asyncio.to_thread(restarted.start)
            assert restarted.port == server.port
            await mine.aclose()
            mine = Redis.from_url(url)
            await mine.lpush(settings.legacy_list, b"after")
            await wait_until(lambda: moved(2))
            assert not runner.done()
            stop.set()
            await asyncio.wait_for(runner, 10)
        assert any(e["event"] == "bridge_redis_error" and e["log_level"] == "warning" for e in logs)
        payloads = [f[b"payload"] for _, f in await entries(mine, settings.jobs_stream)]
        assert payloads == [b"before", b"after"]
    finally:
        stop.set()
        await client.aclose()
        await mine.aclose()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(restarted.stop)
