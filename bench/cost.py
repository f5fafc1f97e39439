"""Cost benchmark: ``/failures``, ``/status`` and ``/metrics`` at 1,000,000 failures and listings.

Loads ``--rows`` rows into ``failed_operations`` (10 reasons over 30 days, 90 % resolved) and as
many listings into ``products`` (10 % not indexed) of its own throwaway PostgreSQL, then times
``--calls`` calls of each endpoint through the Litestar app (httpx over ASGITransport), beside
the queries those endpoints ran before the failure counters (issue 9 item 7), kept inline below
as the baseline and timed on the same data.

Run: ``python bench/cost.py`` (1,000,000 rows), or ``--rows 100000``. Target: every endpoint
under 200 ms at 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import httpx
from redis.asyncio import Redis

from finally_indexer.core.logging import configure_logging
from finally_indexer.core.settings import Settings, load_settings
from finally_indexer.db.dev_schema import ensure_dev_products
from finally_indexer.db.migrate import upgrade
from finally_indexer.db.pool import create_pool
from finally_indexer.devenv.servers import dev_servers
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.processor.stores.factory import build_vector_store

SCHEMA = "bench_cost"
#: Rows inserted per statement while loading.
CHUNK = 100_000

_FAILURES = """
INSERT INTO failed_operations (operation_type, product_id, reason, error_class, error_message,
                               created_at, resolved_at, resolution)
SELECT (ARRAY['sync', 'update', 'delete'])[1 + i % 3], i, 'reason-' || i % 10, 'PermanentError',
       'listing ' || i || ' failed: ' || repeat('details ', 20),
       now() - make_interval(secs => (i * 2.6) % 2592000),
       CASE WHEN i % 10 <> 0 THEN now() END, CASE WHEN i % 10 <> 0 THEN 'succeeded' END
FROM generate_series($1::bigint, $2::bigint) AS i
"""
_PRODUCTS = """
INSERT INTO products (id, title, price, content, brand, year, is_conversion, updated_at)
SELECT i, '혼다 PCX ' || i, 1000000 + i, '상태 좋은 매물입니다 ' || i, 'Honda', 2015 + i % 8, i % 10 <> 0,
       timestamptz '2026-01-01' + make_interval(secs => i)
FROM generate_series($1::bigint, $2::bigint) AS i
"""

# --- the baseline: the queries as they were at f7b2663 ------------------------------------------
OLD_LISTING_COUNTS = """
SELECT count(*)::bigint AS total,
       count(*) FILTER (WHERE is_conversion)::bigint AS indexed,
       min(updated_at) FILTER (WHERE NOT is_conversion) AS oldest,
       coalesce(extract(epoch FROM now() - min(updated_at) FILTER (WHERE NOT is_conversion)), 0)::float8 AS age
FROM products
"""
OLD_FAILURE_COUNTS = """
SELECT count(*)::bigint AS total,
       count(*) FILTER (WHERE resolved_at IS NULL)::bigint AS open,
       count(*) FILTER (WHERE created_at > now() - interval '1 hour')::bigint AS last_hour,
       max(last_attempt_at) AS last_at
FROM failed_operations
"""
OLD_BY_REASON = """
SELECT reason,
       count(*)::bigint AS count,
       count(*) FILTER (WHERE resolved_at IS NULL)::bigint AS open,
       array_agg(DISTINCT operation_type ORDER BY operation_type) AS operation_types,
       min(created_at) AS first_at,
       max(created_at) AS last_at,
       (array_agg(error_message ORDER BY id DESC))[1] AS example
FROM failed_operations
WHERE true
GROUP BY reason
ORDER BY count DESC, reason
"""
OLD_PAGE = "SELECT * FROM failed_operations WHERE true ORDER BY id DESC LIMIT 51"
#: What each endpoint read from PostgreSQL before (the job and recent-error lists are unchanged).
BASELINE = {
    "/failures": (OLD_PAGE, OLD_BY_REASON),
    "/status": (OLD_LISTING_COUNTS, OLD_FAILURE_COUNTS),
    "/metrics": (OLD_LISTING_COUNTS, OLD_FAILURE_COUNTS),
}


def _settings(dsn: str, redis_url: str, path: Path) -> Settings:
    return load_settings(
        database_url=dsn, redis_url=redis_url, postgres_schema=SCHEMA, vector_store="edge",
        qdrant_path=path, vector_size=8, embedder="hashing", collection="bench",
    )  # fmt: skip


async def load(settings: Settings, rows: int) -> None:
    """``rows`` failures and ``rows`` listings, then ANALYZE (as autovacuum would)."""
    await asyncio.to_thread(upgrade, settings.postgres_dsn(), schema=SCHEMA)
    pool = await create_pool(settings)
    await ensure_dev_products(pool)
    for first in range(1, rows + 1, CHUNK):
        last = min(first + CHUNK - 1, rows)
        await pool.execute(_FAILURES, first, last)
        await pool.execute(_PRODUCTS, first, last)
    await pool.execute("VACUUM ANALYZE failed_operations")
    await pool.execute("VACUUM ANALYZE products")
    await pool.close()


async def _timed(call: Callable[[], Awaitable[Any]], calls: int) -> tuple[float, float]:
    """Median and p95 in ms of ``calls`` calls (after one warm-up call)."""
    await call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * len(times)) - 1)]


async def measure(settings: Settings, calls: int) -> None:
    pool = await create_pool(settings)
    redis = Redis.from_url(settings.redis_dsn())
    store = build_vector_store(settings)
    app = create_app(settings, deps=AppDeps(pool=pool, redis=redis, store=store))
    transport = httpx.ASGITransport(app=cast("Any", app))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for path, queries in BASELINE.items():

            async def endpoint(path: str = path) -> None:
                (await client.get(path)).raise_for_status()

            async def baseline(queries: tuple[str, ...] = queries) -> None:
                for query in queries:
                    await pool.fetch(query)

            new_median, new_p95 = await _timed(endpoint, calls)
            old_median, old_p95 = await _timed(baseline, calls)
            print(
                f"{path:<10} endpoint median {new_median:7.1f} ms, p95 {new_p95:7.1f} ms"
                f" | baseline queries (before) median {old_median:7.1f} ms, p95 {old_p95:7.1f} ms",
                flush=True,
            )
    await store.aclose()
    await redis.aclose()
    await pool.close()


async def _run(rows: int, calls: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-cost-", dir=".") as root:
        async with dev_servers(Path(root), durable=False) as urls:
            settings = _settings(urls.postgres_dsn, urls.redis_url, Path(root) / "qdrant")
            started = time.perf_counter()
            await load(settings, rows)
            print(f"{rows:,} failures and {rows:,} listings loaded in {time.perf_counter() - started:.0f} s")
            await measure(settings, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="failures and listings loaded")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per endpoint")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    configure_logging("WARNING", "console")
    asyncio.run(_run(args.rows, args.calls))


if __name__ == "__main__":
    main()
