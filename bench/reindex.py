"""Reindex benchmark: building a new generation beside a plain forced re-sync, in the same run.

It loads ``--listings`` listings into PostgreSQL (its own throwaway server and Redis), indexes them
once with the offline embedder at ``--old-dims`` dimensions into the in-process edge store (not
timed), then times, on the same worker (drain mode, the ordinary pipeline):

- the baseline: a forced re-sync of every listing in place (``POST /sync {"product_ids": "all",
  "scope": "all", "force": true}``), what changing the model cost before generations;
- the reindex: ``start_reindex`` with the offline embedder at ``--new-dims`` dimensions (another
  identity), the build through the pipeline, the audit of the new generation and the switch of
  the pointer — until the served name serves it.

Both embed every listing once with the same embedder; the ratio is what generations cost
(target, issue 11: at most 1.1). While each runs, a reader searches through the served name
every 50 ms (resolving the pointer, then a top-10 search of that generation): p50/p99 of its
latency are printed for both, and any error or short answer is counted.

Run: ``python bench/reindex.py`` (30,000 listings), or ``--listings 5000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from finally_indexer.core.logging import configure_logging
from finally_indexer.core.settings import Settings, load_settings
from finally_indexer.db import generations as records
from finally_indexer.db.dev_schema import ensure_dev_products
from finally_indexer.db.migrate import upgrade
from finally_indexer.devenv.servers import dev_servers
from finally_indexer.processor.pipeline import Pipeline
from finally_indexer.processor.reindex import start_reindex
from finally_indexer.processor.stores.generations import Family, family_of

SCHEMA = "bench_reindex"
READ_EVERY_S = 0.05

_INSERT = """
INSERT INTO products (id, title, price, content, mileage, brand, year, updated_at)
SELECT i, '혼다 PCX ' || i, 1000000 + i, '상태 좋은 매물입니다. 정비 완료, 사고 없음 ' || i, 1000 * (i % 90),
       'Honda', 2015 + i % 8, timestamptz '2026-01-01' + make_interval(secs => i)
FROM generate_series(1, $1::bigint) AS i
"""


def _settings(dsn: str, redis_url: str, path: Path, dims: int) -> Settings:
    return load_settings(
        database_url=dsn, redis_url=redis_url, postgres_schema=SCHEMA, vector_store="edge",
        qdrant_path=path, vector_size=dims, embedder="hashing", collection="bench", audit_interval_s=0,
    )  # fmt: skip


class Reader:
    """Searches through the served name every 50 ms; latencies and problems."""

    def __init__(self, pipeline: Pipeline, family: Family, listings: int) -> None:
        self._pipeline, self._family, self._listings = pipeline, family, listings
        self.latencies: list[float] = []
        self.problems = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        served = self._pipeline.settings.collection
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                name = await self._family.current()
                row = next(g for g in await records.live(self._pipeline.pool, served) if g.name == name)
                query = [1.0 / row.dimensions**0.5] * row.dimensions
                hits = await self._family.open(row.name, row.dimensions).search(query, limit=10)
                self.problems += len(hits) != 10
            except Exception:
                self.problems += 1
            self.latencies.append(time.perf_counter() - started)
            await asyncio.sleep(READ_EVERY_S)

    def figures(self) -> str:
        if not self.latencies:
            return "no reads"
        ms = sorted(x * 1000 for x in self.latencies)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        return f"search p50 {statistics.median(ms):6.1f} ms, p99 {p99:6.1f} ms over {len(ms)} reads, {self.problems} errors"


async def _timed(
    pipeline: Pipeline, family: Family, listings: int, work: Callable[[], Awaitable[None]]
) -> tuple[float, Reader]:
    reader = Reader(pipeline, family, listings)
    task = asyncio.create_task(reader.run())
    started = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - started
    reader.stop.set()
    await task
    return elapsed, reader


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-reindex-", dir=".") as root:
        async with dev_servers(Path(root), durable=False) as urls:
            old = _settings(urls.postgres_dsn, urls.redis_url, Path(root) / "qdrant", args.old_dims)
            new = old.model_copy(update={"vector_size": args.new_dims})
            await asyncio.to_thread(upgrade, old.postgres_dsn(), schema=SCHEMA)
            redis = Redis.from_url(old.redis_dsn())
            pipeline = await Pipeline.open(old, redis=redis)
            family = family_of(pipeline.store)
            assert family is not None
            assert pipeline.generations is not None
            generations = pipeline.generations
            try:
                await ensure_dev_products(pipeline.pool)
                await pipeline.pool.execute(_INSERT, args.listings)

                async def sync(force: bool) -> None:
                    job = {"operation": "sync", "product_ids": "all", "scope": "all", "force": force}
                    await redis.lpush(old.legacy_list, json.dumps(job))
                    await pipeline.drain(timeout_s=3600)

                started = time.perf_counter()
                await sync(False)
                print(
                    f"{args.listings:,} listings indexed (not timed) in {time.perf_counter() - started:.0f} s",
                    flush=True,
                )

                base_s, base_reads = await _timed(pipeline, family, args.listings, lambda: sync(True))

                async def reindex() -> None:
                    started = await start_reindex(pipeline.pool, redis, new, requested_by="bench")
                    while await records.status_of(pipeline.pool, started.generation) != "serving":
                        await pipeline.drain(timeout_s=3600)
                        await generations.step()

                build_s, build_reads = await _timed(pipeline, family, args.listings, reindex)
                assert await pipeline.store.count() == args.listings
            finally:
                await pipeline.aclose()
                await redis.aclose()
    print(f"forced re-sync (in place)   {base_s:7.1f} s | {base_reads.figures()}")
    print(f"reindex (build+audit+switch) {build_s:6.1f} s | {build_reads.figures()}")
    print(f"ratio reindex / forced re-sync: {build_s / base_s:.2f} (target <= 1.10)")
    return {"base_s": base_s, "build_s": build_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=30_000, help="listings (default 30,000)")
    parser.add_argument(
        "--old-dims", type=int, default=256, help="the serving generation's size (default 256)"
    )
    parser.add_argument("--new-dims", type=int, default=512, help="the new generation's size (default 512)")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    configure_logging("WARNING", "console")
    asyncio.run(_measure(args))


if __name__ == "__main__":
    main()
