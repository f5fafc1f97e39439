"""``POST /audit``, ``GET /audit[/{id}]`` and ``GET /listings/{id}`` on a real pipeline's collection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from litestar import Litestar

from finally_indexer.core.settings import Settings
from finally_indexer.http.app import AppDeps
from finally_indexer.processor.audit import Auditor
from finally_indexer.processor.pipeline import Pipeline

LISTINGS = 8


@pytest.fixture
async def indexed(
    pool: asyncpg.Pool[Any], redis: aioredis.Redis, settings: Settings, deps: AppDeps
) -> AsyncIterator[Pipeline]:
    """Listings 1..8 indexed into the app's own collection by a pipeline sharing its connections."""
    await pool.execute(
        "INSERT INTO products (id, title, price, content, year) SELECT i, '매물 ' || i, 1000 * i, '상태 좋음', 2020 "
        "FROM generate_series(1, $1) AS i",
        LISTINGS,
    )
    pipeline = await Pipeline.open(settings, redis=redis, pool=pool, store=deps.store)
    await redis.lpush(settings.legacy_list, json.dumps({"operation": "sync", "product_ids": "all"}))
    await pipeline.drain()
    yield pipeline
    await pipeline.aclose()


async def _finished(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    for _ in range(200):
        report: dict[str, Any] = (await client.get(location)).json()
        if report["status"] != "running":
            return report
        await asyncio.sleep(0.05)
    raise AssertionError("the audit did not finish")


async def test_audit_over_http_finds_and_repairs_drift(
    client: httpx.AsyncClient, indexed: Pipeline, deps: AppDeps, app: Litestar
) -> None:
    assert (await client.get("/audit")).status_code == 404  # none yet
    await deps.store.delete([3])

    res = await client.post("/audit", json={"repair": True})

    assert res.status_code == 202
    report = await _finished(client, res.headers["location"])
    assert report["status"] == "completed"
    assert (report["counts"]["missing"], report["drift"], report["samples"]) == (1, 1, {"missing": [3]})
    assert len(report["repair_job_ids"]) == 1
    assert (await client.get("/audit")).json()["audit_id"] == res.json()["audit_id"]
    await indexed.drain()  # the repair job runs through the pipeline
    again = await client.post("/audit", json={})
    assert (await _finished(client, again.headers["location"]))["drift"] == 0
    await app.state.auditor.aclose()  # the background task ends before the test's connections close


async def test_a_second_audit_while_one_runs_is_refused(
    client: httpx.AsyncClient,
    redis: aioredis.Redis,
    pool: asyncpg.Pool[Any],
    deps: AppDeps,
    settings: Settings,
) -> None:
    key = Auditor(pool=pool, redis=redis, store=deps.store, settings=settings).lock_key()
    lock = redis.lock(key, timeout=30)
    assert await lock.acquire()
    try:
        res = await client.post("/audit", json={})
    finally:
        await lock.release()
    assert res.status_code == 409
    assert res.json()["error"] == "conflict"
    assert "already running" in res.json()["detail"]


async def test_audit_needs_the_api_key(keyed_client: httpx.AsyncClient) -> None:
    assert (await keyed_client.post("/audit", json={})).status_code == 401
    assert (await keyed_client.get("/audit/nope")).status_code == 404


async def test_listing_shows_both_sides_the_verdict_failures_and_jobs(
    client: httpx.AsyncClient, indexed: Pipeline, pool: asyncpg.Pool[Any], deps: AppDeps
) -> None:
    ok = (await client.get("/listings/2")).json()
    assert ok["verdict"] == "ok"
    assert ok["source"]["is_conversion"] is True
    assert ok["source"]["version"] == ok["collection"]["version"]
    assert ok["source"]["text_hash"] == ok["collection"]["text_hash"]
    assert ok["collection"]["payload"]["title"] == "매물 2"
    assert "vector" not in ok["collection"]
    assert [j["operation"] for j in ok["jobs"]] == ["sync"]

    await deps.store.delete([4])
    await pool.execute(
        "INSERT INTO failed_operations (operation_type, product_id, reason, error_class, error_message)"
        " VALUES ('sync', 4, 'embedding_input_rejected', 'EmbeddingInputRejected', 'too long')"
    )
    missing = (await client.get("/listings/4")).json()
    assert (missing["verdict"], missing["collection"]) == ("missing", None)
    assert [f["reason"] for f in missing["open_failures"]] == ["embedding_input_rejected"]

    assert (await client.get("/listings/777")).json()["verdict"] == "absent"
    assert (await client.get("/listings/0")).status_code == 400
