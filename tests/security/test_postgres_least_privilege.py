"""The whole service runs on the documented grants, and PostgreSQL refuses anything more.

The service role reads the listing columns of ``products``, updates only ``is_conversion`` and
has rows (not DDL) in its schema; the migration role owns that schema. The pipeline (bridge,
planner, indexer, outbox), an audit with repair and the read endpoints all run as the service
role; then every other write it could attempt on ``products`` is refused by the server.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from app_client import serve_in_loop
from pipeline.helpers import add_listings, assert_converged, push, run_until
from pydantic import SecretStr
from redis.asyncio import Redis
from security.conftest import LeastPrivilegeDb

from finally_indexer.core.cli import cmd_grants, cmd_migrate
from finally_indexer.core.settings import Settings
from finally_indexer.db.grants import LISTING_COLUMNS, WRITTEN_COLUMN, GrantPlan, grant_script
from finally_indexer.db.migrate import upgrade
from finally_indexer.http.app import create_app
from finally_indexer.http.deps import AppDeps
from finally_indexer.processor.audit import Auditor
from finally_indexer.processor.embedders.factory import build_embedder
from finally_indexer.processor.housekeeping import housekeeping_round
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.stores.factory import build_vector_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lp_settings(redis_settings: Settings, least_privilege_db: LeastPrivilegeDb) -> Settings:
    """The test's Redis names, the service role as ``DATABASE_URL``, the migration role apart."""
    return redis_settings.model_copy(
        update={
            "database_url": SecretStr(least_privilege_db.service_dsn),
            "migrate_database_url": SecretStr(least_privilege_db.migrate_dsn),
            "postgres_schema": least_privilege_db.plan.schema,
        }
    )


@pytest.fixture
async def admin(least_privilege_db: LeastPrivilegeDb) -> AsyncIterator[asyncpg.Pool[Any]]:
    """The superuser (the scraper, the DBA) on the test's database, the service schema first."""
    pool = await asyncpg.create_pool(
        least_privilege_db.admin_dsn,
        min_size=1,
        max_size=2,
        server_settings={"search_path": f'"{least_privilege_db.plan.schema}", public'},
    )
    yield pool
    await pool.close()


async def _run_until_synced(pipeline: Pipeline, admin: asyncpg.Pool[Any]) -> None:
    """Until every job completed, every listing is flagged and the outbox is empty (read as the
    superuser: the service's role may not read all of ``products``)."""

    async def synced() -> bool:
        return bool(
            await admin.fetchval("SELECT count(*) > 0 AND bool_and(status = 'completed') FROM index_jobs")
            and await admin.fetchval("SELECT bool_and(is_conversion) FROM products")
            and not await admin.fetchval("SELECT count(*) FROM event_outbox")
        )

    await run_until(pipeline, synced, timeout_s=60)


async def _read_endpoints_answer(settings: Settings, pipeline: Pipeline, job_id: str) -> None:
    deps = AppDeps(pool=pipeline.pool, redis=pipeline.redis, store=pipeline.store)
    async with serve_in_loop(create_app(settings, deps=deps)) as client:
        paths = ("/status", "/failures", f"/jobs/{job_id}", "/listings/3", "/audit", "/metrics", "/dashboard")
        for path in paths:
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)


@pytest.mark.slow
async def test_the_service_runs_on_the_documented_grants_and_nothing_more(
    lp_settings: Settings, least_privilege_db: LeastPrivilegeDb, admin: asyncpg.Pool[Any], redis: Redis
) -> None:
    plan = least_privilege_db.plan
    # The service role cannot create its own tables: the migrations need the migration role ...
    with pytest.raises(Exception, match="permission denied"):
        await asyncio.to_thread(upgrade, least_privilege_db.service_dsn, schema=plan.schema)
    # ... which `finally-indexer migrate` uses (MIGRATE_DATABASE_URL), and which owns every table.
    await cmd_migrate(lp_settings, argparse.Namespace(), asyncio.Event())
    owners = await admin.fetch("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = $1", plan.schema)
    assert [r["tableowner"] for r in owners] == [plan.migrate_role]

    await add_listings(admin, 1, 40)
    await admin.execute("DELETE FROM products WHERE id = 40")  # the scraper deletes, then says so
    store = build_vector_store(lp_settings)
    embedder = build_embedder(lp_settings)
    pipeline = await Pipeline.open(lp_settings, redis=redis, store=store, embedder=embedder)
    try:
        assert await pipeline.pool.fetchval("SELECT current_user") == plan.service_role
        await push(redis, lp_settings, {"operation": "sync", "product_ids": "all"})
        await push(redis, lp_settings, {"operation": "delete", "product_ids": [40]})
        await _run_until_synced(pipeline, admin)
        # an audit with repair reads products and corrects flags: the flag is all it writes
        await admin.execute("UPDATE products SET is_conversion = false WHERE id <= 5")
        auditor = Auditor(pool=pipeline.pool, redis=redis, store=store, settings=lp_settings)
        report = await auditor.run(repair=True, requested_by="test")
        assert report["flags_corrected"] == 5
        job_id = await admin.fetchval("SELECT job_id FROM index_jobs LIMIT 1")
        await _read_endpoints_answer(lp_settings, pipeline, job_id)
        # housekeeping with nothing to keep: deletes tombstones, finished jobs, resolved failures
        keep_nothing = {"tombstone_retention_s": 0, "job_retention_s": 0, "failure_retention_s": 0}
        await housekeeping_round(
            redis, lp_settings.model_copy(update=keep_nothing), consumer="-", pool=pipeline.pool
        )
        assert await admin.fetchval("SELECT count(*) FROM index_tombstones") == 0
        await assert_converged(admin, store, lp_settings)
    finally:
        await pipeline.aclose()
        await store.aclose()
        await embedder.aclose()

    service = await asyncpg.connect(least_privilege_db.service_dsn)
    try:
        await service.execute(f'SET search_path = "{plan.schema}", public')
        await _assert_refused_beyond_the_grants(service)
    finally:
        await service.close()


async def _assert_refused_beyond_the_grants(service: asyncpg.Connection[Any]) -> None:
    columns = [
        r["attname"]
        for r in await service.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'public.products'::regclass "
            "AND attnum > 0 AND NOT attisdropped"
        )
    ]
    others = [c for c in columns if c != WRITTEN_COLUMN]
    assert {"updated_at", "title", "content"} <= set(others)
    refused = [
        *(f'UPDATE products SET "{c}" = "{c}" WHERE id = 1' for c in others),
        "INSERT INTO products (id, title) VALUES (1000, 'x')",
        "DELETE FROM products WHERE id = 1",
        "TRUNCATE products",
        "SELECT * FROM products",  # created_at is not a listing column
        "ALTER TABLE products ADD COLUMN x integer",
        "ALTER TABLE index_jobs ADD COLUMN x integer",  # its own tables' rows, not their shape
        "DROP TABLE index_state",
        "CREATE TABLE indexer.x (y integer)",
        "CREATE TABLE public.x (y integer)",
    ]
    for statement in refused:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await service.execute(statement)
    # what it is granted still works, so the refusals above are about privileges, not syntax
    listing_columns = ", ".join(f'"{c}"' for c in LISTING_COLUMNS)
    assert await service.fetchval(f"SELECT count(*) FROM (SELECT {listing_columns} FROM products) p") == 39
    assert (
        await service.execute("UPDATE products SET is_conversion = is_conversion WHERE id = 1") == "UPDATE 1"
    )


def test_the_documented_grants_are_the_tested_ones(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/database.md shows grant_script() verbatim, and `finally-indexer grants` prints it."""
    assert grant_script(GrantPlan()) in (ROOT / "docs" / "database.md").read_text()
    args = argparse.Namespace(
        service_role=GrantPlan.service_role, migrate_role=GrantPlan.migrate_role, schema=None,
        database=None, products_schema=GrantPlan.products_schema,
    )  # fmt: skip
    settings = Settings()
    asyncio.run(cmd_grants(settings, args, asyncio.Event()))
    assert capsys.readouterr().out == grant_script(GrantPlan(database=settings.postgres_db))
