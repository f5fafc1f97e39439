"""``finally-indexer sync``: queues like ``POST /sync``; ``--dry-run`` prints the estimate and queues nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from pipeline.helpers import add_listings
from redis.asyncio import Redis

from finally_indexer.core.cli import build_parser, cmd_sync
from finally_indexer.core.errors import ConfigurationError
from finally_indexer.core.settings import Settings


async def _sync(settings: Settings, *argv: str) -> None:
    await cmd_sync(settings, build_parser().parse_args(["sync", *argv]), asyncio.Event())


async def test_dry_run_prints_the_estimate_and_queues_nothing(
    settings: Settings, pool: asyncpg.Pool[Any], redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_listings(pool, 1, 12)

    await _sync(settings, "--dry-run")

    out = capsys.readouterr().out
    assert "dry run: 12 listings: 12 to embed, 0 unchanged (skipped), 0 to delete, 0 failing" in out
    assert f"in 2 requests ({settings.model_name()})" in out
    assert "cost      $0.0000" in out
    assert "duration  unknown" in out
    assert await pool.fetchval("SELECT count(*) FROM index_jobs") == 0
    assert await redis.exists(settings.jobs_stream) == 0


async def test_sync_queues_a_job_and_refuses_a_shape_the_api_refuses(
    settings: Settings, pool: asyncpg.Pool[Any], redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await _sync(settings, "3", "4", "--force")

    job_id = capsys.readouterr().out.splitlines()[-1].removeprefix("queued ")
    job = await pool.fetchrow(
        "SELECT product_ids, force, requested_by FROM index_jobs WHERE job_id = $1", job_id
    )
    assert job is not None
    assert (list(job["product_ids"]), job["force"], job["requested_by"]) == ([3, 4], True, "cli")
    assert await redis.xlen(settings.jobs_stream) == 1
    with pytest.raises(ConfigurationError, match="delete needs explicit product_ids"):
        await _sync(settings, "--operation", "delete")
