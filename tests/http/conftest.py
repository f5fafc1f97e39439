"""Fixtures of the HTTP tests: the app on the test's real Redis and PostgreSQL, and its client.

The client is httpx over ``ASGITransport`` inside the test's own event loop: Litestar's
``AsyncTestClient`` runs the app in a portal thread with its own loop, where the test's
(loop-bound) asyncpg pool and Redis client cannot be used. Injected deps need no lifespan; the
lifespan path that opens its own connections is tested with ``AsyncTestClient`` in
test_http_auth_app.py (``test_lifespan_opens_and_closes_its_own_connections``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from app_client import serve_in_loop
from litestar import Litestar
from pydantic import SecretStr

from finally_indexer.core import constants as c
from finally_indexer.core.settings import Settings
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.schemas.messages import Event, EventType

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


# --- a known state for /status, /metrics and the dashboard ----------------------------------------
@pytest.fixture
async def scenario(pool: asyncpg.Pool[Any], redis: aioredis.Redis, settings: Settings) -> Scenario:
    """10 listings (6 indexed, the oldest pending 2 min old), queues with lag and pending, events, a job, failures."""
    return await build(pool, redis, settings)


@dataclass(frozen=True)
class Scenario:
    job_id: str


async def build(pool: asyncpg.Pool[Any], redis: aioredis.Redis, settings: Settings) -> Scenario:
    await pool.executemany(
        "INSERT INTO products (id, title, is_conversion, updated_at) VALUES ($1, $2, $3, now() - make_interval(secs => $4))",
        [(i, f"매물 {i}", i <= 6, 120 if i == 7 else 10) for i in range(1, 11)],
    )
    await redis.lpush(settings.legacy_list, b"a", b"b", b"c")
    await _stream(redis, settings.jobs_stream, c.PLANNER_GROUP, added=4, read=1, acked=0)
    await _stream(redis, settings.batch_stream, c.INDEXER_GROUP, added=5, read=2, acked=1)
    for _ in range(2):
        await redis.xadd(settings.dead_letter_stream, {"x": "1"})
    for _ in range(3):
        event = Event(
            type=EventType.BATCH_INDEXED, job_id="j", counts={"indexed": 5, "skipped": 1, "failed": 1}
        )
        await redis.xadd(settings.events_stream, event.to_fields())  # type: ignore[arg-type]
    await redis.xadd(settings.events_stream, Event(type=EventType.JOB_PLANNED, job_id="j").to_fields())  # type: ignore[arg-type]

    job_id = "api-scenario"
    await pool.execute(
        "INSERT INTO index_jobs (job_id, operation, scope, source, status, total, batches, embedding_tokens,"
        " embedding_requests, cost_usd, embedding_model)"
        " VALUES ($1, 'sync', 'all', 'api', 'running', 10, 2, 1850, 1, 0.0002405, 'text-embedding-3-large')",
        job_id,
    )
    await pool.execute(
        "INSERT INTO index_job_batches (job_id, seq, operation, product_ids, status, indexed) VALUES ($1, 0, 'sync', '{1,2,3,4,5}', 'done', 5)",
        job_id,
    )
    for pid, resolved in ((7, False), (8, False), (9, True)):
        await pool.execute(
            "INSERT INTO failed_operations (operation_type, product_id, reason, error_class, error_message, resolved_at)"
            " VALUES ('update', $1, 'EmbeddingInputRejected', 'EmbeddingInputRejected', '입력 거부됨', $2)",
            pid,
            datetime.now(UTC) if resolved else None,
        )
    return Scenario(job_id)


async def _stream(redis: aioredis.Redis, name: str, group: str, *, added: int, read: int, acked: int) -> None:
    await redis.xgroup_create(name, group, id="0", mkstream=True)
    for i in range(added):
        await redis.xadd(name, {"n": str(i)})
    got: Any = await redis.xreadgroup(group, "worker-1", {name: ">"}, count=read)
    ids = [entry_id for _, entries in got for entry_id, _ in entries]
    if acked:
        await redis.xack(name, group, *ids[:acked])
