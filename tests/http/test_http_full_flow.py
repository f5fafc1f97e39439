"""POST /sync through the real pipeline (worker role) to a completed job, followed at /jobs/{id}."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from app_client import serve_in_loop

from finally_indexer.core.roles import serve_worker
from finally_indexer.core.settings import Settings
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.processor.pipeline import Pipeline

LISTINGS = 400
pytestmark = pytest.mark.slow


@pytest.fixture
async def pipeline(
    pool: asyncpg.Pool[Any], redis: aioredis.Redis, settings: Settings
) -> AsyncIterator[Pipeline]:
    await pool.execute(
        """
        INSERT INTO products (id, title, price, content, mileage, year, brand)
        SELECT i, '혼다 PCX 125 매물 ' || i, 2000000 + i, '상태 좋음, 정비 완료 ' || i, 1000 * i, 2015 + i % 10, '혼다'
        FROM generate_series(1, $1) AS i
        """,
        LISTINGS,
    )
    opened = await Pipeline.open(settings, redis=redis, pool=pool)
    yield opened
    await opened.aclose()


async def test_sync_all_is_accepted_at_once_and_followed_to_completion(
    pipeline: Pipeline, settings: Settings
) -> None:
    app = create_app(settings, deps=AppDeps(pool=pipeline.pool, redis=pipeline.redis, store=pipeline.store))
    stop = asyncio.Event()
    worker = asyncio.create_task(serve_worker(pipeline, stop=stop))
    try:
        async with serve_in_loop(app) as client:
            res = await client.post("/sync", json={"product_ids": "all", "scope": "all"})
            assert res.status_code == 202
            job_url = res.headers["location"]

            # while the large sync is being processed, another request is still accepted (its
            # latency is measured by bench/api.py, not asserted here)
            other = await client.post("/sync", json={"product_ids": [1, 2]})
            assert other.status_code == 202
            other_job = (await client.get(other.headers["location"])).json()

            seen: set[str] = set()
            async with asyncio.timeout(90):
                while True:
                    job = (await client.get(job_url)).json()
                    seen.add(job["status"])
                    if job["status"] in {"completed", "failed"}:
                        break
                    await asyncio.sleep(0.1)
            status = (await client.get("/status")).json()
    finally:
        stop.set()
        await worker

    assert job["status"] == "completed", job
    assert job["progress"]["total"] == LISTINGS
    assert job["progress"]["done"] + job["progress"]["skipped"] == LISTINGS
    assert job["progress"]["failed"] == 0
    assert job["progress"]["percent"] == 100.0
    assert job["finished_at"] is not None
    # accepted while the large sync was still in flight
    assert datetime.fromisoformat(other_job["created_at"]) < datetime.fromisoformat(job["finished_at"])
    assert status["listings"]["indexed"] >= LISTINGS - 2  # the second job may still re-check two
    assert sum(m["listings"] for m in status["throughput"]["per_minute"]) >= LISTINGS
