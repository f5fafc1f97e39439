"""One fault run: fresh servers, the real roles as processes, a sync, the fault, then the proof.

:func:`run_fault` starts its own Redis (append-only file on) and PostgreSQL, loads ``listings``
listings, starts ``finally-indexer bridge`` and ``finally-indexer worker`` as processes
(:class:`~faultlab.processes.RoleProcess`; the edge store on disk, the offline embedder or the
OpenAI embedder against the fake server), LPUSHes a sync of every listing as the scraper would,
injects the fault once a fifth of the listings are done, and waits for every job to end. Then:

- the dead-letter stream's length is read at convergence and again after :attr:`Scale.settle_s`
  with the worker still running (its growth must be 0: nothing loops);
- the roles are stopped (gracefully) and the outcome proven: an audit of PostgreSQL against the
  collection (drift per verdict), jobs not ended, entries pending in either group, dead letters,
  bad payloads recorded in ``failed_operations`` (rows, and distinct entries), the worker's peak
  memory and its exits nobody asked for.

:class:`Scale` holds every size and duration, so the bench (production sizes) and the tests
(small ones, with ``RECLAIM_IDLE_MS`` and ``MAX_DELIVERIES`` made small so a short outage is a
"long" one) run the same code. The faults themselves are in :mod:`faultlab.catalog`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg
from fakes.openai_server import FakeOpenAI
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import RedisError

from faultlab.disk import tmpfs
from faultlab.processes import RoleProcess
from finally_indexer.core.settings import Settings, load_settings
from finally_indexer.core.streams import as_text, batch_group, work_groups
from finally_indexer.db.dev_schema import ensure_dev_products
from finally_indexer.db.migrate import upgrade
from finally_indexer.db.pool import create_pool
from finally_indexer.devenv.postgres import PostgresServer
from finally_indexer.devenv.redis import RedisServer
from finally_indexer.processor.audit import Auditor
from finally_indexer.processor.stores.factory import build_vector_store

__all__ = ["TEST_SCALE", "Lab", "Outcome", "Scale", "run_fault"]

SCHEMA: Final = "faults"
#: The job id of the sync every run starts with.
SYNC_JOB: Final = "faults"
#: Faults that are input, not an outage: they need no sync in flight to be meaningful.
INPUT_FAULTS: Final = frozenset({"none", "bad-payloads"})
#: The worker's peak resident memory above which a run counts as unbounded.
MEMORY_BOUND_BYTES: Final = 1024 * 1024 * 1024
#: The size cap on legacy payloads in a run (``LEGACY_PAYLOAD_MAX_BYTES``): small, so that the
#: oversize payloads among 10,000 bad ones stay cheap to send.
PAYLOAD_MAX_BYTES: Final = 256 * 1024
#: Size of the filesystem (tmpfs) the edge store gets when a fault fills its disk.
STORE_DISK_BYTES: Final = 512 * 1024 * 1024
_INSERT: Final = """
INSERT INTO products (id, title, price, content, mileage, brand, year)
SELECT i, '혼다 PCX ' || i, 1000000 + i, '상태 좋은 매물 ' || i, 1000 * (i % 90), 'Honda', 2015 + i % 8
FROM generate_series(1, $1::bigint) AS i
"""


@dataclass(frozen=True)
class Scale:
    """Sizes and durations of a run: the bench's defaults are production-sized."""

    listings: int = 30_000
    kills: int = 20
    sigterms: int = 3
    postgres_stop_s: float = 20.0
    postgres_long_stop_s: float = 360.0
    embedding_outage_s: float = 90.0
    disk_full_s: float = 30.0
    bad_payloads: int = 10_000
    valid_jobs: int = 100
    batch_size: int = 64
    reclaim_idle_ms: int = 2_000
    max_deliveries: int = 5
    seed: int = 7
    converge_timeout_s: float = 1800.0
    #: Seconds each embedding request takes in the runs of faults that act at chosen moments of
    #: the sync (:attr:`~faultlab.catalog.FaultSpec.paced`); above 0 they embed through the fake
    #: embeddings API with that latency, so a small sync still has work left at every moment.
    pace_s: float = 0.0

    @property
    def settle_s(self) -> float:
        """How long the dead-letter stream is watched after convergence: several reclaim rounds."""
        return max(2.0, 3 * self.reclaim_idle_ms / 1000)


#: The tests' scale: small, and an outage of seconds already outlasts MAX_DELIVERIES x RECLAIM_IDLE_MS.
TEST_SCALE: Final = Scale(
    listings=400, kills=2, sigterms=1, postgres_stop_s=2.0, postgres_long_stop_s=10.0,
    embedding_outage_s=5.0, disk_full_s=5.0, bad_payloads=300, valid_jobs=10, batch_size=16,
    reclaim_idle_ms=500, max_deliveries=3, converge_timeout_s=120.0, pace_s=0.4,
)  # fmt: skip


@dataclass
class Lab:
    """What a fault gets to act on: the servers, the roles, the fake embeddings API and the scale."""

    scale: Scale
    folder: Path
    redis_server: RedisServer
    postgres: PostgresServer
    settings: Settings
    worker: RoleProcess
    bridge: RoleProcess
    embeddings: FakeOpenAI | None = None
    #: Where the edge store lives when it has a filesystem of its own (a tmpfs): faults fill it.
    store_disk: Path | None = None
    #: What the fault sent that the legacy contract refuses, and the ids of the valid jobs it added.
    bad_sent: int = 0
    extra_jobs: list[str] = field(default_factory=list)
    #: What the fault did, for the report (e.g. ``20 kills``); what it could not do, if anything.
    note: str = ""
    shortfall: str = ""

    def redis(self) -> Redis:
        """A new client of the run's Redis (close it)."""
        return Redis.from_url(self.settings.redis_dsn())

    async def progress(self) -> tuple[int, int, str | None]:
        """(listings handled, listings planned, status) of the sync (zeros while PostgreSQL is down)."""
        row = await _fetchrow(
            self.settings,
            """
            SELECT j.status, j.total, coalesce(sum(b.indexed + b.skipped + b.deleted + b.failed), 0) AS done
            FROM index_jobs j LEFT JOIN index_job_batches b USING (job_id)
            WHERE j.external_id = $1 GROUP BY j.job_id
            """,
            SYNC_JOB,
        )
        return (0, 0, None) if row is None else (int(row["done"]), int(row["total"]), str(row["status"]))

    async def until_progress(self, share: float) -> bool:
        """Wait until the sync has handled ``share`` of its listings; False if it ended first."""
        while True:
            done, total, status = await self.progress()
            if status in ("completed", "failed"):
                return False
            if total and done >= share * total:
                return True
            await asyncio.sleep(0.05)


@dataclass
class Outcome:
    """What a run proved."""

    fault: str
    done: bool  # every job ended, the sync completed, every bad payload recorded, in time
    seconds: float  # from the end of the fault to that
    drift: dict[str, int]
    unfinished_jobs: int
    pending_entries: int
    bad_sent: int
    bad_recorded: int  # failed_operations rows of malformed jobs
    bad_distinct: int  # ... of distinct entries (equal to the rows: each recorded once)
    dead_letters: int
    dead_letter_growth: int  # after convergence, with the worker still running
    peak_rss_bytes: int
    exits: list[int]  # worker exits nobody asked for (and graceful stops that did not exit 0)
    note: str = ""
    shortfall: str = ""  # the fault could not be injected in full (e.g. the sync ended first)
    log_tail: str = field(default="", repr=False)  # the worker's last log lines, to explain a failure

    @property
    def problems(self) -> list[str]:
        """Every promise this run broke (empty: it converged)."""
        checks = {
            "not done in time": not self.done,
            f"drift {self.drift}": bool(self.drift),
            "unfinished jobs": self.unfinished_jobs > 0,
            "pending entries": self.pending_entries > 0,
            "bad payloads not recorded exactly once": not (
                self.bad_recorded == self.bad_distinct == self.bad_sent
            ),
            "dead letters not the bad payloads": self.dead_letters != self.bad_sent,
            "dead-letter stream growing": self.dead_letter_growth != 0,
            "memory unbounded": self.peak_rss_bytes > MEMORY_BOUND_BYTES,
            f"worker exits {self.exits}": bool(self.exits),
            self.shortfall: bool(self.shortfall),
        }
        return [what for what, broken in checks.items() if broken]

    @property
    def converged(self) -> bool:
        return not self.problems


Fault = Callable[[Lab], Awaitable[None]]


async def run_fault(
    name: str,
    fault: Fault,
    scale: Scale,
    folder: Path,
    *,
    embedder: str = "hashing",
    latency: float = 0.0,
    store_disk: bool = False,
) -> Outcome:
    """Run ``fault`` once on fresh servers in ``folder`` and prove the outcome (see the module)."""
    async with _servers(folder) as (redis_server, postgres), _embeddings(embedder, latency) as fake:
        qdrant = folder / "qdrant"
        async with _disk(qdrant, enabled=store_disk):
            settings = _settings(scale, redis_server.url, postgres.dsn, qdrant, fake)
            await _load(settings, scale.listings)
            ready = functools.partial(_consuming, settings)
            lab = Lab(
                scale=scale, folder=folder, redis_server=redis_server, postgres=postgres,
                settings=settings, worker=RoleProcess("worker", settings, folder, ready=ready),
                bridge=RoleProcess("bridge", settings, folder), embeddings=fake,
                store_disk=qdrant if store_disk else None,
            )  # fmt: skip
            return await _run(name, fault, lab)


async def _run(name: str, fault: Fault, lab: Lab) -> Outcome:
    await lab.bridge.start()
    await lab.worker.start()
    try:
        client = lab.redis()
        job = {"operation": "sync", "product_ids": "all", "job_id": SYNC_JOB}
        await client.lpush(lab.settings.legacy_list, json.dumps(job))
        await client.aclose()
        if not await lab.until_progress(0.2) and name not in INPUT_FAULTS:
            lab.shortfall = "the sync ended before the fault"  # it would have hit no work
        await fault(lab)
        ended = time.monotonic()
        done = await _until_converged(lab)
        seconds = time.monotonic() - ended
        at_convergence = await _dead_letters(lab.settings)
        await asyncio.sleep(lab.scale.settle_s)
        growth = await _dead_letters(lab.settings) - at_convergence
    finally:
        await lab.worker.stop()
        await lab.bridge.stop()
    proof = await _prove(lab.settings)
    return Outcome(
        fault=name, done=done, seconds=seconds, drift=proof.drift, unfinished_jobs=proof.unfinished,
        pending_entries=proof.pending, bad_sent=lab.bad_sent, bad_recorded=proof.bad_rows,
        bad_distinct=proof.bad_entries, dead_letters=proof.dead_letters, dead_letter_growth=growth,
        peak_rss_bytes=lab.worker.peak_rss, exits=lab.worker.exits, note=lab.note,
        shortfall=lab.shortfall, log_tail=_tail(lab.folder / "worker.log"),
    )  # fmt: skip


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- waiting and proving -----------------------------------------------------------------------------
async def _fetchrow(settings: Settings, query: str, *args: Any) -> asyncpg.Record | None:
    """One row through a short-lived connection; None while PostgreSQL is down (a fault)."""
    try:
        conn = await asyncpg.connect(settings.postgres_dsn(), server_settings={"search_path": SCHEMA})
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    try:
        row: asyncpg.Record | None = await conn.fetchrow(query, *args)
        return row
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


async def _until_converged(lab: Lab) -> bool:
    """True once every job ended, the sync completed and every bad payload is recorded, in time."""
    jobs = 1 + len(lab.extra_jobs)
    deadline = time.monotonic() + lab.scale.converge_timeout_s
    while time.monotonic() < deadline:
        row = await _fetchrow(
            lab.settings,
            """
            SELECT count(*) FILTER (WHERE status IN ('completed', 'failed')) AS ended,
                   count(*) FILTER (WHERE external_id = $1 AND status = 'completed') AS synced,
                   (SELECT count(*) FROM failed_operations WHERE operation_type = 'job') AS bad
            FROM index_jobs
            """,
            SYNC_JOB,
        )
        if row is not None and row["ended"] >= jobs and row["synced"] and row["bad"] >= lab.bad_sent:
            return True
        await asyncio.sleep(0.2)
    return False


async def _consuming(settings: Settings, pid: int) -> bool:
    """The worker with process id ``pid`` reads the batch stream (its consumer is in the group)."""
    pair = batch_group(settings)
    client = Redis.from_url(settings.redis_dsn())
    try:
        consumers = await client.xinfo_consumers(pair.stream, pair.group)
    except RedisError:
        return False
    finally:
        await client.aclose()
    # the name ``processor/broker.py`` gives a worker without CONSUMER_NAME
    return f"{socket.gethostname()}-{pid}" in {as_text(c["name"]) for c in consumers}


async def _dead_letters(settings: Settings) -> int:
    client = Redis.from_url(settings.redis_dsn())
    try:
        return int(await client.xlen(settings.dead_letter_stream))
    finally:
        await client.aclose()


@dataclass(frozen=True)
class _Proof:
    drift: dict[str, int]
    unfinished: int
    pending: int
    dead_letters: int
    bad_rows: int
    bad_entries: int


async def _prove(settings: Settings) -> _Proof:
    """Drift per verdict, jobs not ended, entries pending, dead letters, bad payloads recorded."""
    pool = await create_pool(settings)
    redis = Redis.from_url(settings.redis_dsn())
    store = build_vector_store(settings)
    try:
        report = await Auditor(pool=pool, redis=redis, store=store, settings=settings).run()
        unfinished = await pool.fetchval(
            "SELECT count(*) FROM index_jobs WHERE status IN ('pending', 'running')"
        )
        bad = await pool.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT (stream, entry_id)) AS entries FROM failed_operations"
            " WHERE operation_type = 'job'"
        )
        assert bad is not None
        pending = 0
        for pair in work_groups(settings):
            with contextlib.suppress(Exception):  # a stream or group that does not exist holds nothing
                pending += int((await redis.xpending(pair.stream, pair.group))["pending"])
        dead = int(await redis.xlen(settings.dead_letter_stream))
    finally:
        await store.aclose()
        await redis.aclose()
        await pool.close()
    drift = {verdict: n for verdict, n in report["counts"].items() if verdict != "ok" and n}
    if report.get("error"):
        drift["audit failed"] = 1
    return _Proof(drift, int(unfinished), pending, dead, int(bad["n"]), int(bad["entries"]))


# --- set-up --------------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _servers(folder: Path) -> AsyncIterator[tuple[RedisServer, PostgresServer]]:
    redis_server = RedisServer(folder / "redis")
    postgres = PostgresServer(folder / "postgres", database="faults", durable=False)
    await asyncio.to_thread(redis_server.start)
    try:
        await asyncio.to_thread(postgres.start)
        try:
            yield redis_server, postgres
        finally:
            await asyncio.to_thread(postgres.stop)
    finally:
        await asyncio.to_thread(redis_server.stop)


@contextlib.asynccontextmanager
async def _embeddings(embedder: str, latency: float) -> AsyncIterator[FakeOpenAI | None]:
    if embedder != "openai":
        yield None
        return
    async with FakeOpenAI() as fake:
        fake.latency = latency
        yield fake


@contextlib.asynccontextmanager
async def _disk(path: Path, *, enabled: bool) -> AsyncIterator[None]:
    """A filesystem of its own (tmpfs, :data:`STORE_DISK_BYTES`) at ``path`` when ``enabled``."""
    if not enabled:
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        yield
        return
    async with tmpfs(path, size=STORE_DISK_BYTES):
        yield


def _settings(scale: Scale, redis_url: str, dsn: str, qdrant: Path, fake: FakeOpenAI | None) -> Settings:
    embedding: dict[str, Any] = {"embedder": "hashing"}
    if fake is not None:
        embedding = {
            "embedder": "openai", "openai_api_key": SecretStr("sk-fake-faults"),
            "openai_base_url": fake.base_url, "embedding_model": "text-embedding-3-small",
        }  # fmt: skip
    return load_settings(
        database_url=dsn, redis_url=redis_url, postgres_schema=SCHEMA, vector_store="edge",
        qdrant_path=qdrant, vector_size=64, batch_size=scale.batch_size,
        reclaim_idle_ms=scale.reclaim_idle_ms, max_deliveries=scale.max_deliveries,
        legacy_payload_max_bytes=PAYLOAD_MAX_BYTES, audit_interval_s=0, metrics_port=0,
        worker_concurrency=2, log_level="WARNING", **embedding,
    )  # fmt: skip


async def _load(settings: Settings, listings: int) -> None:
    await asyncio.to_thread(upgrade, settings.postgres_dsn(), schema=SCHEMA)
    pool = await create_pool(settings)
    try:
        await ensure_dev_products(pool)
        await pool.execute(_INSERT, listings)
    finally:
        await pool.close()
