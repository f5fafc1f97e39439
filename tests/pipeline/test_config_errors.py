"""A misconfigured service (e.g. a revoked API key) leaves entries pending; it blames no listing."""

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
    push,
    running,
    wait_until,
)
from redis.asyncio import Redis
from structlog.testing import capture_logs

from finally_indexer.core.errors import ConfigurationError
from finally_indexer.core.metrics import REGISTRY
from finally_indexer.core.settings import Settings
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.vectorstore import VectorStore

REVOKED = "401 Incorrect API key provided: sk-proj-abcdefgh12345678wxyz"


class Switch:
    """An embedder hook that raises ConfigurationError while ``broken``."""

    def __init__(self) -> None:
        self.broken = True

    async def __call__(self, _: Sequence[str]) -> None:
        if self.broken:
            raise ConfigurationError(REVOKED)


def _config_errors(settings: Settings) -> float:
    labels = {"stream": settings.batch_stream}
    return REGISTRY.get_sample_value("finally_indexer_configuration_errors_total", labels) or 0.0


async def _nothing_dead_lettered(redis: Redis, pool: asyncpg.Pool[Any], settings: Settings) -> None:
    assert await redis.xlen(settings.dead_letter_stream) == 0
    assert await pool.fetchval("SELECT count(*) FROM failed_operations") == 0
    assert await pool.fetchval("SELECT status FROM index_jobs") != "failed"
    assert (await redis.xpending(settings.batch_stream, "indexer"))["pending"] == 1


async def test_configuration_error_never_dead_letters(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    store: VectorStore,
    embedder: Embedder,
) -> None:
    switch = Switch()
    hooked = HookedEmbedder(embedder, switch)
    pipeline = await open_pipeline(embedder=hooked, max_deliveries=2)
    settings = pipeline.settings
    await add_listings(pool, 1, 3)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})
    before = _config_errors(settings)
    with capture_logs() as logs, pytest.raises(TimeoutError):
        await pipeline.drain(timeout_s=3)  # never idle: the batch stays pending
    assert len(hooked.calls) > settings.max_deliveries + 1  # reclaimed past MAX_DELIVERIES
    await _nothing_dead_lettered(redis, pool, settings)
    misconfigured = [e for e in logs if e["event"] == "service_misconfigured"]
    assert len(misconfigured) == 1  # once per entry, not once per delivery
    assert misconfigured[0]["log_level"] == "error"
    assert "the service is misconfigured" in misconfigured[0]["message"]
    assert "abcdefgh" not in misconfigured[0]["message"]
    assert _config_errors(settings) - before >= len(hooked.calls) - 1  # every reclaimed failure

    switch.broken = False
    await pipeline.drain()
    await assert_converged(pool, store, settings)
    assert await pool.fetchval("SELECT status FROM index_job_batches") == "done"
    assert await pool.fetchval("SELECT count(*) FROM failed_operations") == 0


async def test_worker_keeps_misconfigured_batch_pending_from_first_delivery(
    *,
    open_pipeline: OpenPipeline,
    settings: Settings,
    redis: Redis,
    pool: asyncpg.Pool[Any],
    store: VectorStore,
    embedder: Embedder,
) -> None:
    """With MAX_DELIVERIES=1 the first (non-reclaimed) failure must already count as misconfiguration."""
    switch = Switch()
    hooked = HookedEmbedder(embedder, switch)
    pipeline = await open_pipeline(embedder=hooked, max_deliveries=1)
    settings = pipeline.settings
    await add_listings(pool, 1, 3)
    await push(redis, settings, {"operation": "sync", "product_ids": [1, 2, 3]})
    async with running(pipeline):

        async def retried() -> bool:
            return len(hooked.calls) >= 3

        await wait_until(retried)
        await _nothing_dead_lettered(redis, pool, settings)
        switch.broken = False

        async def done() -> bool:
            return bool(await pool.fetchval("SELECT count(*) = 1 FROM index_jobs WHERE status = 'completed'"))

        await wait_until(done)
    await assert_converged(pool, store, settings)
    assert await redis.xlen(settings.dead_letter_stream) == 0
    assert await pool.fetchval("SELECT count(*) FROM failed_operations") == 0
