"""The pipeline against an OpenAI-compatible server (the fake, driven by the real openai client)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import structlog
from fakes.openai_server import FakeOpenAI
from pipeline.helpers import OpenPipeline, add_listings, events, expected_index, one_row, push, stored_index
from pydantic import SecretStr
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.processor.embedders.openai import OpenAIEmbedder, RetryPolicy
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.schemas.messages import EventType


@pytest.fixture
async def openai_pipeline(
    open_pipeline: OpenPipeline, settings: Settings, fake_openai: FakeOpenAI
) -> AsyncIterator[Pipeline]:
    retry = RetryPolicy(
        max_attempts=4,
        initial_backoff=0.001,
        max_backoff=0.01,
        jitter=0.001,
        max_retry_after=2.0,
        request_timeout=5.0,
    )
    embedder = OpenAIEmbedder(
        api_key=SecretStr("sk-test"), model="text-embedding-3-large", dimensions=settings.vector_size,
        base_url=fake_openai.base_url, retry=retry,
    )  # fmt: skip
    yield await open_pipeline(embedder=embedder)
    await embedder.aclose()


async def test_rate_limited_endpoint_slows_but_loses_nothing(
    openai_pipeline: Pipeline, fake_openai: FakeOpenAI, redis: Redis, settings: Settings
) -> None:
    pool, store = openai_pipeline.pool, openai_pipeline.store
    await add_listings(pool, 1, 40)
    fake_openai.fail_next(429, 3, retry_after=0.2)
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    with structlog.testing.capture_logs() as logged:
        await openai_pipeline.drain()
    waits = [e["wait_s"] for e in logged if e["event"] == "embedding_retry"]
    assert waits == [0.2, 0.2, 0.2]  # each retry paused as long as the server's Retry-After asked
    assert await stored_index(store) == await expected_index(pool, settings.text_template)
    statuses = [r.status for r in fake_openai.requests]
    assert statuses.count(429) == 3
    assert await pool.fetchval("SELECT count(*) FROM failed_operations") == 0


async def test_rejected_input_fails_only_that_listing(
    openai_pipeline: Pipeline, fake_openai: FakeOpenAI, redis: Redis, settings: Settings
) -> None:
    pool, store = openai_pipeline.pool, openai_pipeline.store
    await add_listings(pool, 1, 8)
    await pool.execute("UPDATE products SET content = 'spam <<REJECT>>' WHERE id = 5")
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await openai_pipeline.drain()
    expected = await expected_index(pool, settings.text_template)
    del expected[5]
    assert await stored_index(store) == expected
    flags = dict(await pool.fetch("SELECT id, is_conversion FROM products"))
    assert [i for i, flag in flags.items() if not flag] == [5]
    failure = await one_row(pool, "SELECT product_id, reason, error_message FROM failed_operations")
    assert failure["product_id"] == 5
    assert failure["reason"] == "embedding_input_rejected"
    found = await events(redis, settings)
    assert [e.product_ids for e in found if e.type is EventType.ITEM_FAILED] == [[5]]
    assert await pool.fetchval("SELECT status FROM index_jobs") == "completed"

    # Fixed at the source, a re-sync succeeds and resolves the failure.
    await pool.execute("UPDATE products SET content = '정상', updated_at = now() WHERE id = 5")
    await push(redis, settings, {"operation": "update", "product_ids": [5]})
    await openai_pipeline.drain()
    assert await pool.fetchval("SELECT resolution FROM failed_operations") == "succeeded"
