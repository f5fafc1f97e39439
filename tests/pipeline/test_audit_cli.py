"""``finally-indexer audit``: the report on the terminal, ``--check`` and ``--repair``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pipeline.helpers import OpenPipeline, add_listings, push
from redis.asyncio import Redis

from finally_indexer.core.cli import DriftFound, build_parser, cmd_audit
from finally_indexer.core.settings import Settings
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.vectorstore import VectorStore


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[VectorStore]:
    """The collection on disk (qdrant-client's local mode at QDRANT_PATH), as the CLI opens it."""
    vectors = build_vector_store(settings)
    await vectors.ensure_collection()
    yield vectors
    await vectors.aclose()


async def _audit(settings: Settings, *argv: str) -> None:
    await cmd_audit(settings, build_parser().parse_args(["audit", *argv]), asyncio.Event())


async def test_audit_command_reports_checks_and_repairs(
    *, open_pipeline: OpenPipeline, settings: Settings, redis: Redis, pool: asyncpg.Pool[Any],
    store: VectorStore, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    pipeline = await open_pipeline()
    await add_listings(pool, 1, 6)
    await push(redis, settings, {"operation": "sync", "product_ids": "all"})
    await pipeline.drain()
    await store.delete([5])
    await store.aclose()  # the CLI opens the collection itself (local mode has one opener)

    await _audit(settings)
    out = capsys.readouterr().out
    assert "6 listings, 5 points" in out
    assert "missing              1   e.g. 5" in out

    with pytest.raises(DriftFound, match="1 listings drifted"):
        await _audit(settings, "--check")
    await _audit(settings, "--repair")
    out = capsys.readouterr().out
    assert "repair jobs  " in out
    assert await pool.fetchval("SELECT count(*) FROM index_jobs WHERE source = 'audit'") == 1
