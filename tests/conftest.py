"""Shared fixtures: real Redis and PostgreSQL for the session, isolation per test.

Session: ``redis_url`` and ``postgres_dsn`` point at servers this session starts under
``var/test-servers/s<pid>/`` (devenv) and stops at the end; nothing is shared with ``up``.
Per test: ``test_uid`` (a short unique id), ``pg_schema`` (a fresh schema, migrated, with its
own ``products`` table; dropped afterwards), ``pool`` (asyncpg on that schema), ``redis``
(a client; the test's keys are deleted afterwards), ``redis_settings`` (unique stream, list and
collection names, the hashing embedder, small batches, quick reclaim — no database: Redis-only
tests run no migration) and ``settings`` (the same on the test's migrated schema).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import structlog
from pydantic import SecretStr

from finally_indexer.core.settings import Settings, load_settings
from finally_indexer.devenv.postgres import PostgresServer
from finally_indexer.devenv.redis import RedisServer
from finally_indexer.devenv.servers import session_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_SERVERS = REPO_ROOT / "var" / "test-servers"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings a developer exported in the shell must not leak into tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A test that runs the CLI configures logging; the next test must find it as it was."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


# --- session servers ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def _servers_dir() -> Iterator[Path]:
    folder = session_dir(TEST_SERVERS)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(_servers_dir: Path) -> Iterator[str]:
    """URL of this session's Redis server."""
    server = RedisServer(_servers_dir / "redis")
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def postgres_dsn(_servers_dir: Path) -> Iterator[str]:
    """DSN of this session's PostgreSQL database (fsync off: a throwaway server)."""
    server = PostgresServer(_servers_dir / "postgres", database="finally_test", durable=False)
    dsn = server.start()
    yield dsn
    server.stop()


@pytest.fixture
def server_dir(_servers_dir: Path, test_uid: str) -> Iterator[Path]:
    """A fresh folder for a test that starts servers of its own (devenv), removed afterwards.

    Use it instead of ``tmp_path``: the ``postgres`` user must traverse every parent folder, and
    pytest keeps its temporary root private (mode 0700).
    """
    folder = _servers_dir / f"own-{test_uid}"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# --- per test -----------------------------------------------------------------------------------
@pytest.fixture
def test_uid() -> str:
    """Eight hex digits unique to this test: the suffix of its schema, keys and collection."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def pg_schema(postgres_dsn: str, test_uid: str) -> AsyncIterator[str]:
    """A schema of its own: migrated, with a development ``products`` table; dropped afterwards."""
    from finally_indexer.db.dev_schema import ensure_dev_products  # noqa: PLC0415
    from finally_indexer.db.migrate import upgrade  # noqa: PLC0415
    from finally_indexer.db.pool import create_pool  # noqa: PLC0415

    schema = f"t_{test_uid}"
    await asyncio.to_thread(upgrade, postgres_dsn, schema=schema)
    pool = await create_pool(load_settings(database_url=postgres_dsn, db_pool_min=0), schema=schema)
    try:
        await ensure_dev_products(pool)
    finally:
        await pool.close()
    yield schema
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def pool(settings: Settings, pg_schema: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    """An asyncpg pool whose ``search_path`` is the test's schema, then ``public``."""
    from finally_indexer.db.pool import create_pool  # noqa: PLC0415

    db_pool = await create_pool(settings, schema=pg_schema)
    yield db_pool
    await db_pool.close()


@pytest.fixture
async def redis(redis_url: str, test_uid: str) -> AsyncIterator[aioredis.Redis]:
    """A Redis client (bytes in, bytes out). Keys naming the test's uid are deleted afterwards."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"*t{test_uid}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def settings(redis_settings: Settings, postgres_dsn: str, pg_schema: str) -> Settings:
    """Settings for one test: its migrated schema, its own Redis names and collection, offline and small."""
    return redis_settings.model_copy(
        update={"database_url": SecretStr(postgres_dsn), "postgres_schema": pg_schema}
    )


@pytest.fixture
def redis_settings(redis_url: str, test_uid: str, tmp_path: Path) -> Settings:
    """Settings for a test that needs Redis only: its own names, no database set up (nothing migrated)."""
    uid = test_uid
    return load_settings(
        redis_url=redis_url,
        vector_store="local",
        qdrant_path=tmp_path / "qdrant",
        embedder="hashing",
        vector_size=64,
        batch_size=8,
        reclaim_idle_ms=300,
        breaker_open_s=0.2,  # scaled down like the reclaim idle time: an outage's pauses stay short
        legacy_list=f"t{uid}:indexing_jobs",
        jobs_stream=f"{{t{uid}:indexing_jobs}}:jobs",
        batch_stream=f"t{uid}:batches",
        events_stream=f"t{uid}:events",
        dead_letter_stream=f"t{uid}:dead-letter",
        collection=f"t{uid}",
        consumer_name=f"t{uid}-consumer",
        audit_interval_s=0,
        http_port=0,
    )
