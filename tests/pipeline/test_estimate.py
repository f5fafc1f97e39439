"""Dry runs: the estimate matches what the real run then embeds and what the provider bills."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakes.openai_server import FakeOpenAI
from pipeline.helpers import OpenPipeline, add_listings, one_row, push
from pydantic import SecretStr
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.db import products
from finally_indexer.processor.cost import Usage
from finally_indexer.processor.embedders.openai import OpenAIEmbedder
from finally_indexer.processor.embedders.tokens import count_tokens
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.estimate import DryRun, Tally
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.schemas.jobs import Job, JobSource, Operation

MODEL = "text-embedding-3-large"


@pytest.fixture
async def openai_embedder(settings: Settings, fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIEmbedder]:
    embedder = OpenAIEmbedder(
        api_key=SecretStr("sk-test"),
        model=MODEL,
        dimensions=settings.vector_size,
        base_url=fake_openai.base_url,
    )
    yield embedder
    await embedder.aclose()


@pytest.fixture
async def openai_pipeline(open_pipeline: OpenPipeline, openai_embedder: OpenAIEmbedder) -> Pipeline:
    return await open_pipeline(embedder=openai_embedder)


def estimator(settings: Settings, embedder: OpenAIEmbedder) -> DryRun:
    return DryRun(
        embedder=embedder, text_template=settings.text_template, batch_size=settings.batch_size,
        usd_per_million_tokens=settings.usd_per_million_tokens(MODEL),
    )  # fmt: skip


def billed(fake: FakeOpenAI, since: int = 0) -> int:
    """Tokens the fake server reported as usage in its successful requests from ``since`` on."""
    return sum(count_tokens(t) for r in fake.requests[since:] if r.status == 200 for t in r.inputs)


def sync_all(*, scope: str = "changed", force: bool = False) -> Job:
    return Job.build(
        source=JobSource.API, operation=Operation.SYNC, product_ids="all", scope=scope, force=force
    )


async def test_dry_run_estimate_is_within_5_percent_of_the_tokens_the_real_run_is_billed(
    openai_pipeline: Pipeline, openai_embedder: OpenAIEmbedder, fake_openai: FakeOpenAI, redis: Redis,
    settings: Settings,
) -> None:  # fmt: skip
    pool = openai_pipeline.pool
    await add_listings(pool, 1, 50)
    # one listing beyond the model's per-input limit: the estimate must truncate as the embedder does
    await pool.execute("UPDATE products SET content = repeat('엔진 상태 최상 ', 4000) WHERE id = 40")
    await push(redis, settings, {"operation": "sync", "product_ids": list(range(1, 31))})
    await openai_pipeline.drain()
    # changed text: re-embedded; same text but a newer row: scanned as changed, then skipped
    await pool.execute(
        "UPDATE products SET content = content || ' 튜닝', updated_at = now() WHERE id IN (3, 4)"
    )
    await pool.execute("UPDATE products SET updated_at = now() WHERE id IN (5, 6)")
    await pool.execute("DELETE FROM products WHERE id = 2")  # indexed, now gone: deleted
    jobs_before = await pool.fetchval("SELECT count(*) FROM index_jobs")
    entries_before = await redis.xlen(settings.jobs_stream)
    requests_before = len(fake_openai.requests)

    found = await estimator(settings, openai_embedder).estimate(pool, sync_all())

    assert len(fake_openai.requests) == requests_before  # no embedding call
    assert await pool.fetchval("SELECT count(*) FROM index_jobs") == jobs_before  # nothing queued
    assert await redis.xlen(settings.jobs_stream) == entries_before
    assert (found.tally.embed, found.tally.skip, found.tally.delete) == (22, 2, 1)

    await push(redis, settings, {"operation": "sync", "product_ids": "all", "scope": "changed"})
    await openai_pipeline.drain()

    real = billed(fake_openai, since=requests_before)
    assert real > 8191  # listing 40 was sent truncated to the per-input limit, and the estimate knew
    assert abs(found.tally.usage.tokens - real) <= 0.05 * real
    job = await one_row(pool, "SELECT * FROM index_jobs ORDER BY created_at DESC LIMIT 1")
    assert job["embedding_tokens"] == real
    assert job["embedding_requests"] == found.tally.usage.requests
    assert float(job["cost_usd"]) == pytest.approx(found.usd)
    progress = await pool.fetchrow(
        "SELECT sum(indexed) AS indexed, sum(skipped) AS skipped, sum(deleted) AS deleted"
        " FROM index_job_batches WHERE job_id = $1",
        job["job_id"],
    )
    assert progress is not None
    assert (progress["indexed"], progress["skipped"], progress["deleted"]) == (22, 2, 1)


async def test_forced_scan_embeds_everything_and_lists_and_deletes_are_counted(
    openai_pipeline: Pipeline, openai_embedder: OpenAIEmbedder, redis: Redis, settings: Settings
) -> None:
    pool = openai_pipeline.pool
    await add_listings(pool, 1, 20)
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await openai_pipeline.drain()
    dry = estimator(settings, openai_embedder)

    nothing = await dry.estimate(pool, sync_all(scope="all"))
    forced = await dry.estimate(pool, sync_all(scope="all", force=True))
    listed = await dry.estimate(
        pool, Job.build(source=JobSource.API, operation=Operation.SYNC, product_ids=[1, 2, 999], force=True)
    )
    deleting = await dry.estimate(
        pool, Job.build(source=JobSource.API, operation=Operation.DELETE, product_ids=[1, 2, 3])
    )

    assert (nothing.tally.embed, nothing.tally.skip, nothing.tally.usage) == (0, 20, Usage())
    assert (forced.tally.embed, forced.tally.skip) == (20, 0)
    assert forced.tally.usage.requests == -(-20 // settings.batch_size)
    assert forced.usd == pytest.approx(forced.tally.usage.tokens * 0.13 / 1_000_000)
    # two of the listings the forced scan counted, and no more
    assert 0 < listed.tally.usage.tokens < forced.tally.usage.tokens
    assert listed.tally == Tally(
        listings=3, embed=2, delete=1,
        usage=Usage(listed.tally.usage.tokens, 1),
    )  # fmt: skip
    assert deleting.tally == Tally(listings=3, delete=3)
    assert forced.duration_s is None  # no rate budget known


async def test_scan_streams_keyset_pages(
    pipeline: Pipeline, embedder: Embedder, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalogue is read a page at a time: never more rows in hand than one page."""
    await add_listings(pipeline.pool, 1, 100)
    limits: list[int] = []
    scan = products.scan_listings_with_state

    async def spy(db, *, after: int, limit: int, changed: bool):
        rows = await scan(db, after=after, limit=limit, changed=changed)
        limits.append(len(rows))
        return rows

    monkeypatch.setattr(products, "scan_listings_with_state", spy)
    monkeypatch.setattr("finally_indexer.processor.estimate.PAGE_LISTINGS", 16)
    dry = DryRun(
        embedder=embedder, text_template=settings.text_template, batch_size=settings.batch_size,
        usd_per_million_tokens=0.0,
    )  # fmt: skip
    found = await dry.estimate(pipeline.pool, sync_all(scope="all"))
    assert found.tally.embed == 100
    assert max(limits) == 16
    assert sum(limits) == 100
