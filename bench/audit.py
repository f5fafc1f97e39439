"""Audit benchmark: the audit's time and peak memory beside a plain read of both sides.

For each size it loads that many listings into PostgreSQL (its own throwaway server) and the
matching points into the in-process edge store (8-dimensional vectors: the audit never reads
vectors), then runs, each in a fresh process so that its peak RSS is its own:

- the baseline: a plain keyset read of the table plus a plain scroll of the collection (payloads,
  no vectors), doing nothing with either;
- the audit (``Auditor.run``): both sides merged in id order, every listing judged.

The collection is opened before each clock starts (a worker audits a store it already has open);
the RSS that opening leaves is printed too: with the in-process engine it is the store's, not the
audit's. RSS is split into anonymous memory (the process's own allocations, the engine's included)
and file-backed pages (the collection's memory-mapped files and the code: page cache the kernel
can drop and re-read). CPU seconds are printed beside the wall time: on a machine shared with
other work they say more than the wall time does.

Up to 100,000 listings each phase runs five times, interleaved, and the medians are compared
(a one-second audit moves by a tenth of a second from run to run); peak RSS is the highest run's.

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
import statistics
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
from finally_indexer.db.products import SOURCE_FP, fetch_listings
from finally_indexer.devenv.servers import dev_servers
from finally_indexer.processor.audit import Auditor
from finally_indexer.processor.source_keys import source_keyer
from finally_indexer.processor.stores.factory import build_vector_store
from finally_indexer.processor.stores.points import MODEL_KEY, SOURCE_KEY
from finally_indexer.processor.texts import build_text, text_hash, version_of
from finally_indexer.processor.vectorstore import ListingPoint, VectorStore

SCHEMA = "bench_audit"
DIMENSIONS = 8
#: Listings loaded per query and points per upsert.
CHUNK = 10_000
#: Up to this many listings, each phase runs SMALL_REPEATS times and the median is reported.
SMALL_SIZE = 100_000
SMALL_REPEATS = 5

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
    """``count`` listings in PostgreSQL and the points an up-to-date index holds for them (read and
    keyed as the indexer reads and keys them, vectors aside)."""
    await asyncio.to_thread(upgrade, settings.postgres_dsn(), schema=SCHEMA)
    pool = await create_pool(settings)
    store = build_vector_store(settings)
    await store.ensure_collection()
    await ensure_dev_products(pool)
    vector, model, key = [0.1] * DIMENSIONS, settings.model_name(), source_keyer(settings.text_template)
    for first in range(1, count + 1, CHUNK):
        last = min(first + CHUNK - 1, count)
        await pool.execute(_INSERT, first, last)
        rows = (await fetch_listings(pool, range(first, last + 1))).values()
        hashes = [text_hash(build_text(dict(r), settings.text_template)) for r in rows]
        await store.upsert([
            ListingPoint(
                int(r["id"]), vector, version_of(r["updated_at"]), h,
                {MODEL_KEY: model, SOURCE_KEY: key(r[SOURCE_FP], h)},
            )
            for r, h in zip(rows, hashes, strict=True)
        ])  # fmt: skip
    await store.aclose()
    await pool.close()


async def baseline(settings: Settings) -> dict[str, Any]:
    """A plain keyset read of the table and a plain scroll of the collection."""
    pool = await create_pool(settings)
    store = build_vector_store(settings)
    opened = await _opened(store)
    started, cpu = time.perf_counter(), _cpu_s()
    rows, after = 0, 0
    while page := await pool.fetch("SELECT * FROM products WHERE id > $1 ORDER BY id LIMIT 5000", after):
        rows, after = rows + len(page), int(page[-1]["id"])
    points = 0
    async for _ in store.scan():
        points += 1
    elapsed, cpu, rss = time.perf_counter() - started, _cpu_s() - cpu, _rss_split()
    await store.aclose()
    await pool.close()
    return {"seconds": elapsed, "cpu_s": cpu, **opened, **rss, "rows": rows, "points": points}


async def audit(settings: Settings) -> dict[str, Any]:
    """One audit, as a worker runs it."""
    pool = await create_pool(settings)
    redis = Redis.from_url(settings.redis_dsn())
    store = build_vector_store(settings)
    opened = await _opened(store)
    started, cpu = time.perf_counter(), _cpu_s()
    report = await Auditor(pool=pool, redis=redis, store=store, settings=settings).run()
    elapsed, cpu, rss = time.perf_counter() - started, _cpu_s() - cpu, _rss_split()
    await store.aclose()
    await redis.aclose()
    await pool.close()
    drift = sum(n for verdict, n in report["counts"].items() if verdict != "ok")
    return {
        "seconds": elapsed, "cpu_s": cpu, **opened, **rss, "rows": report["listings"],
        "points": report["points"], "drift": drift,
    }  # fmt: skip


async def _opened(store: VectorStore) -> dict[str, float]:
    """Open the collection before the clock starts (a worker audits a store it has open) and
    return the RSS that leaves: what the in-process engine holds before anything is read."""
    await store.ping()
    return {f"opened_{name}": mb for name, mb in _rss_split().items()}


def _rss_split() -> dict[str, float]:
    """The RSS now, in MB: anonymous memory (the heap: the process's own) and file-backed pages
    (memory-mapped files and code: the kernel drops them under pressure and re-reads them)."""
    return {"anon_mb": _rss_mb("RssAnon"), "file_mb": _rss_mb("RssFile") + _rss_mb("RssShmem")}


def _cpu_s() -> float:
    """CPU seconds of this process (all its threads)."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    return mine.ru_utime + mine.ru_stime


def peak_rss_mb() -> float:
    """The highest RSS this process has had, in MB: ``VmHWM``, the high-water mark of its own
    address space. Not ``ru_maxrss``: for a process started by fork and exec that starts at the
    parent's RSS at the fork (here the bench's, which loaded the collection: 1.9 GB at 1M)."""
    return _rss_mb("VmHWM")


def _rss_mb(field: str) -> float:
    """A memory figure of this process from /proc (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) / 1024
    return 0.0


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
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def _repeats(size: int, asked: int | None) -> int:
    """Runs of each phase: a one-second audit moves by a tenth of a second from run to run, so
    small sizes take the median of several (interleaved with the baseline's, so that a change of
    load on the machine falls on both); a million listings once."""
    if asked is not None:
        return asked
    return SMALL_REPEATS if size <= SMALL_SIZE else 1


async def _measure(size: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=".") as root:
        async with dev_servers(Path(root), durable=False) as urls:
            path = Path(root) / "qdrant"
            settings = _settings(urls.postgres_dsn, urls.redis_url, path)
            started = time.perf_counter()
            await load(settings, size)
            print(f"{size:>9,} listings loaded in {time.perf_counter() - started:.0f} s", flush=True)
            bases, founds = [], []
            for _ in range(repeats):
                bases.append(
                    await asyncio.to_thread(_phase, "baseline", urls.postgres_dsn, urls.redis_url, path)
                )
                founds.append(
                    await asyncio.to_thread(_phase, "audit", urls.postgres_dsn, urls.redis_url, path)
                )
            for base, found in zip(bases, founds, strict=True):
                assert base["rows"] == found["rows"] == size
                assert base["points"] == found["points"] == size
            _report(size, bases, founds)


def _median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def _spread(runs: list[dict[str, Any]]) -> str:
    """The runs' times beside the median, when there are several."""
    if len(runs) == 1:
        return ""
    times = ", ".join(f"{run['seconds']:.2f}" for run in runs)
    return f" [{times}]"


def _report(size: int, bases: list[dict[str, Any]], founds: list[dict[str, Any]]) -> None:
    base_s, found_s = _median_of(bases, "seconds"), _median_of(founds, "seconds")
    median = "median of " + str(len(founds)) + " runs " if len(founds) > 1 else ""
    print(
        f"{size:>9,} listings: {median}audit {found_s:7.2f} s ({_median_of(founds, 'cpu_s'):5.1f} CPU s),"
        f" drift {max(f['drift'] for f in founds)} | baseline (read table + scroll collection) {base_s:7.2f} s"
        f" ({_median_of(bases, 'cpu_s'):5.1f} CPU s) | ratio {found_s / base_s:.2f}",
        flush=True,
    )
    if len(founds) > 1:
        print(f"{'':>9}  audit runs{_spread(founds)}; baseline runs{_spread(bases)}", flush=True)
    found_mb = max(f["peak_rss_mb"] for f in founds)
    base_mb = max(b["peak_rss_mb"] for b in bases)
    print(
        f"{'':>9}  peak RSS: audit {found_mb:5.0f} MB, baseline {base_mb:5.0f} MB;"
        f" the audit's own {found_mb - base_mb:+4.0f} MB beside the baseline",
        flush=True,
    )
    found, base = founds[-1], bases[-1]
    print(
        f"{'':>9}  RSS anonymous + file-backed: collection opened (nothing read)"
        f" {base['opened_anon_mb']:5.0f} + {base['opened_file_mb']:4.0f} MB;"
        f" after the audit {found['anon_mb']:5.0f} + {found['file_mb']:4.0f} MB,"
        f" after the baseline {base['anon_mb']:5.0f} + {base['file_mb']:4.0f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30000,1000000", help="comma-separated listing counts")
    parser.add_argument(
        "--repeats",
        type=int,
        help=f"runs of each phase (default {SMALL_REPEATS} up to {SMALL_SIZE:,} listings, else 1)",
    )
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
        asyncio.run(_measure(size, _repeats(size, args.repeats)))


if __name__ == "__main__":
    main()
