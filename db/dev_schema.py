"""The development and test mirror of the scraper's ``products`` table.

Production never calls this: the scraper owns ``products`` and the migrations never touch it.
Here the table is created (if absent) in the first schema of the pool's ``search_path``, i.e.
the service's schema, so tests and ``finally-indexer up`` get a private copy.
"""

from __future__ import annotations

from typing import Any, Final

import asyncpg
import structlog

from finally_indexer.db.migrations.sqlscript import read_sql

__all__ = ["ensure_dev_products"]

log = structlog.get_logger(__name__)

#: Advisory lock key: concurrent ``CREATE TABLE IF NOT EXISTS`` can still collide on the row
#: type's name in pg_type, so concurrent callers (several processes starting) take turns.
_LOCK_KEY: Final = "finally-indexer:dev-products"


async def ensure_dev_products(pool: asyncpg.Pool[Any]) -> None:
    """Create the dev ``products`` table from ``sql/products_dev.sql`` unless it already exists."""
    sql = read_sql("products_dev.sql")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _LOCK_KEY)
        await conn.execute(sql)
        schema = await conn.fetchval("SELECT current_schema()")
    log.info("dev_products_ready", schema=schema)
