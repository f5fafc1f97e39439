"""Fault injection: the real worker and bridge processes under real faults, then proof they converged.

For each fault it starts its own Redis (append-only file on) and PostgreSQL, loads listings,
starts ``finally-indexer bridge`` and ``finally-indexer worker`` as processes (edge store on disk,
offline embedder), LPUSHes a sync of every listing as the scraper would, injects the fault while
the sync runs, and waits for the job to end. Then it stops the worker and proves the outcome: an
audit of PostgreSQL against the collection (drift per class), jobs not ended, entries still
pending in either group, and dead letters.

Faults (each on fresh servers):

- ``sigkill``: the worker is killed with SIGKILL five times at random moments and restarted;
- ``redis-restart``: Redis is shut down (its AOF flushed) and started again on the same port;
- ``redis-flushall``: Redis loses every key (as a restart without its AOF, or a failover to an
  empty replica would);
- ``postgres-stop``: PostgreSQL is stopped for 20 seconds.

Run: ``python bench/faults.py`` (all) or ``python bench/faults.py --faults sigkill --listings 5000``.
Not in the test suite: each fault takes tens of seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from finally_indexer.core.logging import configure_logging
from finally_indexer.core.settings import Settings, load_settings
from finally_indexer.core.streams import work_groups
from finally_indexer.db.dev_schema import ensure_dev_products
from finally_indexer.db.migrate import upgrade
from finally_indexer.db.pool import create_pool
from finally_indexer.devenv.postgres import PostgresServer
from finally_indexer.devenv.redis import RedisServer
from finally_indexer.processor.audit import Auditor
from finally_indexer.processor.stores.factory import build_vector_store

SCHEMA = "faults"
#: Seconds a fault run may take before it counts as not converged.
CONVERGE_TIMEOUT_S = 300.0
_INSERT = """
INSERT INTO products (id, title, price, content, mileage, brand, year)
SELECT i, '혼다 PCX ' || i, 1000000 + i, '상태 좋은 매물 ' || i, 1000 * (i % 90), 'Honda', 2015 + i % 8
FROM generate_series(1, $1::bigint) AS i
"""


@dataclass
class Servers:
    redis: RedisServer
    postgres: PostgresServer
    settings: Settings


@dataclass
class Outcome:
    fault: str
    converged: bool
    seconds: float
    drift: dict[str, int]
    unfinished_jobs: int
    pending_entries: int
    dead_letters: int


def _env(settings: Settings) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "")} | settings.as_environment()


async def _role(settings: Settings, role: str) -> asyncio.subprocess.Process:
    log = (Path(str(settings.qdrant_path)).parent / f"{role}.log").open("ab")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "finally_indexer.core.cli", role, env=_env(settings),
        stdout=log, stderr=log,
    )  # fmt: skip


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 40)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _progress(settings: Settings) -> tuple[int, int, str | None]:
    """(listings handled, listings planned, status) of the sync, read with a short-lived connection."""
    try:
        conn = await asyncpg.connect(settings.postgres_dsn(), server_settings={"search_path": SCHEMA})
    except (OSError, asyncpg.PostgresError):
        return 0, 0, None  # PostgreSQL is down (a fault): not known now
    try:
        row = await conn.fetchrow(
            """
            SELECT j.status, j.total, coalesce(sum(b.indexed + b.skipped + b.deleted + b.failed), 0) AS done
            FROM index_jobs j LEFT JOIN index_job_batches b USING (job_id)
            WHERE j.external_id = 'faults' GROUP BY j.job_id
            """
        )
    finally:
        await conn.close()
    return (0, 0, None) if row is None else (int(row["done"]), int(row["total"]), str(row["status"]))


async def _until_done(settings: Settings) -> bool:
    """True when the sync completed (every listing handled) in time; False if it failed or hung."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while time.monotonic() < deadline:
        status = (await _progress(settings))[2]
        if status in ("completed", "failed"):
            return status == "completed"
        await asyncio.sleep(0.2)
    return False


async def _midway(settings: Settings, share: float = 0.2) -> None:
    """Wait until the sync has handled ``share`` of its listings."""
    while True:
        done, total, status = await _progress(settings)
        if status in ("completed", "failed") or (total and done >= share * total):
            return
        await asyncio.sleep(0.05)


# --- the faults: each gets the servers and the running worker, returns the (new) worker -------------
Fault = Callable[[Servers, asyncio.subprocess.Process], Awaitable[asyncio.subprocess.Process]]


async def sigkill(servers: Servers, worker: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
    rng = random.Random(7)
    for _ in range(5):
        await asyncio.sleep(rng.uniform(0.3, 1.5))
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
        worker = await _role(servers.settings, "worker")
    return worker


async def redis_restart(servers: Servers, worker: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
    servers.redis.preferred_port = servers.redis.port  # back on the same port, as a restart would be
    await asyncio.to_thread(servers.redis.stop)  # SHUTDOWN: the AOF is flushed
    await asyncio.to_thread(servers.redis.start)
    return worker


async def redis_flushall(servers: Servers, worker: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
    client = Redis.from_url(servers.redis.url)
    await client.flushall()
    await client.aclose()
    return worker


async def postgres_stop(servers: Servers, worker: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
    servers.postgres.preferred_port = servers.postgres.port
    await asyncio.to_thread(servers.postgres.stop)
    await asyncio.sleep(20)
    await asyncio.to_thread(servers.postgres.start)
    return worker


FAULTS: dict[str, Fault] = {
    "sigkill": sigkill,
    "redis-restart": redis_restart,
    "redis-flushall": redis_flushall,
    "postgres-stop": postgres_stop,
}


async def _prove(settings: Settings) -> tuple[dict[str, int], int, int, int]:
    """Drift per verdict, jobs not ended, entries pending, dead letters — the worker stopped."""
    pool = await create_pool(settings)
    redis = Redis.from_url(settings.redis_dsn())
    store = build_vector_store(settings)
    try:
        report = await Auditor(pool=pool, redis=redis, store=store, settings=settings).run()
        unfinished = int(
            await pool.fetchval("SELECT count(*) FROM index_jobs WHERE status IN ('pending', 'running')")
        )
        pending = 0
        for pair in work_groups(settings):
            try:
                pending += int((await redis.xpending(pair.stream, pair.group))["pending"])
            except Exception:
                continue
        dead = int(await redis.xlen(settings.dead_letter_stream))
    finally:
        await store.aclose()
        await redis.aclose()
        await pool.close()
    drift = {verdict: n for verdict, n in report["counts"].items() if verdict != "ok" and n}
    return drift, unfinished, pending, dead


async def run_fault(name: str, listings: int, root: Path) -> Outcome:
    redis_server = RedisServer(root / "redis")
    postgres = PostgresServer(root / "postgres", database="faults", durable=False)
    redis_url = await asyncio.to_thread(redis_server.start)
    dsn = await asyncio.to_thread(postgres.start)
    settings = load_settings(
        database_url=dsn, redis_url=redis_url, postgres_schema=SCHEMA, vector_store="edge",
        qdrant_path=root / "qdrant", embedder="hashing", vector_size=64, batch_size=64,
        reclaim_idle_ms=2000, audit_interval_s=0, metrics_port=0, worker_concurrency=2,
    )  # fmt: skip
    servers = Servers(redis_server, postgres, settings)
    try:
        await asyncio.to_thread(upgrade, dsn, schema=SCHEMA)
        pool = await create_pool(settings)
        await ensure_dev_products(pool)
        await pool.execute(_INSERT, listings)
        await pool.close()
        bridge, worker = await _role(settings, "bridge"), await _role(settings, "worker")
        client = Redis.from_url(redis_url)
        await client.lpush(
            settings.legacy_list, json.dumps({"operation": "sync", "product_ids": "all", "job_id": "faults"})
        )
        await client.aclose()
        await _midway(settings)
        worker = await FAULTS[name](servers, worker)
        started = time.monotonic()
        converged = await _until_done(settings)
        seconds = time.monotonic() - started
        await _stop(worker)
        await _stop(bridge)
        drift, unfinished, pending, dead = await _prove(settings)
        converged = converged and not drift and not unfinished and not pending
        return Outcome(name, converged, seconds, drift, unfinished, pending, dead)
    finally:
        await asyncio.to_thread(redis_server.stop)
        await asyncio.to_thread(postgres.stop)


async def main(names: list[str], listings: int) -> None:
    configure_logging("WARNING", "console")
    print(
        f"{'fault':<16}{'converged':>10}{'after fault':>13}{'drift':>8}{'unfinished':>12}{'pending':>9}{'dead letters':>14}"
    )
    for name in names:
        with tempfile.TemporaryDirectory(prefix="bench-faults-", dir=".") as root:
            out = await run_fault(name, listings, Path(root))
        drift = sum(out.drift.values())
        print(
            f"{out.fault:<16}{'yes' if out.converged else 'NO':>10}{out.seconds:>12.1f}s{drift:>8}"
            f"{out.unfinished_jobs:>12}{out.pending_entries:>9}{out.dead_letters:>14}"
            + (f"   drift: {out.drift}" if drift else ""),
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--listings", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.faults.split(","), args.listings))
