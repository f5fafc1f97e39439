"""GET /health against live, stopped and restarted dependencies; GET /health/live."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from app_client import serve_in_loop
from pydantic import SecretStr

from finally_indexer.core.settings import Settings, VectorStoreKind
from finally_indexer.db.pool import create_pool
from finally_indexer.devenv._process import free_port
from finally_indexer.devenv.postgres import PostgresServer
from finally_indexer.devenv.redis import RedisServer
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.http.deps import redis_client
from finally_indexer.processor.broker import ensure_groups
from finally_indexer.processor.stores.factory import build_vector_store

#: Throwaway servers live beside the session's (a folder the postgres user can traverse).
SERVERS = Path(__file__).resolve().parents[2] / "var" / "test-servers"


async def _health(deps: AppDeps, settings: Settings) -> httpx.Response:
    async with serve_in_loop(create_app(settings, deps=deps)) as c:
        return await c.get("/health")


async def test_all_up_is_200_with_latencies(
    client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings
) -> None:
    await ensure_groups(redis, settings)  # a worker has started: both work streams are consumed
    res = await client.get("/health")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["status"] == "ok"
    assert body["down"] == []
    assert set(body["checks"]) == {"postgres", "redis", "qdrant"}
    assert all(c["ok"] and c["latency_ms"] >= 0 for c in body["checks"].values())
    assert body["stopped"] == []


async def test_missing_consumer_groups_are_503_degraded_naming_them(
    client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings
) -> None:
    """After a Redis flush (or before any worker started) nothing consumes the work streams."""
    res = await client.get("/health")
    assert res.status_code == 503, res.text
    body = res.json()
    assert body["status"] == "degraded"
    assert body["down"] == []
    assert len(body["stopped"]) == 2
    assert f"planner on {settings.jobs_stream}" in body["stopped"][0]
    assert f"indexer on {settings.batch_stream}" in body["stopped"][1]
    await redis.xgroup_create(settings.jobs_stream, "planner", id="0", mkstream=True)
    res = await client.get("/health")
    assert res.status_code == 503
    (only,) = res.json()["stopped"]
    assert only.startswith(f"indexer on {settings.batch_stream}: consumer group missing")
    await ensure_groups(redis, settings)
    assert (await client.get("/health")).status_code == 200


async def test_liveness_calls_no_dependency(
    settings: Settings, pool: asyncpg.Pool[Any], deps: AppDeps
) -> None:
    dead = AppDeps(pool=pool, redis=aioredis.Redis(port=free_port()), store=deps.store)
    async with serve_in_loop(create_app(settings, deps=dead)) as c:
        res = await c.get("/health/live")
    await dead.redis.aclose()
    assert res.json() == {"status": "alive"}


async def test_redis_on_a_closed_port_is_503_naming_redis(settings: Settings, deps: AppDeps) -> None:
    dead = AppDeps(
        pool=deps.pool,
        redis=redis_client(settings.model_copy(update={"redis_url": None, "redis_port": free_port()})),
        store=deps.store,
    )
    res = await _health(dead, settings)
    await dead.redis.aclose()
    assert res.status_code == 503
    body = res.json()
    assert body["down"] == ["redis"]
    assert body["checks"]["redis"]["error"]
    assert body["checks"]["postgres"]["ok"]


async def test_a_hanging_dependency_counts_as_down_after_the_timeout(
    settings: Settings, deps: AppDeps
) -> None:
    class Hanging:
        async def ping(self) -> None:
            await asyncio.sleep(30)

    slow: Any = Hanging()
    res = await _health(AppDeps(pool=deps.pool, redis=deps.redis, store=slow), settings)
    assert res.status_code == 503
    assert res.json()["down"] == ["qdrant"]
    assert "1 s" in res.json()["checks"]["qdrant"]["error"]


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


@pytest.mark.slow
async def test_redis_stopped_then_restarted(
    settings: Settings, deps: AppDeps, own_redis: RedisServer
) -> None:
    mine = settings.model_copy(update={"redis_url": None, "redis_port": own_redis.port})
    watched = AppDeps(pool=deps.pool, redis=redis_client(mine), store=deps.store)
    try:
        await ensure_groups(watched.redis, mine)  # durable (AOF): they survive the restart
        assert (await _health(watched, mine)).status_code == 200
        await asyncio.to_thread(own_redis.stop)
        down = await _health(watched, mine)
        assert down.status_code == 503
        assert down.json()["down"] == ["redis"]
        restarted = RedisServer(own_redis.data_dir, port=own_redis.port)
        await asyncio.to_thread(restarted.start)
        own_redis.port = restarted.port
        assert (await _health(watched, mine)).status_code == 200
    finally:
        await watched.redis.aclose()


@pytest.mark.slow
async def test_postgres_stopped_then_restarted(settings: Settings, deps: AppDeps, test_uid: str) -> None:
    root = SERVERS / f"health-{test_uid}"  # initdb runs as the postgres user: not under /tmp/pytest-of-root
    server = PostgresServer(root, database="health")
    dsn = await asyncio.to_thread(server.start)
    again = PostgresServer(root, database="health", port=server.port)
    mine = settings.model_copy(update={"database_url": SecretStr(dsn), "postgres_schema": None})
    pool = await create_pool(mine)
    watched = AppDeps(pool=pool, redis=deps.redis, store=deps.store)
    try:
        await ensure_groups(watched.redis, mine)
        assert (await _health(watched, mine)).status_code == 200
        await asyncio.to_thread(server.stop)
        down = await _health(watched, mine)
        assert down.status_code == 503
        assert down.json()["down"] == ["postgres"]
        await asyncio.to_thread(again.start)
        assert (await _health(watched, mine)).status_code == 200
    finally:
        await pool.close()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(again.stop)
        shutil.rmtree(root, ignore_errors=True)


async def test_qdrant_server_on_a_closed_port_is_503_naming_qdrant(settings: Settings, deps: AppDeps) -> None:
    dead_qdrant = settings.model_copy(
        update={"vector_store": VectorStoreKind.SERVER, "qdrant_url": f"http://127.0.0.1:{free_port()}"}
    )
    store = build_vector_store(dead_qdrant)
    try:
        res = await _health(AppDeps(pool=deps.pool, redis=deps.redis, store=store), settings)
    finally:
        await store.aclose()
    assert res.status_code == 503
    body = res.json()
    assert body["down"] == ["qdrant"]
    assert body["checks"]["qdrant"]["error"].startswith("DependencyUnavailable: qdrant ping")
    assert body["checks"]["postgres"]["ok"]
    assert body["checks"]["redis"]["ok"]
