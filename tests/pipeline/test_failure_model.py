"""The failure model's bounds: a breaker per dependency, a maximum work age, which errors are outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx
from app_client import serve_in_loop
from pipeline.helpers import (
    HookedEmbedder,
    OpenPipeline,
    add_listings,
    assert_converged,
    entries,
    fail_times,
    planned_batches,
    push,
    wait_until,
)
from redis.asyncio import Redis

from finally_indexer.core.metrics import BREAKER_STATE
from finally_indexer.core.settings import Settings
from finally_indexer.core.streams import StreamEntry, StreamGroup
from finally_indexer.db import jobs
from finally_indexer.db.failures import FailureFilter
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.processor.breaker import State, board_key, read_board
from finally_indexer.processor.consume import Consumer, Lane, is_transient, read_new
from finally_indexer.processor.dependencies import Dependency
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.enqueue import requeue_failures
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.jobs import Job, JobSource, Operation
from finally_indexer.schemas.messages import BatchMessage


async def _health(pipeline: Pipeline) -> httpx.Response:
    deps = AppDeps(pool=pipeline.pool, redis=pipeline.redis, store=pipeline.store)
    async with serve_in_loop(create_app(pipeline.settings, deps=deps)) as c:
        return await c.get("/health")


# --- the breaker -------------------------------------------------------------------------------------
async def test_embedding_failures_open_its_breaker_visible_in_health_and_metrics(
    *, open_pipeline: OpenPipeline, redis: Redis, pool: asyncpg.Pool[Any], embedder: Embedder
) -> None:
    """BREAKER_FAILURES transient failures of the embedding API in a row open its breaker: the
    worker's gauge says so, and /health (any process: read from Redis) is 503 naming it."""
    down = HookedEmbedder(embedder, fail_times(1000))
    pipeline = await open_pipeline(embedder=down, breaker_failures=2, breaker_open_s=3600)
    settings = pipeline.settings
    await add_listings(pool, 1, 2)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2]})
    [batch] = await planned_batches(pipeline)
    assert (await _health(pipeline)).status_code == 200
    breakers = pipeline.consumer.breakers
    assert breakers is not None

    for delivery in (1, 2):
        consumed = await pipeline.consumer.consume(pipeline.indexer_lane, [batch], {batch.entry_id: delivery})
        assert list(consumed.failed) == [batch.entry_id]

    assert breakers.state(Dependency.EMBEDDING) is State.OPEN
    assert breakers.state(Dependency.POSTGRES) is State.CLOSED  # blamed on the embedding API only
    assert BREAKER_STATE.labels(dependency="embedding")._value.get() == State.OPEN
    key = board_key(settings.jobs_stream)
    await wait_until(lambda: _reported(redis, key))  # written in the background
    res = await _health(pipeline)
    assert res.status_code == 503, res.text
    body = res.json()
    assert body["status"] == "degraded"
    [sentence] = body["breakers"]
    assert sentence.startswith(f"embedding: breaker open on {pipeline.consumer.name}")
    assert "embedding API briefly unavailable" in sentence
    assert len(down.calls) == 2  # nothing else tried the API


async def _reported(redis: Redis, key: str) -> bool:
    return bool(await read_board(redis, key=key))


async def test_an_open_breaker_holds_deliveries_until_one_probe_succeeds(
    *, open_pipeline: OpenPipeline, redis: Redis, pool: asyncpg.Pool[Any], embedder: Embedder,
    store: VectorStore,
) -> None:  # fmt: skip
    """While the breaker is open no delivery calls the API; then one probe goes alone, and its
    success closes the breaker (and ends the report) before the others run."""
    gate = asyncio.Event()
    failures = fail_times(2)

    async def hook(texts: Sequence[str]) -> None:
        await failures(texts)
        await gate.wait()  # the probe (3rd call) waits here until the test lets it through

    flaky = HookedEmbedder(embedder, hook)
    pipeline = await open_pipeline(embedder=flaky, breaker_failures=2, breaker_open_s=0.5, batch_size=1)
    settings = pipeline.settings
    await add_listings(pool, 1, 2)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2]})
    lane = pipeline.indexer_lane
    first, second = await planned_batches(pipeline)
    gate.set()
    for delivery in (1, 2):  # two transient failures: open
        assert (await pipeline.consumer.consume(lane, [first], {first.entry_id: delivery})).failed
    breakers = pipeline.consumer.breakers
    assert breakers is not None
    assert breakers.state(Dependency.EMBEDDING) is State.OPEN
    gate.clear()

    probe = asyncio.create_task(pipeline.consumer.consume(lane, [first], {first.entry_id: 3}))
    await wait_until(lambda: _calls_are(flaky, 3))  # the probe is in the API call
    other = asyncio.create_task(pipeline.consumer.consume(lane, [second]))
    await asyncio.sleep(0.3)  # let the other delivery run as far as it may
    assert breakers.state(Dependency.EMBEDDING) is State.HALF_OPEN
    assert not other.done()  # it waits for the probe's outcome
    assert len(flaky.calls) == 3
    gate.set()

    assert (await probe).acked == [first.entry_id]
    assert (await other).acked == [second.entry_id]
    assert breakers.state(Dependency.EMBEDDING) is State.CLOSED
    await wait_until(lambda: _nothing_reported(redis, board_key(settings.jobs_stream)))
    await assert_converged(pool, store, settings)


async def _calls_are(embedder: HookedEmbedder, n: int) -> bool:
    return len(embedder.calls) == n


async def _nothing_reported(redis: Redis, key: str) -> bool:
    return not await read_board(redis, key=key)


# --- the maximum work age -----------------------------------------------------------------------------
async def _old_batch(pipeline: Pipeline, redis: Redis, *, age_s: int) -> StreamEntry:
    """A job of listing 1 planned ``age_s`` ago (rows in PostgreSQL, its batch entry's id that old)."""
    job = Job.build(source=JobSource.API, operation=Operation.SYNC, product_ids=[1], scope="ids")
    await jobs.insert_job(pipeline.pool, job)
    await jobs.insert_batches(pipeline.pool, job.job_id, "sync", [[1]])
    await jobs.mark_planned(pipeline.pool, job.job_id, total=1, batches=1)
    then_ms = int(time.time() * 1000) - age_s * 1000
    message = BatchMessage(
        job_id=job.job_id, seq=0, operation=Operation.SYNC, product_ids=[1], received_ms=then_ms
    )
    pair = pipeline.indexer_lane.pair
    # the stream is new (its group made at id 0): an id from the past is still accepted
    await redis.xadd(pair.stream, message.to_fields(), id=f"{then_ms}-0")  # type: ignore[arg-type]
    [entry] = await read_new(redis, pair, pipeline.consumer.name, count=10)
    return entry


async def test_work_older_than_the_maximum_age_is_dead_lettered_once_and_replayable(
    *, open_pipeline: OpenPipeline, redis: Redis, pool: asyncpg.Pool[Any], embedder: Embedder,
    store: VectorStore,
) -> None:  # fmt: skip
    """Only outages (transient failures, never counted) and MAX_DELIVERIES far away: the age
    bound still ends it — one failed_operations row, reason max_age_exceeded, and /retry replays it."""
    down = HookedEmbedder(embedder, fail_times(1000))
    pipeline = await open_pipeline(
        embedder=down, work_max_age_s=60, max_deliveries=100, breaker_failures=1000
    )
    settings = pipeline.settings
    await add_listings(pool, 1, 1)
    entry = await _old_batch(pipeline, redis, age_s=120)
    lane = pipeline.indexer_lane

    # the first delivery of old work runs (a backlog is not dead-lettered for waiting)
    assert (await pipeline.consumer.consume(lane, [entry])).failed
    for delivery in (2, 3):  # 3: a crash after the dead letter, before the ack
        consumed = await pipeline.consumer.consume(lane, [entry], {entry.entry_id: delivery})
        assert consumed.acked == [entry.entry_id]

    rows = await pool.fetch("SELECT reason, error_class, product_id, error_message FROM failed_operations")
    assert [(r["reason"], r["error_class"], r["product_id"]) for r in rows] == [
        ("max_age_exceeded", "MaxAgeExceeded", 1)
    ]
    assert "embedding API briefly unavailable" in rows[0]["error_message"]
    [(_, dead)] = await entries(redis, settings.dead_letter_stream)
    assert dead[b"dl_reason"] == b"max_age_exceeded"
    assert (await redis.xpending(lane.pair.stream, lane.pair.group))["pending"] == 0
    assert await pool.fetchval("SELECT status FROM index_jobs") == "failed"

    healthy = await open_pipeline(work_max_age_s=60)  # the embedding API is back
    result = await requeue_failures(
        pool, redis, jobs_stream=settings.jobs_stream, flt=FailureFilter(reason="max_age_exceeded"), limit=10
    )
    assert result.requeued == 1
    await healthy.drain()
    await assert_converged(pool, store, settings)


# --- which asyncpg InterfaceError is an outage --------------------------------------------------------
async def test_only_a_closed_connection_is_a_transient_interface_error(postgres_dsn: str) -> None:
    conn = await asyncpg.connect(postgres_dsn)
    try:
        busy = asyncio.create_task(conn.fetchval("SELECT pg_sleep(0.5)"))
        await asyncio.sleep(0.1)
        try:
            await conn.fetchval("SELECT 1")  # client misuse: one connection, two operations at once
        except asyncpg.InterfaceError as exc:
            misuse: BaseException = exc
        await busy
    finally:
        await conn.close()
    try:
        await conn.fetchval("SELECT 1")
    except asyncpg.InterfaceError as exc:
        closed: BaseException = exc

    assert "another operation is in progress" in str(misuse)
    assert not is_transient(misuse)  # a bug counts toward MAX_DELIVERIES like any other
    assert is_transient(closed)


async def test_a_client_misuse_interface_error_is_dead_lettered_after_max_deliveries(
    redis: Redis, settings: Settings, postgres_dsn: str
) -> None:
    """Before, every asyncpg InterfaceError was an outage: a bug raising one looped forever."""
    pair = StreamGroup(stream=settings.jobs_stream, group="g", role="jobs stream")
    await redis.xgroup_create(pair.stream, pair.group, id="0", mkstream=True)
    await redis.xadd(pair.stream, {"payload": b"{}"})
    given_up: list[tuple[int, str]] = []
    conn = await asyncpg.connect(postgres_dsn)

    async def process(_: StreamEntry, _n: int) -> None:
        busy = asyncio.create_task(conn.fetchval("SELECT pg_sleep(0.2)"))
        await asyncio.sleep(0.05)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await busy

    async def give_up(_: StreamEntry, deliveries: int, _error: str | None, reason: str) -> None:
        given_up.append((deliveries, reason))

    consumer = Consumer(redis, consumer="c", max_deliveries=2, reclaim_idle_ms=60_000)
    lane = Lane(pair, process=process, give_up=give_up)
    try:
        [entry] = await read_new(redis, pair, "c", count=1)
        for delivery in (1, 2, 3):
            await consumer.consume(lane, [entry], {entry.entry_id: delivery})
    finally:
        await conn.close()
    assert given_up == [(3, "max_deliveries")]
