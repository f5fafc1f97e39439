"""Fixtures of the ops tests: the app served by uvicorn on a free local port, in the test's loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from finally_indexer.core.settings import Settings
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.http.server import bound_port, build_server, start_in_background
from finally_indexer.processor.stores.factory import build_vector_store


@pytest.fixture
async def live_url(pool: asyncpg.Pool[Any], redis: aioredis.Redis, settings: Settings) -> AsyncIterator[str]:
    """Base URL of the app on 127.0.0.1 (uvicorn, port 0), using the test's connections."""
    store = build_vector_store(settings)
    server = build_server(
        create_app(settings, deps=AppDeps(pool=pool, redis=redis, store=store)), "127.0.0.1", 0
    )
    stop = asyncio.Event()
    async with asyncio.timeout(10):
        task = await start_in_background(server, stop)
    yield f"http://127.0.0.1:{bound_port(server)}"
    stop.set()
    await task
    await store.aclose()
