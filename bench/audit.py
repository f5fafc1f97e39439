"""Audit benchmark: the audit's time and peak memory beside a plain read of both sides.

For each size it loads that many listings into PostgreSQL (its own throwaway server) and the
matching points into the in-process edge store (8-dimensional vectors: the audit never reads
vectors), then runs, each in a fresh process so that its peak RSS is its own:

- the baseline: a plain keyset read of the table plus a plain scroll of the collection (payloads,
  no vectors), doing nothing with either;
- the audit (``Auditor.run``): both sides merged in id order, every listing judged.

Run: ``python bench/audit.py`` (30,000 and 1,000,000 listings), or ``--sizes 30000``.
Targets (issue 8): 30k in under 5 s, 1M in under 3 minutes, peak RSS under 500 MB, and no more
than 1.5 times the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from finally_indexer.core.logging import configure_logging
from finally_indexer.core.settings import Settings, load_settings
from finally_indexer.db.dev_schema import ensure_dev_products
from finally_indexer.db.migrate import upgrade
from finally_indexer.db.pool import create_pool
from finally_indexer.devenv.servers import dev_servers
from finally_indexer.processor.audit import Auditor
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.texts import build_text, text_hash, version_of
from finally_indexer.processor.vectorstore import ListingPoint

SCHEMA = "bench_audit"
DIMENSIONS = 8
#: Listings loaded per query and points per upsert.
CHUNK = 10_000

_INSERT = """
INSERT INTO products (id, title, price, content, mileage, brand, year, is_conversion, updated_at)
SELECT i, '혼다 PCX ' || i, 1000000 + i, '상태 좋은 매물입니다. 정비 완료, 사고 없음 ' || i, 1000 * (i % 90),
       'Honda', 2015 + i % 8, true, timestamptz '2026-01-01' + make_interval(secs => i)
FROM generate_series($1::bigint, $2::bigint) AS i
"""


def _settings(dsn: str, redis_url: str, path: Path) -> Settings:
    return load_settings(
        database_url=dsn, redis_url=redis_url, postgres_schema=SCHEMA, vector_store="edge",
        qdrant_path=path, vector_size=DIMENSIONS, embedder="hashing", collection="bench",
    )  # fmt: skip


async def load(settings: Settings, count: int) -> None:
    """``count`` listings in PostgreSQL and the points an up-to-date index holds for them."""
    await asyncio.to_thread(upgrade, settings.postgres_dsn(), schema=SCHEMA)
    pool = await create_pool(settings)
    store = build_vector_store(settings)
    await store.ensure_collection()
    await ensure_dev_products(pool)
    vector, model = [0.1] * DIMENSIONS, settings.model_name()
    for first in range(1, count + 1, CHUNK):
        last = min(first + CHUNK - 1, count)
        await pool.execute(_INSERT, first, last)
        rows = await pool.fetch("SELECT * FROM products WHERE id BETWEEN $1 AND $2", first, last)
        await store.upsert([
            ListingPoint(
                int(r["id"]), vector, version_of(r["updated_at"]),
                text_hash(build_text(dict(r), settings.text_template)), {"model": model},
            )
            for r in rows
        ])  # fmt: skip
    await store.aclose()
    await pool.close()


async def baseline(settings: Settings) -> dict[str, Any]:
    """A plain keyset read of the table and a plain scroll of the collection."""
    pool = await create_pool(settings)
    store = build_vector_store(settings)
    started = time.perf_counter()
    rows, after = 0, 0
    while page := await pool.fetch("SELECT * FROM products WHERE id > $1 ORDER BY id LIMIT 5000", after):
        rows, after = rows + len(page), int(page[-1]["id"])
    points = 0
    async for _ in store.scan():
        points += 1
    elapsed = time.perf_counter() - started
    await store.aclose()
    await pool.close()
    return {"seconds": elapsed, "rows": rows, "points": points}


async def audit(settings: Settings) -> dict[str, Any]:
    """One audit, as a worker runs it."""
    pool = await create_pool(settings)
    redis = Redis.from_url(settings.redis_dsn())
    store = build_vector_store(settings)
    started = time.perf_counter()
    report = await Auditor(pool=pool, redis=redis, store=store, settings=settings).run()
    elapsed = time.perf_counter() - started
    await store.aclose()
    await redis.aclose()
    await pool.close()
    drift = sum(n for verdict, n in report["counts"].items() if verdict != "ok")
    return {"seconds": elapsed, "rows": report["listings"], "points": report["points"], "drift": drift}


def _phase(name: str, dsn: str, redis_url: str, path: Path) -> dict[str, Any]:
    """Run one phase in a fresh interpreter; its result and its peak RSS."""
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--dsn", dsn, "--redis", redis_url, "--path", str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _run_phase(args: argparse.Namespace) -> None:
    configure_logging("WARNING", "console")
    settings = _settings(args.dsn, args.redis, Path(args.path))
    result = asyncio.run(baseline(settings) if args.phase == "baseline" else audit(settings))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


async def _measure(size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=".") as root:
        async with dev_servers(Path(root), durable=False) as urls:
            path = Path(root) / "qdrant"
            settings = _settings(urls.postgres_dsn, urls.redis_url, path)
            started = time.perf_counter()
            await load(settings, size)
            print(f"{size:>9,} listings loaded in {time.perf_counter() - started:.0f} s", flush=True)
            base = await asyncio.to_thread(_phase, "baseline", urls.postgres_dsn, urls.redis_url, path)
            found = await asyncio.to_thread(_phase, "audit", urls.postgres_dsn, urls.redis_url, path)
            assert base["rows"] == found["rows"] == size
            assert base["points"] == found["points"] == size
            print(
                f"{size:>9,} listings: audit {found['seconds']:7.2f} s, peak RSS {found['peak_rss_mb']:6.0f} MB,"
                f" drift {found['drift']} | baseline (read table + scroll collection) {base['seconds']:7.2f} s,"
                f" peak RSS {base['peak_rss_mb']:6.0f} MB | ratio {found['seconds'] / base['seconds']:.2f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30000,1000000", help="comma-separated listing counts")
    parser.add_argument("--phase", choices=["baseline", "audit"], help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _run_phase(args)
        return
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    configure_logging("WARNING", "console")
    for size in (int(s) for s in args.sizes.split(",")):
        asyncio.run(_measure(size))


if __name__ == "__main__":
    main()
