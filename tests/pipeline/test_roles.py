"""The roles as the CLI runs them: each returns once ``stop`` is set, after finishing its work."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from pipeline.helpers import add_listings, assert_converged, push, wait_until
from redis.asyncio import Redis

from finally_indexer.core.roles import run_all, run_bridge, run_worker
from finally_indexer.core.settings import Settings
from finally_indexer.processor.stores.factory import build_vector_store


async def _all_done(pool: asyncpg.Pool[Any]) -> bool:
    return bool(await pool.fetchval("SELECT count(*) > 0 AND bool_and(status = 'completed') FROM index_jobs"))


@pytest.mark.parametrize("mode", ["bridge+worker", "all"])
async def test_roles_process_jobs_and_stop(
    settings: Settings, redis: Redis, pool: asyncpg.Pool[Any], mode: str
) -> None:
    await add_listings(pool, 1, 20)
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    stop = asyncio.Event()
    if mode == "all":
        roles = [asyncio.create_task(run_all(settings, stop=stop))]
    else:
        roles = [
            asyncio.create_task(run_bridge(settings, stop=stop)),
            asyncio.create_task(run_worker(settings, stop=stop)),
        ]
    try:
        await wait_until(lambda: _all_done(pool))
    finally:
        stop.set()
        async with asyncio.timeout(40):
            await asyncio.gather(*roles)
    store = build_vector_store(settings)
    try:
        await assert_converged(pool, store, settings)
    finally:
        await store.aclose()
