"""Jobs put on the jobs stream from outside the legacy list: API syncs and re-queued failures.

:func:`enqueue_job` records the job's ``index_jobs`` row, then appends its entry: the payload is the
legacy JSON shape (so the planner reads every job the same way) plus the extras ``job_id``,
``scope`` and ``force``. :func:`requeue_failures` selects open failures, re-queues listings as
retry jobs (one per operation) and malformed raw jobs byte for byte, marks the rows handled, and
marks the rows it cannot replay (``operation_type = 'batch'``: an unreadable batch entry) discarded —
all on the one connection whose transaction holds the rows locked, so concurrent calls never wait
for a second connection from the same pool.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from finally_indexer.core.constants import MAX_IDS_PER_JOB
from finally_indexer.core.errors import DependencyUnavailable, redact
from finally_indexer.core.streams import as_text
from finally_indexer.db import failures, jobs
from finally_indexer.db.failures import FailureFilter, RetryCandidate
from finally_indexer.db.pool import DB
from finally_indexer.schemas.api import RetryResult
from finally_indexer.schemas.jobs import Job, JobSource, Operation
from finally_indexer.schemas.messages import JobEntry

__all__ = ["JOB_ROW", "append_job", "enqueue_job", "requeue_failures"]

log = structlog.get_logger(__name__)

#: ``failed_operations.operation_type`` of a malformed job (no listing, a raw payload).
JOB_ROW = "job"


async def enqueue_job(db: DB, redis: Redis, *, jobs_stream: str, job: Job) -> str:
    """Record and queue ``job``; return its id. A Redis failure marks the row failed and raises.

    Inside a caller's transaction (``db`` a connection) the row commits with the caller's work.
    """
    await jobs.insert_job(db, job)
    try:
        entry_id = await append_job(redis, jobs_stream, job)
    except RedisError as exc:
        await jobs.fail_job(db, job.job_id, redact(f"could not queue: {exc!r}"))
        raise DependencyUnavailable(f"redis: {exc!r}") from exc
    await jobs.set_stream_entry(db, job.job_id, entry_id)
    log.info(
        "job_queued", job_id=job.job_id, source=job.source.value, operation=job.operation.value,
        scope=job.scope, entry_id=entry_id,
    )  # fmt: skip
    return job.job_id


async def append_job(redis: Redis, jobs_stream: str, job: Job) -> str:
    """Append ``job``'s entry to the jobs stream (its row must exist); return the entry id."""
    payload = json.dumps(job.to_payload(), separators=(",", ":")).encode()
    entry = JobEntry(payload=payload, source=job.source)
    return as_text(await redis.xadd(jobs_stream, entry.to_fields()))  # type: ignore[arg-type]


async def requeue_failures(
    pool: asyncpg.Pool[Any], redis: Redis, *, jobs_stream: str, flt: FailureFilter, limit: int
) -> RetryResult:
    """Select, re-queue and mark the rows in one transaction (rows stay locked until marked)."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await failures.lock_open_failures(conn, flt, limit=limit)
        listings = [r for r in rows if r.operation_type != JOB_ROW and r.product_id is not None]
        raw = [r for r in rows if r.operation_type == JOB_ROW and r.payload is not None]
        job_ids = [
            await enqueue_job(conn, redis, jobs_stream=jobs_stream, job=job) for job in _retry_jobs(listings)
        ]
        await _replay_payloads(redis, jobs_stream, [r.payload for r in raw if r.payload is not None])
        done = [r.id for r in listings + raw]
        await failures.mark_requeued(conn, done)
        # Nothing to replay (an unreadable batch entry, a row with neither listing nor payload):
        # left open, such rows would fill every later selection and block {"all": true} for good.
        handled = set(done)
        discarded = [r.id for r in rows if r.id not in handled]
        await failures.mark_discarded(conn, discarded)
    log.info(
        "failures_requeued", rows=len(done), jobs=len(job_ids), replayed=len(raw), discarded=len(discarded),
        job_ids=job_ids,
    )  # fmt: skip
    return RetryResult(
        requeued=len(done), job_ids=job_ids, replayed_payloads=len(raw), discarded=len(discarded)
    )


def _retry_jobs(rows: Sequence[RetryCandidate]) -> list[Job]:
    """The failed listings as retry jobs: one per operation (and per ``MAX_IDS_PER_JOB`` ids)."""
    by_operation: dict[Operation, list[int]] = defaultdict(list)
    for row in rows:
        if row.product_id is not None:
            by_operation[_operation(row.operation_type)].append(row.product_id)
    return [
        Job.build(
            source=JobSource.RETRY, operation=operation, product_ids=chunk, scope="ids", requested_by="retry"
        )
        for operation, ids in sorted(by_operation.items())
        for chunk in _chunks(list(dict.fromkeys(ids)), MAX_IDS_PER_JOB)
    ]


async def _replay_payloads(redis: Redis, jobs_stream: str, payloads: Sequence[bytes]) -> None:
    if not payloads:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for payload in payloads:
            # A replayed raw job is the scraper's job again, byte for byte: it enters as a legacy
            # entry, so the planner keys it on its new stream entry id (a producer job_id inside
            # cannot collide with the job row of its first attempt).
            pipe.xadd(jobs_stream, JobEntry(payload=payload, source=JobSource.LEGACY).to_fields())  # type: ignore[arg-type]
        await pipe.execute()


def _operation(operation_type: str) -> Operation:
    """The row's operation; anything else about a listing is re-synchronised (sync reconciles)."""
    return Operation(operation_type) if operation_type in {o.value for o in Operation} else Operation.SYNC


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
