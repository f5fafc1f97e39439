"""Pipeline benchmark: bridge latency (LPUSH → jobs stream) and end-to-end sync throughput.

Starts throwaway Redis and PostgreSQL (devenv), loads N listings and prints:

- the bridge's LPUSH → visible-in-stream latency (p50/p99) while it idles on BLMOVE;
- a full sync of N listings through bridge → planner → indexer (drain mode), with the offline
  hashing embedder and qdrant-client's in-memory store, against a **baseline measured in the same
  run**: the same embedder and store called directly on the same rows, with no Redis or
  PostgreSQL in between. The difference is the pipeline's own overhead.

Run: ``python bench/pipeline.py --listings 5000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from finally_indexer.core.logging import configure_logging
from finally_indexer.core.roles import serve_worker
from finally_indexer.core.settings import Settings, load_settings
from finally_indexer.db.dev_schema import ensure_dev_products
from finally_indexer.db.migrate import upgrade
from finally_indexer.db.pool import create_pool
from finally_indexer.devenv.servers import dev_servers
from finally_indexer.processor.bridge import Bridge
from finally_indexer.processor.embedders.factory import build_embedder
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.texts import build_text, payload_for, text_hash, version_of
from finally_indexer.processor.vectorstore import ListingPoint

_INSERT = """
INSERT INTO products (id, title, url, price, content, mileage, brand, year)
SELECT i, '혼다 PCX ' || i, 'https://example.test/' || i, 1000000 + i,
       repeat('상태 좋은 매물, 정비 이력 있음. ', 10) || i, 1000 * i, 'Honda', 2015 + i % 8
FROM generate_series(1, $1::bigint) AS i
"""


async def bridge_latency(redis: Redis, settings: Settings, n: int = 500) -> list[float]:
    """Seconds from LPUSH to the entry being in the stream, for ``n`` jobs pushed one by one."""
    stop = asyncio.Event()
    runner = asyncio.create_task(
        Bridge(redis, list_key=settings.legacy_list, stream_key=settings.jobs_stream).run(stop)
    )
    await asyncio.sleep(0.1)  # let the bridge reach its BLMOVE wait: we measure the idle case
    base = await redis.xlen(settings.jobs_stream)
    out = []
    for i in range(n):
        started = time.perf_counter()
        await redis.lpush(settings.legacy_list, json.dumps({"operation": "sync", "product_ids": [i + 1]}))
        while await redis.xlen(settings.jobs_stream) <= base + i:
            pass
        out.append(time.perf_counter() - started)
    stop.set()
    await runner
    await redis.delete(settings.jobs_stream)
    return out


async def baseline(pool: asyncpg.Pool[Any], settings: Settings) -> float:
    """Seconds to embed and upsert every listing directly (no streams, no bookkeeping)."""
    embedder = build_embedder(settings)
    store = build_vector_store(
        settings.model_copy(update={"qdrant_path": Path(":memory:"), "collection": "baseline"})
    )
    await store.ensure_collection()
    started = time.perf_counter()
    rows = [dict(r) for r in await pool.fetch("SELECT * FROM products ORDER BY id")]
    for i in range(0, len(rows), settings.batch_size):
        chunk = rows[i : i + settings.batch_size]
        texts = [build_text(r, settings.text_template) for r in chunk]
        result = await embedder.embed(texts)
        await store.upsert([
            ListingPoint(int(r["id"]), v, version_of(r["updated_at"]), text_hash(t), payload_for(r))
            for r, t, v in zip(chunk, texts, result.vectors, strict=True)
        ])  # fmt: skip
    elapsed = time.perf_counter() - started
    await store.aclose()
    return elapsed


async def full_sync(redis: Redis, pool: asyncpg.Pool[Any], settings: Settings) -> float:
    """Seconds from LPUSH of a sync "all" to every listing indexed (drain mode)."""
    store = build_vector_store(settings.model_copy(update={"qdrant_path": Path(":memory:")}))
    pipeline = await Pipeline.open(settings, redis=redis, pool=pool, store=store)
    started = time.perf_counter()
    await redis.lpush(settings.legacy_list, json.dumps({"operation": "sync", "product_ids": "all"}))
    await pipeline.drain(timeout_s=3600)
    elapsed = time.perf_counter() - started
    assert await pool.fetchval("SELECT count(*) FROM products WHERE NOT is_conversion") == 0
    await pipeline.aclose()
    await store.aclose()
    return elapsed


async def full_sync_worker(redis: Redis, pool: asyncpg.Pool[Any], settings: Settings) -> float:
    """Seconds from LPUSH of a sync "all" to the job completed, through the production path:
    the bridge's blocking loop and the FastStream worker (subscribers, batch reads, one XACK per read).
    """
    settings = settings.model_copy(
        update={
            "legacy_list": "w:indexing_jobs", "jobs_stream": "{w:indexing_jobs}:jobs",
            "batch_stream": "w:batches", "events_stream": "w:events", "collection": "worker",
        }
    )  # fmt: skip
    await pool.execute("UPDATE products SET is_conversion = false")
    await pool.execute("TRUNCATE index_state")
    store = build_vector_store(settings.model_copy(update={"qdrant_path": Path(":memory:")}))
    pipeline = await Pipeline.open(settings, redis=redis, pool=pool, store=store)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(pipeline.bridge.run(stop)),
        asyncio.create_task(serve_worker(pipeline, stop=stop)),
    ]
    job = {"operation": "sync", "product_ids": "all", "job_id": "bench-worker"}
    started = time.perf_counter()
    await redis.lpush(settings.legacy_list, json.dumps(job))
    # Completion is a row in PostgreSQL written by the worker: polling it (every 20 ms) is the clock.
    done = "SELECT status FROM index_jobs WHERE external_id = 'bench-worker'"
    while await pool.fetchval(done) != "completed":  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    assert await pool.fetchval("SELECT count(*) FROM products WHERE NOT is_conversion") == 0
    await pipeline.aclose()
    await store.aclose()
    return elapsed


async def main(listings: int) -> None:
    configure_logging("WARNING", "console")
    with tempfile.TemporaryDirectory(prefix="bench-", dir=".") as root:
        async with dev_servers(Path(root), durable=False) as urls:
            settings = load_settings(
                database_url=urls.postgres_dsn, redis_url=urls.redis_url, postgres_schema="bench",
                embedder="hashing", vector_store="local", vector_size=256, batch_size=64, worker_concurrency=4,
            )  # fmt: skip
            await asyncio.to_thread(upgrade, urls.postgres_dsn, schema="bench")
            pool = await create_pool(settings)
            redis = Redis.from_url(urls.redis_url)
            await ensure_dev_products(pool)
            await pool.execute(_INSERT, listings)
            lat = sorted(await bridge_latency(redis, settings))
            p99 = statistics.quantiles(lat, n=100)[98]
            print(
                f"bridge LPUSH→stream latency: p50 {statistics.median(lat) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms (n={len(lat)})"
            )
            base = await baseline(pool, settings)
            sync = await full_sync(redis, pool, settings)
            print(
                f"baseline (embed + upsert directly): {listings} listings in {base:.2f} s = {listings / base:,.0f}/s"
            )
            print(
                f"pipeline (LPUSH → bridge → planner → indexer): {listings} in {sync:.2f} s = {listings / sync:,.0f}/s"
            )
            print(f"pipeline overhead: {sync / base:.2f} times the baseline")
            worker = await full_sync_worker(redis, pool, settings)
            print(
                f"worker (LPUSH → bridge loop → FastStream worker): {listings} in {worker:.2f} s"
                f" = {listings / worker:,.0f}/s, {worker / base:.2f} times the baseline"
            )
            await redis.aclose()
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=5000)
    asyncio.run(main(parser.parse_args().listings))
