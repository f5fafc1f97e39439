"""API benchmark: how fast ``POST /sync`` answers while a large sync is being indexed.

Starts throwaway Redis and PostgreSQL (devenv), loads N listings, runs a FastStream worker and the
Litestar app (served by uvicorn on 127.0.0.1) in this process, queues a sync of every listing,
with the embedded defaults' engines (the edge store, the hashing embedder at 3072 dimensions),
then — while it runs — times ``POST /sync`` requests against a **baseline measured in the same
run**: ``GET /health/live``, the cheapest route (no dependency call), through the same server.

Run: ``python bench/api.py --listings 30000 --requests 200``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from redis.asyncio import Redis

from finally_indexer.core.logging import configure_logging
from finally_indexer.core.roles import serve_worker
from finally_indexer.core.settings import load_settings
from finally_indexer.db.dev_schema import ensure_dev_products
from finally_indexer.db.migrate import upgrade
from finally_indexer.db.pool import create_pool
from finally_indexer.db.seed_demo import seed_demo
from finally_indexer.devenv.servers import dev_servers
from finally_indexer.http.app import AppDeps, create_app
from finally_indexer.http.server import bound_port, build_server, start_in_background
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.stores.factory import build_vector_store


async def _timed(client: httpx.AsyncClient, method: str, path: str, n: int, **kw: object) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        res = await client.request(method, path, **kw)  # type: ignore[arg-type]
        out.append(time.perf_counter() - started)
        assert res.status_code in (200, 202), res.text
    return out


def _line(name: str, samples: list[float]) -> str:
    p99 = statistics.quantiles(samples, n=100)[98]
    return f"{name:<34} p50 {statistics.median(samples) * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms   (n={len(samples)})"


async def main(listings: int, requests: int) -> None:
    configure_logging("WARNING", "console")
    with tempfile.TemporaryDirectory(prefix="bench-", dir=".") as root:
        async with dev_servers(Path(root), durable=False) as urls:
            settings = load_settings(
                database_url=urls.postgres_dsn, redis_url=urls.redis_url, embedder="hashing",
                vector_store="edge", qdrant_path=Path(root) / "qdrant", vector_size=3072,
            )  # fmt: skip
            await asyncio.to_thread(upgrade, urls.postgres_dsn)
            pool = await create_pool(settings)
            await ensure_dev_products(pool)
            await seed_demo(pool, count=listings, progress=False)
            redis = Redis.from_url(urls.redis_url)
            store = build_vector_store(settings)
            pipeline = await Pipeline.open(settings, redis=redis, pool=pool, store=store)
            stop = asyncio.Event()
            worker = asyncio.create_task(serve_worker(pipeline, stop=stop))
            server = build_server(
                create_app(settings, deps=AppDeps(pool=pool, redis=redis, store=store)), "127.0.0.1", 0
            )
            api = await start_in_background(server, stop)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{bound_port(server)}", timeout=30
            ) as client:
                big = (await client.post("/sync", json={"product_ids": "all", "scope": "all"})).json()[
                    "job_id"
                ]
                # the timing starts once the big job is being indexed (its progress is in PostgreSQL)
                while (await client.get(f"/jobs/{big}")).json()["progress"]["done"] == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                base = await _timed(client, "GET", "/health/live", requests)
                sync = await _timed(client, "POST", "/sync", requests, json={"product_ids": [1]})
                job = (await client.get(f"/jobs/{big}")).json()
            print(
                f"# api bench: {listings} listings being indexed (job {job['status']}, {job['progress']['percent']}% done after the timing)"
            )
            print(_line("GET /health/live (baseline)", base))
            print(_line("POST /sync during the big sync", sync))
            print(
                f"ratio p50 sync/baseline            {statistics.median(sync) / statistics.median(base):.1f} x"
            )
            stop.set()
            await asyncio.gather(worker, api)
            await pipeline.aclose()
            await store.aclose()
            await redis.aclose()
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listings", type=int, default=30_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.listings, args.requests))
