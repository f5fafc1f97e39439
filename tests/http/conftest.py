"""Fixtures of the HTTP tests: the app on the test's real Redis and PostgreSQL, and its client.

The client is httpx over ``ASGITransport`` inside the test's own event loop: Litestar's
``AsyncTestClient`` runs the app in a portal thread with its own loop, where the test's
(loop-bound) asyncpg pool and Redis client cannot be used. Injected deps need no lifespan; the
lifespan path that opens its own connections is tested with ``AsyncTestClient`` in test_app.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from litestar import Litestar
from pydantic import SecretStr

from finally_indexer.core.settings import Settings
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.processor.stores.factory import build_vector_store

API_KEY = "test-key-0123456789"


@pytest.fixture
async def deps(pool: asyncpg.Pool[Any], redis: aioredis.Redis, settings: Settings) -> AsyncIterator[AppDeps]:
    """The test's pool and Redis client plus a vector store from the settings (closed afterwards)."""
    store = build_vector_store(settings)
    yield AppDeps(pool=pool, redis=redis, store=store)
    await store.aclose()


@pytest.fixture
def app(settings: Settings, deps: AppDeps) -> Litestar:
    return create_app(settings, deps=deps)


@asynccontextmanager
async def serve_in_loop(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app in this loop."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_in_loop(app) as c:
        yield c


@pytest.fixture
def keyed_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_key": SecretStr(API_KEY)})


@pytest.fixture
async def keyed_client(keyed_settings: Settings, deps: AppDeps) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that requires ``X-API-Key: API_KEY`` on mutating routes."""
    async with serve_in_loop(create_app(keyed_settings, deps=deps)) as c:
        yield c
