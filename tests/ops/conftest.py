"""Fixtures of the ops tests: the app served by uvicorn on a free local port, in the test's loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from finally_indexer.core.settings import Settings
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.http.server import serving
from finally_indexer.processor.stores.factory import build_vector_store


@pytest.fixture
async def live_url(pool: asyncpg.Pool[Any], redis: aioredis.Redis, settings: Settings) -> AsyncIterator[str]:
    """Base URL of the app on 127.0.0.1 (uvicorn, port 0), using the test's connections."""
    store = build_vector_store(settings)
    async with serving(create_app(settings, deps=AppDeps(pool=pool, redis=redis, store=store))) as url:
        yield url
    await store.aclose()
