"""The roles a process can play (bridge, worker, all-in-one) and the pipeline they share.

:class:`Pipeline` owns the connections and the components, built once from the settings and
passed down by constructor. A worker runs the FastStream subscribers until ``stop``;
:meth:`Pipeline.drain` instead processes everything currently queued and returns — the
deterministic mode tests and benchmarks use (like arq's ``burst``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import structlog
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from finally_indexer.core.constants import INDEXER_GROUP, PLANNER_GROUP
from finally_indexer.core.settings import Settings
from finally_indexer.processor.bridge import Bridge
from finally_indexer.processor.broker import build_broker, consumer_name, ensure_groups
from finally_indexer.processor.deadletter import DeadLetters, StreamEntry
from finally_indexer.processor.embedding import Embedder
from finally_indexer.processor.events import EventLog
from finally_indexer.processor.housekeeping import run_housekeeping
from finally_indexer.processor.indexer import Indexer
from finally_indexer.processor.planner import Planner
from finally_indexer.processor.reclaim import LastErrors, Redelivery, claim_idle
from finally_indexer.processor.vectorstore import VectorStore

__all__ = ["DrainReport", "Pipeline", "run_all", "run_bridge", "run_worker", "serve_worker"]

log = structlog.get_logger(__name__)

#: Entries read per XREADGROUP in drain mode (a few batches' worth per round trip).
DRAIN_READ: Final = 64
#: Seconds between checks while drain mode waits for pending entries to become reclaimable.
DRAIN_POLL_S: Final = 0.05

_Handler = Callable[[Sequence[StreamEntry]], Awaitable[list[str]]]


@dataclass(slots=True)
class DrainReport:
    """What one :meth:`Pipeline.drain` did."""

    bridged: int = 0
    jobs: int = 0
    batches: int = 0
    reclaimed: int = 0


@dataclass(slots=True)
class Pipeline:
    """The connections and components of the stream side, wired together."""

    settings: Settings
    redis: Redis
    pool: asyncpg.Pool[Any]
    store: VectorStore
    embedder: Embedder
    events: EventLog
    dead_letters: DeadLetters
    bridge: Bridge
    planner: Planner
    indexer: Indexer
    reclaim_jobs: Redelivery
    reclaim_batches: Redelivery
    _owned: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    @classmethod
    async def open(
        cls, settings: Settings, *, redis: Redis | None = None, pool: asyncpg.Pool[Any] | None = None,
        store: VectorStore | None = None, embedder: Embedder | None = None,
    ) -> Pipeline:  # fmt: skip
        """Connect what is not given, create the groups and the collection, wire the components."""
        owned: list[Callable[[], Awaitable[Any]]] = []
        if redis is None:
            redis = Redis.from_url(settings.redis_dsn())
            owned.append(redis.aclose)
        if pool is None:
            from finally_indexer.db.pool import create_pool  # noqa: PLC0415

            pool = await create_pool(settings)
            owned.append(pool.close)
        store, embedder = _vectors(settings, store, embedder, owned)
        await store.ensure_collection()
        await ensure_groups(redis, settings)
        return cls._wire(settings, redis=redis, pool=pool, store=store, embedder=embedder, owned=owned)

    @classmethod
    def _wire(
        cls, settings: Settings, *, redis: Redis, pool: asyncpg.Pool[Any], store: VectorStore, embedder: Embedder,
        owned: list[Callable[[], Awaitable[Any]]],
    ) -> Pipeline:  # fmt: skip
        events = EventLog(redis, settings.events_stream)
        dead = DeadLetters(redis, pool, events, stream=settings.dead_letter_stream)
        planner = Planner(
            redis=redis, pool=pool, events=events, dead_letters=dead,
            batch_stream=settings.batch_stream, batch_size=settings.batch_size,
        )  # fmt: skip
        indexer = Indexer(
            pool=pool, store=store, embedder=embedder, events=events, dead_letters=dead,
            text_template=settings.text_template, concurrency=settings.worker_concurrency,
        )  # fmt: skip
        errors = LastErrors()
        reclaim_jobs = Redelivery(
            stream=settings.jobs_stream, max_deliveries=settings.max_deliveries,
            process=lambda e, _n: planner.handle(e), give_up=dead.exhausted_job, errors=errors,
        )  # fmt: skip
        reclaim_batches = Redelivery(
            stream=settings.batch_stream, max_deliveries=settings.max_deliveries,
            process=lambda e, n: indexer.handle(e, deliveries=n), give_up=dead.exhausted_batch, errors=errors,
        )  # fmt: skip
        bridge = Bridge(redis, list_key=settings.legacy_list, stream_key=settings.jobs_stream)
        return cls(
            settings, redis, pool, store, embedder, events, dead, bridge, planner, indexer,
            reclaim_jobs, reclaim_batches, owned,
        )  # fmt: skip

    def broker(self) -> RedisBroker:
        """A FastStream broker running this pipeline's planner, indexer and reclaimers."""
        return build_broker(
            self.settings, redis=self.redis, planner=self.planner, indexer=self.indexer,
            reclaim_jobs=self.reclaim_jobs, reclaim_batches=self.reclaim_batches,
        )  # fmt: skip

    async def aclose(self) -> None:
        """Close what :meth:`open` opened (given connections are left to their owner)."""
        for close in reversed(self._owned):
            with contextlib.suppress(Exception):
                await close()
        self._owned.clear()

    # --- drain mode -----------------------------------------------------------------------------
    async def drain(self, *, timeout_s: float = 60.0) -> DrainReport:
        """Process everything queued (list, streams, pending entries once reclaimable) and return.

        Returns when the legacy list is empty and both groups have nothing undelivered or pending;
        entries that keep failing transiently are dead-lettered after ``MAX_DELIVERIES``. Entries
        failing on a misconfiguration are never dead-lettered (they wait for the fix), so then this
        raises ``TimeoutError`` after ``timeout_s``, as it does for anything else that never idles.
        Drain mode has no heartbeat: keep ``RECLAIM_IDLE_MS`` above the slowest batch here.
        """
        report = DrainReport()
        deadline = time.monotonic() + timeout_s
        while True:
            if not await self._drain_round(report) and await self._idle():
                return report
            if time.monotonic() > deadline:
                raise TimeoutError(f"pipeline not idle after {timeout_s}s: {report}")
            await asyncio.sleep(DRAIN_POLL_S)

    async def _drain_round(self, report: DrainReport) -> int:
        """One pass over every source; the number of entries handled."""
        s = self.settings
        report.bridged += await self.bridge.drain()
        jobs = await self._read_new(s.jobs_stream, PLANNER_GROUP, self._plan_entries)
        batches = await self._read_new(s.batch_stream, INDEXER_GROUP, self._index_entries)
        reclaimed = await self._reclaim(s.jobs_stream, PLANNER_GROUP, self.reclaim_jobs)
        reclaimed += await self._reclaim(s.batch_stream, INDEXER_GROUP, self.reclaim_batches)
        report.jobs, report.batches, report.reclaimed = (
            report.jobs + jobs,
            report.batches + batches,
            report.reclaimed + reclaimed,
        )
        return jobs + batches + reclaimed

    async def _read_new(self, stream: str, group: str, handler: _Handler) -> int:
        consumer = consumer_name(self.settings)
        total = 0
        while reply := await self.redis.xreadgroup(group, consumer, {stream: ">"}, count=DRAIN_READ):
            entries = _stream_entries(stream, reply)
            done = await handler(entries)
            if done:
                await self.redis.xack(stream, group, *done)
            total += len(entries)
        return total

    async def _plan_entries(self, entries: Sequence[StreamEntry]) -> list[str]:
        done = []
        for entry in entries:
            try:
                await self.planner.handle(entry)
                done.append(entry.entry_id)
            except Exception:
                log.exception("job_failed", entry_id=entry.entry_id)
        return done

    async def _index_entries(self, entries: Sequence[StreamEntry]) -> list[str]:
        done, _ = await self.indexer.handle_many(entries)
        return done

    async def _reclaim(self, stream: str, group: str, redelivery: Redelivery) -> int:
        claimed = await claim_idle(
            self.redis, stream=stream, group=group, consumer=consumer_name(self.settings),
            min_idle_ms=self.settings.reclaim_idle_ms,
        )  # fmt: skip
        for entry, deliveries in claimed:
            try:
                await redelivery.handle(entry, deliveries)
            except Exception:
                log.exception("redelivery_failed", entry_id=entry.entry_id)
                continue
            await self.redis.xack(stream, group, entry.entry_id)
        return len(claimed)

    async def _idle(self) -> bool:
        s = self.settings
        if await self.redis.llen(s.legacy_list):
            return False
        for stream, group in ((s.jobs_stream, PLANNER_GROUP), (s.batch_stream, INDEXER_GROUP)):
            info = await self.redis.xpending(stream, group)
            if info["pending"]:
                return False
        return True


def _stream_entries(stream: str, reply: Any) -> list[StreamEntry]:
    """The entries of an XREADGROUP reply on one stream (RESP2: ``[[name, [(id, fields), ...]]]``)."""
    return [StreamEntry(stream, i.decode(), dict(f)) for i, f in reply[0][1]]


def _vectors(
    settings: Settings,
    store: VectorStore | None,
    embedder: Embedder | None,
    owned: list[Callable[[], Awaitable[Any]]],
) -> tuple[VectorStore, Embedder]:
    if store is None:
        from finally_indexer.processor.stores.factory import build_vector_store  # noqa: PLC0415

        store = build_vector_store(settings)
        owned.append(store.aclose)
    if embedder is None:
        from finally_indexer.processor.embedders.factory import build_embedder  # noqa: PLC0415

        embedder = build_embedder(settings)
        owned.append(embedder.aclose)
    return store, embedder


# --- roles ----------------------------------------------------------------------------------------
async def serve_worker(pipeline: Pipeline, *, stop: asyncio.Event) -> None:
    """Run the planner, indexer and reclaimers until ``stop``; in-flight work finishes or is released."""
    broker = pipeline.broker()
    await broker.start()
    consumer = consumer_name(pipeline.settings)
    log.info("worker_started", consumer=consumer)
    try:
        await run_housekeeping(pipeline.redis, pipeline.settings, consumer=consumer, stop=stop)
    finally:
        # Stops reading, waits up to SHUTDOWN_GRACE_S for handlers, cancels the rest (left pending).
        await broker.stop()
        log.info("worker_stopped")


async def run_bridge(settings: Settings, *, stop: asyncio.Event) -> None:
    """The bridge role: move legacy jobs onto the jobs stream until ``stop``."""
    redis = Redis.from_url(settings.redis_dsn())
    try:
        async with _metrics_endpoint(settings, with_db=False):
            await Bridge(redis, list_key=settings.legacy_list, stream_key=settings.jobs_stream).run(stop)
    finally:
        await redis.aclose()


async def run_worker(settings: Settings, *, stop: asyncio.Event) -> None:
    """The worker role: planner + indexer + reclaimers until ``stop``."""
    pipeline = await Pipeline.open(settings)
    try:
        async with _metrics_endpoint(settings):
            await serve_worker(pipeline, stop=stop)
    finally:
        await pipeline.aclose()


@contextlib.asynccontextmanager
async def _metrics_endpoint(settings: Settings, *, with_db: bool = True) -> AsyncIterator[None]:
    """This process's own ``/metrics`` on ``METRICS_PORT`` (none when it is 0): counters are per process."""
    from finally_indexer.http.metrics import start_metrics_server  # noqa: PLC0415

    server = await start_metrics_server(settings, with_db=with_db)
    try:
        yield
    finally:
        if server is not None:
            await server.aclose()


async def run_all(settings: Settings, *, stop: asyncio.Event) -> None:
    """Bridge, worker and the HTTP API in one process until ``stop``."""
    try:
        from finally_indexer.http.deps import AppDeps  # noqa: PLC0415
        from finally_indexer.http.server import serve_api  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeError(f"run_all needs the HTTP API (finally_indexer.http.server): {exc}") from exc
    pipeline = await Pipeline.open(settings)
    # The API shares the pipeline's connections: an in-process store (edge, local path) has one opener.
    deps = AppDeps(pool=pipeline.pool, redis=pipeline.redis, store=pipeline.store)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(pipeline.bridge.run(stop))
            tasks.create_task(serve_worker(pipeline, stop=stop))
            tasks.create_task(serve_api(settings, stop=stop, deps=deps))
    finally:
        await pipeline.aclose()
