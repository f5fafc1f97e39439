"""A worker killed with SIGKILL mid-batch: a second worker reclaims its entries and the end state
is the same as without the kill."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pipeline.helpers import add_listings, assert_converged, push, wait_until
from redis.asyncio import Redis

from finally_indexer.core.settings import Settings
from finally_indexer.processor.bridge import Bridge
from finally_indexer.processor.stores.factory import build_vector_store

HERE = Path(__file__).parent


def _env(settings: Settings, consumer: str, delay: float) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(HERE.parent),
        "TEST_EMBED_DELAY_S": str(delay), "LOG_LEVEL": "WARNING",
    }  # fmt: skip
    return env | settings.as_environment() | {"CONSUMER_NAME": consumer}


async def _start(settings: Settings, consumer: str, delay: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "worker_main.py"), env=_env(settings, consumer, delay), cwd=HERE,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _wait_line(proc: asyncio.subprocess.Process, text: bytes) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while (line := await proc.stdout.readline()) and line.strip() != text:
            pass
    assert line, f"worker exited before printing {text!r}"


@pytest.mark.slow
async def test_sigkill_mid_batch_then_second_worker_reclaims(
    settings: Settings, redis: Redis, pool: asyncpg.Pool[Any]
) -> None:
    await add_listings(pool, 1, 40)
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await Bridge(redis, list_key=settings.legacy_list, stream_key=settings.jobs_stream).drain()

    first = await _start(settings, "worker-a", delay=30)
    await _wait_line(first, b"embedding")
    first.send_signal(signal.SIGKILL)
    await first.wait()
    pending = await redis.xpending_range(settings.batch_stream, "indexer", min="-", max="+", count=100)
    assert pending, "the killed worker left its batch pending"
    assert {p["consumer"] for p in pending} == {b"worker-a"}

    second = await _start(settings, "worker-b", delay=0)

    async def finished() -> bool:
        open_jobs = await pool.fetchval("SELECT count(*) FROM index_jobs WHERE status <> 'completed'")
        info = await redis.xpending(settings.batch_stream, "indexer")
        return bool(open_jobs == 0 and info["pending"] == 0)

    try:
        await wait_until(finished, timeout_s=60)
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 40) == 0

    store = build_vector_store(settings)
    try:
        await assert_converged(pool, store, settings)
    finally:
        await store.aclose()
    assert await pool.fetchval("SELECT sum(indexed + skipped) FROM index_job_batches") == 40
