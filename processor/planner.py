"""The planner: validates each job of the jobs stream and expands it into batches for the indexer.

Valid jobs are recorded in ``index_jobs`` and planned into ``index_job_batches`` in one
transaction, with their events in the outbox; then every batch is published to the batch stream
and the outbox relayed (``processor/outbox.py``). Planning is idempotent: a
redelivered job finds its plan in PostgreSQL and re-publishes the batches still pending (the
indexer counts each batch once). Malformed jobs go to the dead letters, never lost, never fatal.

Job ids come from :func:`~finally_indexer.schemas.jobs.job_id_for` (through
:func:`~finally_indexer.schemas.legacy.job_from_payload`): a legacy job is its jobs-stream entry
id, an API or retry job the id under which its row was inserted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import structlog
from redis.asyncio import Redis

from finally_indexer.core.errors import MalformedJob
from finally_indexer.core.metrics import BATCHES_PLANNED, JOBS_ACCEPTED
from finally_indexer.core.streams import StreamEntry
from finally_indexer.db import jobs, products
from finally_indexer.db.pool import DB
from finally_indexer.processor.deadletter import DeadLetters
from finally_indexer.processor.events import EventLog
from finally_indexer.processor.outbox import relay_soon, stage
from finally_indexer.schemas.jobs import Job, Operation
from finally_indexer.schemas.legacy import MalformedReason
from finally_indexer.schemas.messages import BatchMessage, Event, EventType, read_job

__all__ = ["Planner"]

log = structlog.get_logger(__name__)

#: Ids read per keyset page while planning "all"/"changed": 30k listings in three queries.
SCAN_PAGE: Final = 10_000

_Scan = Callable[..., Awaitable[list[int]]]


class Planner:
    """Turns job entries into planned batches on the batch stream."""

    def __init__(
        self, *, redis: Redis, pool: asyncpg.Pool[Any], events: EventLog, dead_letters: DeadLetters,
        batch_stream: str, batch_size: int, max_payload_bytes: int | None = None,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._pool = pool
        self._events = events
        self._dead = dead_letters
        self._batch_stream = batch_stream
        self._batch_size = batch_size
        self._max_payload_bytes = max_payload_bytes

    async def handle(self, entry: StreamEntry) -> None:
        """Plan one job entry (or dead-letter it). Raises only transient failures (entry stays pending)."""
        try:
            job_entry, row = read_job(entry.fields, entry.entry_id, max_bytes=self._max_payload_bytes)
        except MalformedJob as exc:
            await self._dead.malformed_job(entry, exc)
            return
        if row.received_at is None and job_entry.received_ms:  # a legacy job: the bridge's clock
            row = row.model_copy(
                update={"received_at": datetime.fromtimestamp(job_entry.received_ms / 1000, UTC)}
            )
        try:
            batches, first_time = await self._plan(row, entry.entry_id)
        except asyncpg.DataError as exc:  # a value of the job PostgreSQL refuses: the input's fault
            await self._dead.malformed_job(entry, MalformedJob(MalformedReason.INVALID, f"refused: {exc}"))
            return
        await self.publish(row.job_id, row.operation, row.force, batches, received_ms=job_entry.received_ms)
        await self._report(row, batches, first_time)

    async def _plan(self, row: Job, entry_id: str) -> tuple[list[tuple[int, list[int]]], bool]:
        """The job's batches (new plan, or the pending ones of an existing plan) and whether it is new.

        The plan's events go to the outbox in the same transaction (relayed after the publish).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await jobs.insert_job(conn, row, stream_entry_id=entry_id)
            locked = await jobs.lock_job(conn, row.job_id)
            first_time = locked is None or locked["planned_at"] is None
            if first_time:
                ids = row.product_ids if row.product_ids is not None else await _scan_scope(conn, row.scope)
                chunks = [ids[i : i + self._batch_size] for i in range(0, len(ids), self._batch_size)]
                await jobs.insert_batches(conn, row.job_id, row.operation.value, chunks)
                await jobs.mark_planned(conn, row.job_id, total=len(ids), batches=len(chunks))
                batches = list(enumerate(chunks))
            else:
                batches = await jobs.pending_batches(conn, row.job_id)
            await stage(conn, _events_of(row, batches, first_time))
        return batches, first_time

    async def publish(
        self, job_id: str, operation: Operation, force: bool, batches: Sequence[tuple[int, list[int]]], *,
        received_ms: int,
    ) -> None:  # fmt: skip
        """Append the job's ``(seq, product_ids)`` batches to the batch stream (one round trip)."""
        pipe = self._redis.pipeline(transaction=False)
        for seq, ids in batches:
            message = BatchMessage(
                job_id=job_id, seq=seq, operation=operation, product_ids=ids,
                force=force, received_ms=received_ms,
            )  # fmt: skip
            pipe.xadd(self._batch_stream, message.to_fields())  # type: ignore[arg-type]
        await pipe.execute()
        BATCHES_PLANNED.inc(len(batches))

    async def _report(self, row: Job, batches: Sequence[tuple[int, list[int]]], first_time: bool) -> None:
        await relay_soon(self._pool, self._events)
        if first_time:
            JOBS_ACCEPTED.labels(source=row.source.value, operation=row.operation.value).inc()
        log.info(
            "job_planned",
            job_id=row.job_id,
            scope=row.scope,
            total=sum(len(ids) for _, ids in batches),
            batches=len(batches),
            replan=not first_time,
        )


def _events_of(row: Job, batches: Sequence[tuple[int, list[int]]], first_time: bool) -> list[Event]:
    """job_planned; on the first plan job_accepted before it, and job_completed when it has no batch."""
    counts = {"total": sum(len(ids) for _, ids in batches), "batches": len(batches)}
    events = [Event(type=EventType.JOB_PLANNED, job_id=row.job_id, counts=counts)]
    if first_time:
        events.insert(0, Event(type=EventType.JOB_ACCEPTED, job_id=row.job_id, reason=row.scope))
        if not batches:
            events.append(Event(type=EventType.JOB_COMPLETED, job_id=row.job_id, counts=counts))
    return events


async def _scan_scope(conn: DB, scope: str) -> list[int]:
    """Every id a job of ``scope`` covers: listings (all, or changed ones), then orphaned index rows."""
    listings = products.scan_changed_ids if scope == "changed" else products.scan_ids
    return await _scan_all(listings, conn) + await _scan_all(products.scan_orphan_ids, conn)


async def _scan_all(scan: _Scan, conn: DB) -> list[int]:
    ids: list[int] = []
    while page := await scan(conn, after=ids[-1] if ids else 0, limit=SCAN_PAGE):
        ids.extend(page)
    return ids
