"""Redis loses its data (FLUSHALL: a restart without its AOF, a failover to an empty replica).

The worker recreates its consumer groups at id 0, restarts its subscribers and re-publishes what
PostgreSQL says is unfinished; ``/health`` is 503 ``degraded`` naming the streams nothing consumes
until then. Each test runs its own Redis server: a flush must not reach the session's.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import pytest
from app_client import serve_in_loop
from pipeline.helpers import HookedEmbedder, add_listings, assert_converged, push, running, wait_until
from pipeline.test_crash import _start, _wait_line
from pydantic import SecretStr
from redis.asyncio import Redis

from finally_indexer.core.roles import serve_worker
from finally_indexer.core.settings import Settings
from finally_indexer.devenv._process import free_port
from finally_indexer.devenv.redis import RedisServer
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.processor.bridge import Bridge
from finally_indexer.processor.consume import read_new
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.enqueue import enqueue_job
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.recovery import BrokerSupervisor
from finally_indexer.processor.vectorstore import VectorStore
from finally_indexer.schemas.jobs import Job, JobSource, Operation


@pytest.fixture
async def flushable(settings: Settings, server_dir: Path) -> AsyncIterator[tuple[Settings, Redis]]:
    """The test's settings on a Redis server of its own, and a client of it."""
    server = RedisServer(server_dir / "redis")
    url = await asyncio.to_thread(server.start)
    client = Redis.from_url(url)
    yield settings.model_copy(update={"redis_url": SecretStr(url)}), client
    await client.aclose()
    await asyncio.to_thread(server.stop)


async def _all_completed(pool: asyncpg.Pool[Any], jobs: int) -> bool:
    done = await pool.fetchval("SELECT count(*) FROM index_jobs WHERE status = 'completed'")
    return bool(done == jobs) and await pool.fetchval("SELECT count(*) FROM index_jobs") == jobs


async def _health(settings: Settings, deps: AppDeps) -> httpx.Response:
    async with serve_in_loop(create_app(settings, deps=deps)) as c:
        return await c.get("/health")


@pytest.mark.slow
async def test_flushall_mid_run_recreates_groups_and_finishes_running_and_new_jobs(
    flushable: tuple[Settings, Redis], pool: asyncpg.Pool[Any], store: VectorStore, embedder: Embedder
) -> None:
    settings, redis = flushable
    entered, gate = asyncio.Event(), asyncio.Event()

    async def hold(_: Sequence[str]) -> None:
        entered.set()
        await gate.wait()

    pipeline = await Pipeline.open(
        settings, redis=redis, pool=pool, store=store, embedder=HookedEmbedder(embedder, hold)
    )
    await add_listings(pool, 1, 40)  # five batches of eight
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    async with running(pipeline) as worker:
        await asyncio.wait_for(entered.wait(), 20)
        assert await pool.fetchval("SELECT status FROM index_jobs") == "running"
        await redis.flushall()  # the batch entries of the running job are gone, and both groups
        gate.set()
        await add_listings(pool, 41, 48)
        await push(redis, settings, {"operation": "sync", "product_ids": list(range(41, 49))})
        await wait_until(lambda: _all_completed(pool, 2), timeout_s=30)
        assert not worker.done()
        deps = AppDeps(pool=pool, redis=redis, store=store)
        assert (await _health(settings, deps)).status_code == 200
    await assert_converged(pool, store, settings)
    # every listing counted once, however often its batch was published
    assert await pool.fetchval("SELECT sum(indexed + skipped) FROM index_job_batches") == 48


async def test_worker_started_after_a_flush_republishes_running_and_queued_jobs(
    flushable: tuple[Settings, Redis], pool: asyncpg.Pool[Any], store: VectorStore, embedder: Embedder
) -> None:
    settings, redis = flushable
    first = await Pipeline.open(settings, redis=redis, pool=pool, store=store, embedder=embedder)
    await add_listings(pool, 1, 24)
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await first.bridge.drain()
    planned = await read_new(redis, first.planner_lane.pair, "planner-only", count=10)
    await first.consumer.consume(first.planner_lane, planned)  # running; its batches only on the stream
    queued = Job.build(source=JobSource.API, operation=Operation.SYNC, product_ids=[1, 2])
    await enqueue_job(pool, redis, jobs_stream=settings.jobs_stream, job=queued)  # pending, never planned
    await redis.flushall()

    second = await Pipeline.open(settings, redis=redis, pool=pool, store=store, embedder=embedder)
    stop = asyncio.Event()
    worker = asyncio.create_task(serve_worker(second, stop=stop))
    try:
        await wait_until(lambda: _all_completed(pool, 2), timeout_s=20)
    finally:
        stop.set()
        await worker
    await assert_converged(pool, store, settings)


@pytest.mark.slow
async def test_worker_process_recovers_from_a_flush_and_health_reports_the_gap(
    flushable: tuple[Settings, Redis], pool: asyncpg.Pool[Any], store: VectorStore
) -> None:
    settings, redis = flushable
    deps = AppDeps(pool=pool, redis=redis, store=store)
    bridge = Bridge(redis, list_key=settings.legacy_list, stream_key=settings.jobs_stream)
    await add_listings(pool, 1, 16)
    await push(redis, settings, {"operation": "sync", "product_ids": list(range(1, 9))})
    await bridge.drain()
    worker = await _start(settings, "worker-a", delay=0)
    try:
        await _wait_line(worker, b"ready")
        await wait_until(lambda: _all_completed(pool, 1), timeout_s=30)
        assert (await _health(settings, deps)).status_code == 200

        worker.send_signal(signal.SIGSTOP)  # frozen: the flush is seen by nobody until SIGCONT
        await redis.flushall()
        await push(redis, settings, {"operation": "sync", "product_ids": list(range(9, 17))})
        await bridge.drain()  # XADD makes a stream with no group: the job would never be planned
        res = await _health(settings, deps)
        assert res.status_code == 503, res.text
        body = res.json()
        assert body["status"] == "degraded"
        assert body["down"] == []
        assert any(f"planner on {settings.jobs_stream}" in s for s in body["stopped"])

        worker.send_signal(signal.SIGCONT)
        await wait_until(lambda: _all_completed(pool, 2), timeout_s=30)
        assert (await _health(settings, deps)).status_code == 200
        assert worker.returncode is None
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 40) == 0


async def test_a_supervisor_waits_out_an_unreachable_redis_instead_of_giving_up(
    redis_settings: Settings,
) -> None:
    """Redis down is an outage, not a failed recovery: the worker must not exit (and, all-in-one,
    take the API with it) after a few seconds of it."""
    closed = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    supervisor = BrokerSupervisor(
        redis=closed, settings=redis_settings, build=lambda: cast("Any", None),
        republish=lambda: asyncio.sleep(0), check_s=0.02, attempts=2,
    )  # fmt: skip
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)  # about 20 checks against a closed port
    try:
        await asyncio.wait_for(supervisor.run(stop), 10)  # returns at stop; no BrokerUnrecoverable
    finally:
        await closed.aclose()
