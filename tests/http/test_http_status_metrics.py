"""GET /status and GET /metrics: the same projection of Redis and PostgreSQL."""

from __future__ import annotations

import time
import types
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from finally_indexer.core import constants as c
from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamGroup
from finally_indexer.http.status_streams import stream_stats


async def test_status_projects_queues_listings_jobs_and_failures(
    client: httpx.AsyncClient, scenario: Any, settings: Settings
) -> None:

    res = await client.get("/status")

    assert res.status_code == 200, res.text
    s = res.json()
    assert s["listings"]["total"] == 10
    assert s["listings"]["indexed"] == 6
    assert s["listings"]["pending"] == 4
    assert s["listings"]["coverage"] == 0.6
    assert 119 <= s["listings"]["freshness_seconds"] < 180
    q = s["queues"]
    assert q["legacy_list_length"] == 3
    assert q["dead_letter_length"] == 2
    jobs, batches = (st["group"] for st in q["streams"])
    assert (jobs["group"], jobs["lag"], jobs["pending"], jobs["consumers"], jobs["consumers_alive"]) == (
        c.PLANNER_GROUP,
        3,
        1,
        1,
        1,
    )
    assert (batches["group"], batches["lag"], batches["pending"]) == (c.INDEXER_GROUP, 3, 1)
    assert batches["oldest_pending_idle_seconds"] >= 0
    minutes = s["throughput"]["per_minute"]
    assert len(minutes) == s["throughput"]["window_minutes"] == 15
    assert sum(m["batches"] for m in minutes) == 3
    assert sum(m["listings"] for m in minutes) == 18
    assert sum(m["failed"] for m in minutes) == 3
    [job] = s["jobs"]
    assert job["job_id"] == scenario.job_id
    assert job["progress"]["done"] == 5
    assert job["progress"]["percent"] == 50.0
    assert (s["failures_total"], s["failures_open"], s["failures_last_hour"]) == (3, 2, 3)
    assert s["recent_errors"][0]["error_message"] == "입력 거부됨"


async def test_status_of_an_empty_system(client: httpx.AsyncClient) -> None:
    s = (await client.get("/status")).json()
    assert s["listings"] == {
        "total": 0,
        "indexed": 0,
        "pending": 0,
        "coverage": 1.0,
        "freshness_seconds": 0.0,
    }
    assert all(st["length"] == 0 and st["group"]["exists"] is False for st in s["queues"]["streams"])
    assert s["jobs"] == []
    assert s["recent_errors"] == []


async def test_throughput_reads_only_new_events(
    client: httpx.AsyncClient, scenario: Any, settings: Settings
) -> None:
    first = (await client.get("/status")).json()["throughput"]["per_minute"]
    second = (await client.get("/status")).json()["throughput"]["per_minute"]
    assert sum(m["batches"] for m in first) == sum(m["batches"] for m in second) == 3


async def test_oldest_pending_age_counts_from_when_the_entry_was_added(
    redis: aioredis.Redis, redis_settings: Settings
) -> None:
    """A heartbeat (XCLAIM JUSTID) resets the idle time; the age of the work keeps growing."""
    name = redis_settings.batch_stream
    await redis.xgroup_create(name, "g", id="0", mkstream=True)
    seconds, micros = await redis.time()
    await redis.xadd(name, {"n": "1"}, id=f"{(seconds - 600) * 1000}-0")  # added ten minutes ago
    await redis.xreadgroup("g", "c", {name: ">"}, count=1)
    await redis.xclaim(name, "g", "c", 0, [f"{(seconds - 600) * 1000}-0"], justid=True)

    stats = await stream_stats(redis, StreamGroup(name, "g", "batches"))
    after_s, after_us = await redis.time()

    # Bounds from Redis' own clock read around the calls (milliseconds, as Redis counts idle time).
    elapsed_ms = (after_s * 1000 + after_us // 1000) - (seconds * 1000 + micros // 1000)
    assert stats.group.oldest_pending_idle_seconds <= elapsed_ms / 1000  # claimed in between
    assert 600 <= stats.group.oldest_pending_age_seconds <= 600 + (after_s - seconds) + 1


async def test_lag_falls_back_when_redis_cannot_tell(redis: aioredis.Redis, redis_settings: Settings) -> None:
    name = redis_settings.batch_stream
    await redis.xgroup_create(name, "g", id="0", mkstream=True)
    ids = [await redis.xadd(name, {"n": str(i)}) for i in range(6)]
    await redis.xreadgroup("g", "c", {name: ">"}, count=1)
    await redis.xdel(name, ids[3])  # an undelivered entry: XINFO GROUPS lag becomes null
    [info] = await redis.xinfo_groups(name)
    assert info["lag"] is None

    stats = await stream_stats(redis, StreamGroup(name, "g", "batches"))

    assert stats.group.lag == 4
    assert stats.group.lag_exact


async def test_metrics_expose_the_projection_gauges(
    client: httpx.AsyncClient, scenario: Any, settings: Settings, pool: asyncpg.Pool[Any]
) -> None:
    await pool.executemany("INSERT INTO event_outbox (event) VALUES ($1)", [({"type": "job_planned"},)] * 2)

    res = await client.get("/metrics")

    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(res.text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(f"finally_indexer_{name}", tuple(sorted(labels.items())))]

    batches = {"stream": settings.batch_stream, "group": c.INDEXER_GROUP}
    jobs = {"stream": settings.jobs_stream, "group": c.PLANNER_GROUP}
    assert value("legacy_list_length") == 3
    assert value("consumer_group_lag", **batches) == 3
    assert value("consumer_group_lag", **jobs) == 3
    assert value("consumer_group_pending", **batches) == 1
    assert value("consumers_alive", **batches) == 1
    assert value("oldest_pending_age_seconds", **batches) >= 0
    assert value("stream_length", stream=settings.dead_letter_stream) == 2
    assert value("stream_length", stream=settings.batch_stream) == 5
    assert value("event_outbox_rows") == 2  # committed events not yet relayed
    assert value("listings_in_source") == 10
    assert value("listings_indexed") == 6
    assert value("index_coverage_ratio") == 0.6
    assert value("index_freshness_seconds") >= 119
    assert value("failed_operations_open") == 2


async def test_status_shows_the_shared_embedding_budget(
    redis: aioredis.Redis, redis_settings: Settings
) -> None:
    """The figures the workers leave in the budget hash: limits, tokens this and last minute, pace."""
    from pydantic import SecretStr  # noqa: PLC0415

    from finally_indexer.http.status import StatusProjector  # noqa: PLC0415
    from finally_indexer.processor.embedders.budget import RateBudget, ServerLimits, budget_key  # noqa: PLC0415

    settings = redis_settings.model_copy(
        update={"embedder": "openai", "openai_api_key": SecretStr(f"sk-status-{redis_settings.collection}")}
    )
    projector = StatusProjector(settings)
    assert await projector.embedding_budget(redis) is not None  # nothing spent yet: zeros, not an error
    key = budget_key(SecretStr(f"sk-status-{redis_settings.collection}"), settings.embedding_model)
    budget = RateBudget(redis, key=key)
    try:
        assert await budget.try_reserve(1_000) == 0  # the probe: limits not known yet
        await budget.settle(1_000, 900, ServerLimits(limit_tokens=1_000_000, limit_requests=3_000))
        await budget.rate_limited(0, 0.001)
        figures = await projector.embedding_budget(redis)
    finally:
        await redis.delete(key)
    assert figures is not None
    assert (figures.tokens_per_minute_limit, figures.requests_per_minute_limit) == (1_000_000, 3_000)
    assert figures.tokens_this_minute + figures.tokens_last_minute == 900
    assert figures.pace == 0.9
    hashing = StatusProjector(redis_settings)
    assert await hashing.embedding_budget(redis) is None


async def test_the_budget_minute_is_redis_s_not_the_api_host_s(
    redis: aioredis.Redis, redis_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers count the budget's minutes by Redis's clock (``TIME`` in the script); an API host
    whose clock is two hours off still shows this minute's tokens."""
    from pydantic import SecretStr  # noqa: PLC0415

    from finally_indexer.http import status  # noqa: PLC0415
    from finally_indexer.processor.embedders.budget import RateBudget, ServerLimits, budget_key  # noqa: PLC0415

    api_key = SecretStr(f"sk-clock-{redis_settings.collection}")
    settings = redis_settings.model_copy(update={"embedder": "openai", "openai_api_key": api_key})
    key = budget_key(api_key, settings.embedding_model)
    budget = RateBudget(redis, key=key)
    try:
        assert await budget.try_reserve(1_000) == 0
        await budget.settle(1_000, 700, ServerLimits(limit_tokens=1_000_000, limit_requests=3_000))
        skewed = time.time() + 7_200
        monkeypatch.setattr(status, "time", types.SimpleNamespace(time=lambda: skewed), raising=False)
        figures = await status.StatusProjector(settings).embedding_budget(redis)
    finally:
        await redis.delete(key)
    assert figures is not None
    assert figures.tokens_this_minute + figures.tokens_last_minute == 700
