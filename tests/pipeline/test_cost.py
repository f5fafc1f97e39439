"""Cost accounting: a job's tokens, requests and US dollars are what the provider counted, once per batch."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakes.openai_server import FakeOpenAI
from pipeline.helpers import OpenPipeline, add_listings, entries, one_row, push
from pydantic import SecretStr
from redis.asyncio import Redis

from finally_indexer.core import metrics
from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamEntry, as_text
from finally_indexer.processor.embedders.openai import OpenAIEmbedder
from finally_indexer.processor.embedders.tokens import count_tokens
from finally_indexer.processor.pipeline import Pipeline

MODEL = "text-embedding-3-small"
PRICE = 0.02  # the published price of text-embedding-3-small, per 1M tokens


@pytest.fixture
async def openai_pipeline(
    open_pipeline: OpenPipeline, settings: Settings, fake_openai: FakeOpenAI
) -> AsyncIterator[Pipeline]:
    embedder = OpenAIEmbedder(
        api_key=SecretStr("sk-test"),
        model=MODEL,
        dimensions=settings.vector_size,
        base_url=fake_openai.base_url,
    )
    yield await open_pipeline(embedder=embedder)
    await embedder.aclose()


def billed(fake: FakeOpenAI) -> int:
    """The tokens the fake server reported as usage, over every successful request."""
    return sum(count_tokens(text) for text in fake.embedded_inputs)


async def test_job_records_tokens_requests_and_usd_the_provider_counted(
    openai_pipeline: Pipeline, fake_openai: FakeOpenAI, redis: Redis, settings: Settings
) -> None:
    pool = openai_pipeline.pool
    await add_listings(pool, 1, 30)
    before = metrics.ACCOUNTED_TOKENS.labels(model=MODEL)._value.get()
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await openai_pipeline.drain()

    job = await one_row(pool, "SELECT * FROM index_jobs")
    ok = [r for r in fake_openai.requests if r.status == 200]
    assert job["embedding_tokens"] == billed(fake_openai) > 0
    assert job["embedding_requests"] == len(ok) == -(-30 // settings.batch_size)
    assert float(job["cost_usd"]) == pytest.approx(job["embedding_tokens"] * PRICE / 1_000_000)
    assert job["embedding_model"] == MODEL
    assert metrics.ACCOUNTED_TOKENS.labels(model=MODEL)._value.get() - before == job["embedding_tokens"]


async def test_a_redelivered_batch_is_not_counted_twice(
    openai_pipeline: Pipeline, fake_openai: FakeOpenAI, redis: Redis, settings: Settings
) -> None:
    pool = openai_pipeline.pool
    await add_listings(pool, 1, 5)
    # force: a redelivery embeds (and is billed) again, which is exactly what must not count twice
    await push(redis, settings, {"operation": "sync", "product_ids": "all", "force": True})
    await openai_pipeline.drain()
    first = await one_row(pool, "SELECT embedding_tokens, embedding_requests, cost_usd FROM index_jobs")
    billed_once = billed(fake_openai)

    [(entry_id, fields)] = await entries(redis, settings.batch_stream)
    await openai_pipeline.indexer.handle(
        StreamEntry(settings.batch_stream, as_text(entry_id), fields), deliveries=2
    )

    assert billed(fake_openai) == 2 * billed_once  # the provider billed the redelivery ...
    again = await one_row(pool, "SELECT embedding_tokens, embedding_requests, cost_usd FROM index_jobs")
    assert dict(again) == dict(first)  # ... the job counts its batch once
    assert first["embedding_tokens"] == billed_once


async def test_offline_embedder_costs_nothing(pipeline: Pipeline, redis: Redis, settings: Settings) -> None:
    await add_listings(pipeline.pool, 1, 10)
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await pipeline.drain()
    job = await one_row(
        pipeline.pool, "SELECT embedding_tokens, cost_usd, embedding_requests FROM index_jobs"
    )
    assert (job["embedding_tokens"], float(job["cost_usd"])) == (0, 0.0)
    assert job["embedding_requests"] == -(-10 // settings.batch_size)
