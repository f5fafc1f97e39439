"""Jobs put on the jobs stream from outside the legacy list: API syncs and re-queued failures.

:func:`enqueue_job` records the job's ``index_jobs`` row, then appends its entry: the payload is the
legacy JSON shape (so the planner reads every job the same way) plus the extras ``job_id``,
``scope`` and ``force``; the entry carries the job's received time (a delete's version).

:func:`requeue_failures` selects open failures, and in one transaction records retry jobs for the
listings (one per operation; deletes also per received time, which they keep), marks the rows
re-queued and marks the rows it cannot replay (``operation_type = 'batch'``: an unreadable batch
entry) discarded — on the one connection whose transaction holds the rows locked, so concurrent
calls never wait for a second connection from the same pool. Only after the commit does it append
the retry jobs and the malformed raw jobs (byte for byte) to the jobs stream
(:func:`append_requeued`): a failure before the commit appends nothing, and what a failure after
it left unappended (a job row without ``stream_entry_id``, a raw row without ``replay_entry_id``)
is appended by the next ``POST /retry`` or a worker's housekeeping. A crash between an append and
its record can append one twice: at least once, never lost.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
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

__all__ = ["JOB_ROW", "Appended", "append_job", "append_requeued", "enqueue_job", "requeue_failures"]

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
    return as_text(await redis.xadd(jobs_stream, _entry_of(job).to_fields()))  # type: ignore[arg-type]


def _entry_of(job: Job) -> JobEntry:
    """The jobs-stream entry of ``job``."""
    payload = json.dumps(job.to_payload(), separators=(",", ":")).encode()
    entry = JobEntry(payload=payload, source=job.source)
    if job.received_at is not None:  # a re-published or retried job keeps when it was received
        entry = entry.model_copy(update={"received_ms": int(job.received_at.timestamp() * 1000)})
    return entry


async def requeue_failures(
    pool: asyncpg.Pool[Any], redis: Redis, *, jobs_stream: str, flt: FailureFilter, limit: int
) -> RetryResult:
    """Select, record and mark the rows in one transaction (rows stay locked until marked), then
    append after the commit what is recorded and not appended yet (this call's, and whatever an
    earlier call's failure left)."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await failures.lock_open_failures(conn, flt, limit=limit)
        listings = [r for r in rows if r.operation_type != JOB_ROW and r.product_id is not None]
        raw = [r for r in rows if r.operation_type == JOB_ROW and r.payload is not None]
        retries = _retry_jobs(listings)
        for job in retries:
            await jobs.insert_job(conn, job)
        done = [r.id for r in listings + raw]
        await failures.mark_requeued(conn, done)
        # Nothing to replay (an unreadable batch entry, a row with neither listing nor payload):
        # left open, such rows would fill every later selection and block {"all": true} for good.
        handled = set(done)
        discarded = [r.id for r in rows if r.id not in handled]
        await failures.mark_discarded(conn, discarded)
    # a concurrent call may append some of this call's work first (each row is appended once,
    # under its lock), so the answer names what this call queued, not what it appended
    await append_requeued(pool, redis, jobs_stream=jobs_stream)
    job_ids = [j.job_id for j in retries]
    log.info(
        "failures_requeued", rows=len(done), jobs=len(retries), replayed=len(raw), discarded=len(discarded),
        job_ids=job_ids,
    )  # fmt: skip
    return RetryResult(
        requeued=len(done), job_ids=job_ids, replayed_payloads=len(raw), discarded=len(discarded)
    )


@dataclass(frozen=True, slots=True)
class Appended:
    """What :func:`append_requeued` appended to the jobs stream."""

    job_ids: list[str]
    payloads: int


async def append_requeued(pool: asyncpg.Pool[Any], redis: Redis, *, jobs_stream: str) -> Appended:
    """Append the retry jobs and re-queued raw payloads recorded but not appended yet, in one
    Redis round trip; the entry ids are recorded in the transaction that holds their rows locked.

    A Redis failure raises :class:`DependencyUnavailable` and rolls the records back: what was
    not recorded is appended again by the next call (at least once).
    """
    try:
        async with pool.acquire() as conn, conn.transaction():
            retries = await jobs.lock_unqueued_retries(conn)
            replays = await failures.lock_unreplayed(conn)
            if not retries and not replays:
                return Appended([], 0)
            async with redis.pipeline(transaction=False) as pipe:
                for job in retries:
                    pipe.xadd(jobs_stream, _entry_of(job).to_fields())  # type: ignore[arg-type]
                for _, payload in replays:
                    # A replayed raw job is the scraper's job again, byte for byte: it enters as a
                    # legacy entry, so the planner keys it on its new stream entry id (a producer
                    # job_id inside cannot collide with the job row of its first attempt).
                    pipe.xadd(jobs_stream, JobEntry(payload=payload, source=JobSource.LEGACY).to_fields())  # type: ignore[arg-type]
                entry_ids = [as_text(entry_id) for entry_id in await pipe.execute()]
            job_entries = entry_ids[: len(retries)]
            await jobs.set_stream_entries(
                conn, [(j.job_id, e) for j, e in zip(retries, job_entries, strict=True)]
            )
            replay_entries = entry_ids[len(retries) :]
            await failures.set_replay_entries(
                conn, [(failure_id, e) for (failure_id, _), e in zip(replays, replay_entries, strict=True)]
            )
    except RedisError as exc:
        raise DependencyUnavailable(f"redis: {redact(repr(exc))}") from exc
    done_jobs = [j.job_id for j in retries]
    log.info("requeued_work_appended", jobs=done_jobs, payloads=len(replays))
    return Appended(done_jobs, len(replays))


def _retry_jobs(rows: Sequence[RetryCandidate]) -> list[Job]:
    """The failed listings as retry jobs: one per operation (and per ``MAX_IDS_PER_JOB`` ids);
    deletes also per received time, which their job keeps (their version: see ``db/jobs.py``)."""
    groups: dict[tuple[Operation, datetime | None], list[int]] = defaultdict(list)
    for row in rows:
        if row.product_id is not None:
            operation = _operation(row.operation_type)
            received = row.received_at if operation is Operation.DELETE else None
            groups[operation, received].append(row.product_id)
    return [
        Job.build(
            source=JobSource.RETRY, operation=operation, product_ids=chunk, scope="ids", requested_by="retry"
        ).model_copy(update={"received_at": received})
        for (operation, received), ids in sorted(groups.items(), key=_group_order)
        for chunk in _chunks(list(dict.fromkeys(ids)), MAX_IDS_PER_JOB)
    ]


def _group_order(item: tuple[tuple[Operation, datetime | None], list[int]]) -> tuple[str, float]:
    (operation, received), _ = item
    return operation.value, received.timestamp() if received is not None else 0.0


def _operation(operation_type: str) -> Operation:
    """The row's operation; anything else about a listing is re-synchronised (sync reconciles)."""
    return Operation(operation_type) if operation_type in {o.value for o in Operation} else Operation.SYNC


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
