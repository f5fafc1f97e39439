"""Re-queue open failures: listings as retry jobs grouped by operation, malformed jobs byte for byte."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import structlog

from finally_indexer.core.constants import MAX_IDS_PER_JOB
from finally_indexer.core.settings import Settings
from finally_indexer.db import retries
from finally_indexer.db.reports import FailureFilter
from finally_indexer.http.deps import AppDeps
from finally_indexer.http.enqueue import enqueue_job
from finally_indexer.schemas.api import RetryResult
from finally_indexer.schemas.legacy import Operation
from finally_indexer.schemas.messages import JobEntry, JobSource

log = structlog.get_logger(__name__)

#: ``failed_operations.operation_type`` of a malformed job (no listing, a raw payload).
JOB_ROW = "job"


async def requeue(deps: AppDeps, settings: Settings, flt: FailureFilter, *, limit: int) -> RetryResult:
    """Select, re-queue and mark the rows in one transaction (rows stay locked until marked)."""
    async with deps.pool.acquire() as conn, conn.transaction():
        rows = await retries.lock_open_failures(conn, flt, limit=limit)
        listings = [r for r in rows if r.operation_type != JOB_ROW and r.product_id is not None]
        raw = [r for r in rows if r.operation_type == JOB_ROW and r.payload is not None]
        job_ids = await _requeue_listings(deps, settings, listings)
        await _replay_payloads(deps, settings, [r.payload for r in raw if r.payload is not None])
        done = [r.id for r in listings + raw]
        await retries.mark_requeued(conn, done)
    log.info("failures_requeued", rows=len(done), jobs=len(job_ids), replayed=len(raw), job_ids=job_ids)
    return RetryResult(requeued=len(done), job_ids=job_ids, replayed_payloads=len(raw))


async def _requeue_listings(
    deps: AppDeps, settings: Settings, rows: Sequence[retries.RetryCandidate]
) -> list[str]:
    by_operation: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row.product_id is not None:
            by_operation[_operation(row.operation_type)].append(row.product_id)
    chunks = [
        (operation, chunk)
        for operation, ids in sorted(by_operation.items())
        for chunk in _chunks(list(dict.fromkeys(ids)), MAX_IDS_PER_JOB)
    ]
    return [
        await enqueue_job(
            deps,
            settings,
            operation=operation,
            product_ids=chunk,
            scope="ids",
            force=False,
            source=JobSource.RETRY,
            requested_by="retry",
        )
        for operation, chunk in chunks
    ]


async def _replay_payloads(deps: AppDeps, settings: Settings, payloads: Sequence[bytes]) -> None:
    if not payloads:
        return
    async with deps.redis.pipeline(transaction=False) as pipe:
        for payload in payloads:
            # A replayed raw job is the scraper's job again, byte for byte: it enters as a legacy
            # entry, so the planner keys it on its new stream entry id (a producer job_id inside
            # cannot collide with the job row of its first attempt).
            pipe.xadd(settings.jobs_stream, JobEntry(payload=payload, source=JobSource.LEGACY).to_fields())  # type: ignore[arg-type]
        await pipe.execute()


def _operation(operation_type: str) -> str:
    """The row's operation; anything else about a listing is re-synchronised (sync reconciles)."""
    return operation_type if operation_type in {o.value for o in Operation} else Operation.SYNC.value


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
