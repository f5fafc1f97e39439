"""Helpers shared by the pipeline tests: listings, jobs and the convergence check."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
from redis.asyncio import Redis

from finally_indexer.core.errors import TransientError
from finally_indexer.core.roles import serve_worker
from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamEntry
from finally_indexer.processor.consume import read_new
from finally_indexer.processor.embedding import (
    Embedder,
    EmbeddingLimits,
    EmbeddingResult,
    PartialEmbeddingResult,
)
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.texts import build_text, text_hash
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.messages import Event

_INSERT = """
INSERT INTO products (id, title, url, price, content, mileage, brand, year)
SELECT i, '혼다 PCX ' || i, 'https://example.test/' || i, 1000000 + i, '상태 좋은 매물 ' || i, 1000 * i, 'Honda', 2015 + i % 8
FROM generate_series($1::bigint, $2::bigint) AS i
"""


async def add_listings(pool: asyncpg.Pool[Any], first: int, last: int) -> None:
    """Insert listings ``first..last`` (inclusive) with deterministic content."""
    await pool.execute(_INSERT, first, last)


async def push(redis: Redis, settings: Settings, job: dict[str, Any] | bytes) -> None:
    """LPUSH one job exactly as the scraper does."""
    raw = job if isinstance(job, bytes) else json.dumps(job).encode()
    await redis.lpush(settings.legacy_list, raw)


async def expected_index(pool: asyncpg.Pool[Any], template: str) -> dict[int, str]:
    """What the collection should hold: every listing's id and the hash of its current text."""
    rows = await pool.fetch("SELECT * FROM products")
    return {int(r["id"]): text_hash(build_text(dict(r), template)) for r in rows}


async def stored_index(store: VectorStore) -> dict[int, str]:
    """What the collection holds: id → text hash."""
    return {x.product_id: x.text_hash async for x in store.scan()}


async def assert_converged(pool: asyncpg.Pool[Any], store: VectorStore, settings: Settings) -> None:
    """The store holds exactly PostgreSQL's listings with their current text, and every flag agrees."""
    assert await stored_index(store) == await expected_index(pool, settings.text_template)
    unflagged = await pool.fetchval("SELECT count(*) FROM products WHERE NOT is_conversion")
    assert unflagged == 0


class OpenPipeline(Protocol):
    """The ``open_pipeline`` fixture: a pipeline on the test's connections."""

    def __call__(self, *, embedder: Embedder | None = None, **overrides: Any) -> Awaitable[Pipeline]: ...


class HookedEmbedder:
    """Delegates to a real embedder; ``before`` runs before each ``embed_many`` (to fail, gate or edit)."""

    def __init__(
        self, inner: Embedder, before: Callable[[Sequence[str]], Awaitable[None]] | None = None
    ) -> None:
        self.inner = inner
        self.before = before
        self.calls: list[list[str]] = []

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    @property
    def limits(self) -> EmbeddingLimits:
        return self.inner.limits

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def truncate(self, text: str, max_tokens: int) -> str:
        return self.inner.truncate(text, max_tokens)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        return await self.inner.embed(texts)

    async def embed_many(self, texts: Sequence[str]) -> PartialEmbeddingResult:
        self.calls.append(list(texts))
        if self.before is not None:
            await self.before(texts)
        return await self.inner.embed_many(texts)

    async def aclose(self) -> None:
        await self.inner.aclose()


def fail_times(n: int, error: type[Exception] = TransientError) -> Callable[[Sequence[str]], Awaitable[None]]:
    """A hook raising ``error`` (by default a ``TransientError``) on its first ``n`` calls."""
    left = [n]

    async def hook(_: Sequence[str]) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise error("embedding API briefly unavailable (test)")

    return hook


async def wait_until(check: Callable[[], Awaitable[bool]], *, timeout_s: float = 20.0) -> None:
    """Poll ``check`` until it is true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.05)


async def entries(redis: Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Every entry of ``stream`` (typed: redis-py's own annotations are too wide for tests)."""
    found: Any = await redis.xrange(stream)
    return [(i, dict(f)) for i, f in found]


async def events(redis: Redis, settings: Settings) -> list[Event]:
    """Every event appended so far."""
    return [Event.from_fields(f) for _, f in await entries(redis, settings.events_stream)]


async def one_row(pool: asyncpg.Pool[Any], query: str) -> asyncpg.Record:
    """The single row ``query`` returns (fails the test when there is none)."""
    row = await pool.fetchrow(query)
    assert row is not None, query
    return row


async def pending_counts(redis: Redis, settings: Settings) -> tuple[int, int]:
    """Entries delivered and not acknowledged: (planner on the jobs stream, indexer on batches)."""
    jobs = await redis.xpending(settings.jobs_stream, "planner")
    batches = await redis.xpending(settings.batch_stream, "indexer")
    return jobs["pending"], batches["pending"]


@asynccontextmanager
async def running(pipeline: Pipeline) -> AsyncIterator[asyncio.Task[None]]:
    """A worker and the bridge loop run for the block (the worker's task is yielded); both are
    stopped, and awaited, at its end."""
    stop = asyncio.Event()
    worker = asyncio.create_task(serve_worker(pipeline, stop=stop))
    bridge = asyncio.create_task(pipeline.bridge.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.gather(worker, bridge)


async def run_until(
    pipeline: Pipeline, check: Callable[[], Awaitable[bool]], *, timeout_s: float = 20.0
) -> None:
    """Run a worker and the bridge until ``check`` is true (fail after ``timeout_s``); then stop both."""
    async with running(pipeline):
        await wait_until(check, timeout_s=timeout_s)


async def run_until_converged(pipeline: Pipeline, settings: Settings, *, timeout_s: float = 20.0) -> None:
    """Run a worker and the bridge until every job completed, the collection matches the table and
    nothing is pending; then stop both."""

    async def converged() -> bool:
        done = await pipeline.pool.fetchval("SELECT count(*) = 0 FROM index_jobs WHERE status <> 'completed'")
        same = await stored_index(pipeline.store) == await expected_index(
            pipeline.pool, settings.text_template
        )
        return bool(done) and same and await pending_counts(pipeline.redis, settings) == (0, 0)

    await run_until(pipeline, converged, timeout_s=timeout_s)


async def planned_batches(pipeline: Pipeline) -> list[StreamEntry]:
    """Bridge and plan the queued jobs, then deliver their batch entries to the pipeline's consumer
    (first delivery; not handled yet)."""
    await pipeline.bridge.drain()
    jobs = pipeline.planner_lane
    await pipeline.consumer.consume(jobs, await read_new(pipeline.redis, jobs.pair, "c", count=10))
    return await read_new(pipeline.redis, pipeline.indexer_lane.pair, pipeline.consumer.name, count=10)
