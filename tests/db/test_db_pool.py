"""The asyncpg pool: schema binding, JSON codecs, ping, and clear errors when PostgreSQL is not there."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from finally_indexer.core.errors import ConfigurationError, DependencyUnavailable
from finally_indexer.core.settings import Settings, load_settings
from finally_indexer.db.pool import create_pool, ping, validate_schema


async def test_search_path_is_the_schema_then_public(pool: asyncpg.Pool[Any], pg_schema: str) -> None:
    assert await pool.fetchval("SELECT current_schema()") == pg_schema
    assert await pool.fetchval("SHOW search_path") == f'"{pg_schema}", public'
    owner = "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = $1::regclass"
    assert await pool.fetchval(owner, "failed_operations") == pg_schema
    assert await pool.fetchval(owner, "products") == pg_schema  # the dev mirror, not public's


async def test_schema_defaults_to_the_settings(settings: Settings, pg_schema: str) -> None:
    db_pool = await create_pool(settings)
    try:
        assert await db_pool.fetchval("SELECT current_schema()") == pg_schema
    finally:
        await db_pool.close()


async def test_explicit_schema_wins_over_the_settings(settings: Settings, postgres_dsn: str) -> None:
    db_pool = await create_pool(settings, schema="public")
    try:
        assert await db_pool.fetchval("SELECT current_schema()") == "public"
    finally:
        await db_pool.close()


async def test_pool_size_follows_the_settings(settings: Settings) -> None:
    db_pool = await create_pool(settings.model_copy(update={"db_pool_min": 2, "db_pool_max": 3}))
    try:
        assert (db_pool.get_min_size(), db_pool.get_max_size()) == (2, 3)
    finally:
        await db_pool.close()


async def test_a_statement_past_the_command_timeout_fails(settings: Settings) -> None:
    """No PostgreSQL call waits forever: a hung statement fails after DB_COMMAND_TIMEOUT_S."""
    db_pool = await create_pool(settings.model_copy(update={"db_command_timeout_s": 0.3}))
    try:
        with pytest.raises(TimeoutError):
            await db_pool.fetchval("SELECT pg_sleep(5)")
        assert await db_pool.fetchval("SELECT 1") == 1  # the pool is usable afterwards
    finally:
        await db_pool.close()


async def test_waiting_for_a_pooled_connection_fails_after_the_acquire_timeout(settings: Settings) -> None:
    """Every connection held (by calls hung on a dead server): the next caller gets a TimeoutError
    after DB_POOL_ACQUIRE_TIMEOUT_S instead of queueing forever — also through ``pool.fetchval``,
    which acquires without a timeout of its own."""
    db_pool = await create_pool(
        settings.model_copy(update={"db_pool_min": 1, "db_pool_max": 1, "db_pool_acquire_timeout_s": 0.2})
    )
    try:
        async with db_pool.acquire():  # the only connection, held
            waiting = asyncio.create_task(db_pool.fetchval("SELECT 1"))
            # generous: only a wait without end (asyncpg's default) leaves the task unfinished
            await asyncio.wait({waiting}, timeout=30)
            assert waiting.done()
            assert isinstance(waiting.exception(), TimeoutError)
        assert await db_pool.fetchval("SELECT 1") == 1  # released: usable again
    finally:
        await db_pool.close()


async def test_json_and_jsonb_round_trip_as_python_objects(pool: asyncpg.Pool[Any]) -> None:
    value = {"ids": [1, 2], "제목": "혼다 PCX125", "nested": {"ok": True}}
    assert await pool.fetchval("SELECT $1::jsonb", value) == value
    assert await pool.fetchval("SELECT $1::json", value) == value
    assert await pool.fetchval("SELECT jsonb_build_object('n', 1)") == {"n": 1}


async def test_ping_reports_the_round_trip_in_seconds(pool: asyncpg.Pool[Any]) -> None:
    started = time.perf_counter()
    latency = await ping(pool)
    around = time.perf_counter() - started
    assert 0 < latency <= around  # seconds of this call, not milliseconds or a timestamp


async def test_ping_on_a_closed_pool_is_a_dependency_failure(settings: Settings) -> None:
    db_pool = await create_pool(settings)
    await db_pool.close()
    with pytest.raises(DependencyUnavailable):
        await ping(db_pool)


async def test_unreachable_server_is_dependency_unavailable() -> None:
    # port 1 on loopback: nothing listens, the connection is refused at once
    settings = load_settings(database_url="postgresql://someone:secret@127.0.0.1:1/finally")
    with pytest.raises(DependencyUnavailable, match=r"127\.0\.0\.1:1/finally") as info:
        await create_pool(settings)
    assert "secret" not in str(info.value)


async def test_missing_database_is_a_configuration_error(postgres_dsn: str) -> None:
    settings = load_settings(database_url=postgres_dsn.rsplit("/", 1)[0] + "/no_such_db")
    with pytest.raises(ConfigurationError, match="no_such_db"):
        await create_pool(settings)


@pytest.mark.parametrize(
    "schema", ["Upper", "has-dash", 'x"; DROP TABLE products; --', "pg_temp", "9lives", "a" * 64]
)
def test_unsafe_schema_names_are_refused(schema: str) -> None:
    with pytest.raises(ConfigurationError, match="POSTGRES_SCHEMA"):
        validate_schema(schema)


async def test_create_pool_validates_the_schema_before_connecting() -> None:
    settings = load_settings(database_url="postgresql://127.0.0.1:1/finally")
    with pytest.raises(ConfigurationError):
        await create_pool(settings, schema="bad;name")
