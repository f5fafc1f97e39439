"""Loading demo listings with COPY, and the dev `products` mirror."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from finally_indexer.db.dev_schema import ensure_dev_products
from finally_indexer.db.seed_demo import generate_listings, seed_demo


async def test_seed_demo_loads_the_generated_rows(pool: asyncpg.Pool[Any]) -> None:
    inserted = await seed_demo(pool, count=1234, seed=7, progress=False)

    assert inserted == 1234
    assert await pool.fetchval("SELECT count(*) FROM products") == 1234
    assert await pool.fetchval("SELECT count(*) FROM products WHERE is_conversion") == 0
    first = next(generate_listings(1, 7))
    row = await pool.fetchrow("SELECT * FROM products ORDER BY id LIMIT 1")
    assert row is not None
    assert (row["title"], row["price"], row["content"], row["brand"], row["year"]) == (
        first.title, first.price, first.content, first.brand, first.year,
    )  # fmt: skip


async def test_seed_demo_appends_and_zero_is_a_no_op(pool: asyncpg.Pool[Any]) -> None:
    assert await seed_demo(pool, count=0, progress=False) == 0
    await seed_demo(pool, count=10, seed=1, progress=False)
    await seed_demo(pool, count=10, seed=2, progress=False)
    assert await pool.fetchval("SELECT count(DISTINCT id) FROM products") == 20


async def test_seed_demo_with_progress_requested_but_no_terminal(pool: asyncpg.Pool[Any]) -> None:
    assert await seed_demo(pool, count=50, progress=True) == 50


@pytest.mark.slow
async def test_thirty_thousand_rows_load(pool: asyncpg.Pool[Any]) -> None:
    # how fast is bench/up.py's business (no timed assertions in tests: they fail under load)
    assert await seed_demo(pool, count=30_000, progress=False) == 30_000
    assert await pool.fetchval("SELECT count(*) FROM products") == 30_000


async def test_ensure_dev_products_is_idempotent_and_stays_in_the_schema(
    pool: asyncpg.Pool[Any], pg_schema: str
) -> None:
    await pool.execute("INSERT INTO products (title) VALUES ('kept')")
    await ensure_dev_products(pool)
    await ensure_dev_products(pool)

    assert await pool.fetchval("SELECT count(*) FROM products") == 1
    schemas = await pool.fetch(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'products'"
    )
    assert pg_schema in {r["table_schema"] for r in schemas}
