"""Migrations: a fresh schema gets the service tables and its own version table, never `products`."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from finally_indexer.core.errors import ConfigurationError
from finally_indexer.db import migrate
from finally_indexer.db.migrations.sqlscript import split_statements

SERVICE_TABLES = {
    "index_jobs",
    "index_job_batches",
    "index_state",
    "failed_operations",
    "index_tombstones",
    "audit_reports",
    "failure_tallies",
    "event_outbox",
    "index_generations",
    "alembic_version",
}


@pytest.fixture
async def fresh_schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A schema name nobody has created yet; dropped afterwards if a test created it."""
    schema = f"m_{uuid.uuid4().hex[:8]}"
    yield schema
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _tables(dsn: str, schema: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
    finally:
        await conn.close()
    return {row["table_name"] for row in rows}


async def test_upgrade_creates_schema_tables_and_version(postgres_dsn: str, fresh_schema: str) -> None:
    assert migrate.current(postgres_dsn, fresh_schema) is None

    await asyncio.to_thread(migrate.upgrade, postgres_dsn, schema=fresh_schema)

    assert await _tables(postgres_dsn, fresh_schema) == SERVICE_TABLES
    assert migrate.current(postgres_dsn, fresh_schema) == migrate.head() == "0010"


async def test_upgrade_twice_is_a_no_op(postgres_dsn: str, fresh_schema: str) -> None:
    await asyncio.to_thread(migrate.upgrade, postgres_dsn, schema=fresh_schema)
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f"INSERT INTO {fresh_schema}.index_state VALUES (1, 'h', now(), 1, 'm')")
        await asyncio.to_thread(migrate.upgrade, postgres_dsn, schema=fresh_schema)
        assert await conn.fetchval(f"SELECT count(*) FROM {fresh_schema}.index_state") == 1
        assert await conn.fetchval(f"SELECT count(*) FROM {fresh_schema}.alembic_version") == 1
    finally:
        await conn.close()


async def test_concurrent_upgrades_of_one_schema_both_succeed(postgres_dsn: str, fresh_schema: str) -> None:
    # threads of one process share Alembic's module-level proxies: upgrade() serialises them
    await asyncio.gather(
        asyncio.to_thread(migrate.upgrade, postgres_dsn, schema=fresh_schema),
        asyncio.to_thread(migrate.upgrade, postgres_dsn, schema=fresh_schema),
    )
    assert migrate.current(postgres_dsn, fresh_schema) == migrate.head()


@pytest.mark.slow
async def test_concurrent_upgrades_from_three_processes_all_succeed(
    postgres_dsn: str, fresh_schema: str
) -> None:
    code = (
        "import sys; from finally_indexer.db.migrate import upgrade; upgrade(sys.argv[1], schema=sys.argv[2])"
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, postgres_dsn, fresh_schema, stderr=PIPE
        )
        for _ in range(3)
    ]
    results = await asyncio.gather(*(proc.communicate() for proc in procs))
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err.decode() for _, err in results]
    assert migrate.current(postgres_dsn, fresh_schema) == migrate.head()


async def test_migrations_never_create_products(postgres_dsn: str, fresh_schema: str) -> None:
    await asyncio.to_thread(migrate.upgrade, postgres_dsn, schema=fresh_schema)

    assert "products" not in await _tables(postgres_dsn, fresh_schema)
    ddl_on_products = re.compile(
        r"\b(CREATE|ALTER|DROP)\s+TABLE\s+(IF\s+(NOT\s+)?EXISTS\s+)?(\w+\.)?products\b", re.I
    )
    assert not ddl_on_products.search(migrate.upgrade_sql(schema=fresh_schema))


async def test_failed_operations_has_the_columns_operators_need(postgres_dsn: str, fresh_schema: str) -> None:
    await asyncio.to_thread(migrate.upgrade, postgres_dsn, schema=fresh_schema)
    conn = await asyncpg.connect(postgres_dsn)
    try:
        rows = await conn.fetch(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = 'failed_operations'",
            fresh_schema,
        )
    finally:
        await conn.close()
    columns = {row["column_name"]: row["is_nullable"] == "YES" for row in rows}
    # the seed's minimum, then what an operator needs to understand and replay a failure
    for name in ("operation_type", "product_id", "error_message", "created_at", "retry_count"):
        assert name in columns
    for name in ("job_id", "reason", "error_class", "payload", "stream", "entry_id", "last_attempt_at",
                 "requeued_at", "resolved_at", "resolution"):  # fmt: skip
        assert name in columns
    assert columns["product_id"] is True  # a malformed job has no product
    assert columns["error_message"] is False


async def test_downgrade_to_base_removes_the_service_tables(postgres_dsn: str, fresh_schema: str) -> None:
    from alembic import command  # noqa: PLC0415

    await asyncio.to_thread(migrate.upgrade, postgres_dsn, schema=fresh_schema)
    await asyncio.to_thread(
        command.downgrade, migrate.alembic_config(postgres_dsn, schema=fresh_schema), "base"
    )

    assert await _tables(postgres_dsn, fresh_schema) == {"alembic_version"}
    assert migrate.current(postgres_dsn, fresh_schema) is None


def test_offline_sql_sets_the_schema_and_records_the_version() -> None:
    sql = migrate.upgrade_sql(schema="reviewed")

    assert 'CREATE SCHEMA IF NOT EXISTS "reviewed"' in sql
    assert 'SET search_path TO "reviewed", public' in sql
    assert "CREATE TABLE failed_operations" in sql
    assert "INSERT INTO reviewed.alembic_version (version_num) VALUES ('0001')" in sql
    assert "CREATE TABLE index_tombstones" in sql
    assert "UPDATE reviewed.alembic_version SET version_num='0002'" in sql
    assert "CREATE INDEX failed_operations_entry" in sql
    assert "UPDATE reviewed.alembic_version SET version_num='0003'" in sql
    assert "CREATE TABLE failure_tallies" in sql
    assert "CREATE TRIGGER failure_tallies_insert" in sql
    assert "CREATE INDEX index_jobs_finished" in sql
    assert "UPDATE reviewed.alembic_version SET version_num='0004'" in sql
    assert "CREATE TABLE event_outbox" in sql
    assert "UPDATE reviewed.alembic_version SET version_num='0005'" in sql
    assert "ADD COLUMN received_at" in sql
    assert "UPDATE reviewed.alembic_version SET version_num='0006'" in sql
    assert "ADD COLUMN embedding_tokens" in sql
    assert "UPDATE reviewed.alembic_version SET version_num='0008'" in sql
    assert "CREATE TABLE index_generations" in sql
    assert "UPDATE reviewed.alembic_version SET version_num='0009'" in sql
    assert "ADD COLUMN in_flight" in sql
    assert "UPDATE reviewed.alembic_version SET version_num='0010'" in sql


async def test_packaged_alembic_ini_drives_the_cli(
    postgres_dsn: str, fresh_schema: str, tmp_path: Path
) -> None:
    ini = migrate.ini_path()
    assert ini.is_file()
    args = [
        sys.executable,
        "-m",
        "alembic",
        "-c",
        str(ini),
        "-x",
        f"dsn={postgres_dsn}",
        "-x",
        f"schema={fresh_schema}",
    ]
    # run from an unrelated directory: nothing may depend on the repository layout
    proc = await asyncio.create_subprocess_exec(*args, "upgrade", "head", cwd=tmp_path, stderr=PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert migrate.current(postgres_dsn, fresh_schema) == migrate.head()


@pytest.mark.parametrize("schema", ["Upper", "has-dash", "x;drop", "pg_catalog", "", "a" * 64])
def test_bad_schema_names_are_refused(schema: str) -> None:
    with pytest.raises((ConfigurationError, ValueError)):
        migrate.upgrade("postgresql://nowhere/db", schema=schema or "''")


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
        ("SELECT 1", ["SELECT 1"]),
        ("SELECT 'a;b'; SELECT 'it''s;'", ["SELECT 'a;b'", "SELECT 'it''s;'"]),
        ('SELECT 1 AS "x;y";', ['SELECT 1 AS "x;y"']),
        ("-- a; comment\nSELECT 1; -- trailing; note\n", ["-- a; comment\nSELECT 1"]),
        ("/* block; */ SELECT 1; /* only a comment; */", ["/* block; */ SELECT 1"]),
        ("DO $$ BEGIN PERFORM 1; END $$; SELECT 2", ["DO $$ BEGIN PERFORM 1; END $$", "SELECT 2"]),
        (
            "CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql;",
            ["CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql"],
        ),
        ("SELECT $1::int; SELECT 2", ["SELECT $1::int", "SELECT 2"]),
        ("  ;; \n", []),
    ],
)
def test_split_statements(script: str, expected: list[str]) -> None:
    assert split_statements(script) == expected


def test_the_service_sql_splits_into_its_statements() -> None:
    from finally_indexer.db.migrations.sqlscript import read_sql  # noqa: PLC0415

    statements = split_statements(read_sql("0001_service_tables.sql"))
    assert (
        sum(s.lstrip().split("\n")[-1].startswith("CREATE TABLE") or "CREATE TABLE" in s for s in statements)
        == 4
    )
    assert all(s.strip() for s in statements)
