"""Failure paths in drain mode: transient failures retried, too many deliveries dead-lettered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from pipeline.helpers import (
    HookedEmbedder,
    OpenPipeline,
    add_listings,
    assert_converged,
    entries,
    fail_times,
    one_row,
    push,
)
from redis.asyncio import Redis

from finally_indexer.core.errors import redact
from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamEntry
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.vectorstore import VectorStore


async def test_transient_failure_is_retried_after_idle_time(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    store: VectorStore,
    embedder: Embedder,
) -> None:
    flaky = HookedEmbedder(embedder, fail_times(2))
    pipeline = await open_pipeline(embedder=flaky)
    await add_listings(pool, 1, 5)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3, 4, 5]})
    report = await pipeline.drain()
    assert report.reclaimed == 2
    await assert_converged(pool, store, settings)
    row = await one_row(pool, "SELECT status, deliveries FROM index_job_batches")
    assert row["status"] == "done"
    assert row["deliveries"] == 3
    assert await pool.fetchval("SELECT count(*) FROM failed_operations") == 0


async def test_entry_delivered_too_often_is_dead_lettered(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    store: VectorStore,
    embedder: Embedder,
) -> None:
    broken = HookedEmbedder(embedder, fail_times(1000, RuntimeError))  # a bug, not an outage
    pipeline = await open_pipeline(embedder=broken, max_deliveries=2)
    settings = pipeline.settings
    await add_listings(pool, 1, 3)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})
    await pipeline.drain()
    assert len(broken.calls) == 2  # the first delivery and one redelivery, then the dead letter
    dead = await entries(redis, settings.dead_letter_stream)
    assert len(dead) == 1
    assert dead[0][1][b"dl_reason"] == b"max_deliveries"
    assert b"RuntimeError" in dead[0][1][b"dl_error"]
    rows = await pool.fetch("SELECT product_id, reason FROM failed_operations ORDER BY product_id")
    assert [(r["product_id"], r["reason"]) for r in rows] == [
        (1, "max_deliveries"),
        (2, "max_deliveries"),
        (3, "max_deliveries"),
    ]
    assert await pool.fetchval("SELECT status FROM index_jobs") == "failed"
    assert await pool.fetchval("SELECT failed FROM index_job_batches") == 3
    assert (await redis.xpending(settings.batch_stream, "indexer"))["pending"] == 0


KEY = "sk-proj-abcdefgh12345678wxyz"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"Incorrect API key provided: {KEY}. You can find",
            "Incorrect API key provided: sk-***. You can find",
        ),
        ("Incorrect API key provided: sk-abc1*****wxyz", "Incorrect API key provided: sk-***"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "Authorization: Bearer ***"),
        ("authorization: bearer abc123", "authorization: bearer ***"),
        ("GET /v1?api_key=abc123&x=1 failed", "GET /v1?api_key=***&x=1 failed"),
        ("apikey=s3cr3t", "apikey=***"),
        ("api-key: s3cr3t", "api-key: ***"),
        ('{"api_key": "s3cr3t", "n": 1}', '{"api_key": "***", "n": 1}'),
        ("password=hunter2 and more", "password=*** and more"),
        ("Password: hunter2", "Password: ***"),
        ("redis://:pw@127.0.0.1:6379/0 refused", "redis://:***@127.0.0.1:6379/0 refused"),
        ("postgresql://app:p%40ss@db:5432/finally", "postgresql://app:***@db:5432/finally"),
        ("postgresql://app@db/finally", "postgresql://app@db/finally"),
        ("https://example.test/a:b@c", "https://example.test/a:b@c"),
        ("task-force sk- desk-top", "task-force sk- desk-top"),
        ("max_tokens=8191 exceeded", "max_tokens=8191 exceeded"),
        ("", ""),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


async def test_stored_failures_are_redacted(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    store: VectorStore,
    embedder: Embedder,
) -> None:

    async def leaky(_: Sequence[str]) -> None:
        raise RuntimeError(f"Error code: 401 - Incorrect API key provided: {KEY}; via redis://:pw@cache:6379")

    pipeline = await open_pipeline(embedder=HookedEmbedder(embedder, leaky), max_deliveries=2)

    settings = pipeline.settings
    await add_listings(pool, 1, 2)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2]})
    await pipeline.drain()
    messages = [r["error_message"] for r in await pool.fetch("SELECT error_message FROM failed_operations")]
    assert len(messages) == 2
    dead = await entries(redis, settings.dead_letter_stream)
    published = [dead[0][1][b"dl_error"].decode()]
    published += [
        f[b"message"].decode() for _, f in await entries(redis, settings.events_stream) if b"message" in f
    ]
    published += [e for e in [await pool.fetchval("SELECT error FROM index_jobs")] if e is not None]
    for text in [*messages, *published]:
        assert "abcdefgh" not in text
        assert ":pw@" not in text
    assert "sk-***" in messages[0]
    assert "redis://:***@cache:6379" in messages[0]


async def test_unparseable_batch_past_max_deliveries_is_dead_lettered_as_invalid(
    settings: Settings, redis: Redis, pool: asyncpg.Pool[Any], pipeline: Pipeline
) -> None:
    """A garbage entry whose invalid-batch dead letter kept failing must not stay pending forever."""
    fields = {b"garbage": b"\xff\xfe", b"v": b"9"}
    added: Any = await redis.xadd(settings.batch_stream, fields)  # type: ignore[arg-type]
    entry_id = str(added.decode())
    entry = StreamEntry(settings.batch_stream, entry_id, fields)
    lane = pipeline.indexer_lane
    await redis.xreadgroup(lane.pair.group, pipeline.consumer.name, {lane.pair.stream: ">"})  # now pending
    consumed = await pipeline.consumer.consume(lane, [entry], {entry_id: settings.max_deliveries + 1})
    assert consumed.acked == [entry_id]
    assert (await redis.xpending(lane.pair.stream, lane.pair.group))["pending"] == 0
    dead = await entries(redis, settings.dead_letter_stream)
    assert len(dead) == 1
    assert dead[0][1][b"dl_reason"] == b"invalid_batch"
    assert dead[0][1][b"dl_deliveries"] == str(settings.max_deliveries + 1).encode()
    assert dead[0][1][b"garbage"] == b"\xff\xfe"
    row = await one_row(pool, "SELECT reason, payload, entry_id FROM failed_operations")
    assert row["reason"] == "invalid_batch"
    assert row["entry_id"] == entry_id
    assert b"garbage=" in row["payload"]
