"""Every write to ``index_jobs`` and ``index_job_batches``: queueing, planning, progress, completion.

A job queued by the API gets its row *before* its stream entry exists (``GET /jobs/{id}`` answers
from the first millisecond); the planner inserts the rows of legacy jobs, and fills in the plan of
every job. A batch counts toward its job once: its row leaves ``pending`` once
(``WHERE status = 'pending'``), however often its message is delivered. A job finishes when none
of its batches is pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from finally_indexer.db.pool import DB
from finally_indexer.schemas.jobs import Job

__all__ = [
    "BatchCounts",
    "BatchUsage",
    "complete_batch",
    "fail_batch",
    "fail_job",
    "finish_job_if_done",
    "insert_batches",
    "insert_job",
    "lock_job",
    "lock_unqueued_retries",
    "mark_planned",
    "pending_batches",
    "prune_finished",
    "set_stream_entries",
    "set_stream_entry",
    "unfinished_batches",
    "unplanned_jobs",
]


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """What happened to the listings of one batch."""

    indexed: int = 0
    skipped: int = 0
    deleted: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class BatchUsage:
    """What the embedding calls of one batch used: tokens billed, requests, US dollars, the model."""

    tokens: int = 0
    requests: int = 0
    usd: float = 0.0
    model: str | None = None


# ``total`` is known at once for a list of ids; the planner sets it for "all".
_INSERT_JOB = """
INSERT INTO index_jobs (
    job_id, operation, scope, product_ids, force, source, requested_by, stream_entry_id, external_id, total,
    received_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce(cardinality($4::bigint[]), 0), coalesce($10, now()))
ON CONFLICT (job_id) DO UPDATE SET stream_entry_id = COALESCE(index_jobs.stream_entry_id, EXCLUDED.stream_entry_id)
"""
_INSERT_BATCH = """
INSERT INTO index_job_batches (job_id, seq, operation, product_ids) VALUES ($1, $2, $3, $4)
ON CONFLICT (job_id, seq) DO NOTHING
"""
# Zero listings: the job is complete as soon as it is planned.
_MARK_PLANNED = """
UPDATE index_jobs SET total = $2, batches = $3, planned_at = now(), updated_at = now(),
    status = CASE WHEN $3 = 0 THEN 'completed' ELSE 'running' END,
    finished_at = CASE WHEN $3 = 0 THEN now() END
WHERE job_id = $1
"""
_COMPLETE_BATCH = """
UPDATE index_job_batches SET status = 'done', indexed = $3, skipped = $4, deleted = $5, failed = $6,
    deliveries = GREATEST(deliveries, $7), updated_at = now()
WHERE job_id = $1 AND seq = $2 AND status = 'pending'
RETURNING seq
"""
# Runs only after _COMPLETE_BATCH moved the batch out of 'pending' (in the same transaction): a
# redelivered batch adds nothing. The job's row is locked by then (lock_job), so no update is lost.
_ADD_USAGE = """
UPDATE index_jobs SET embedding_tokens = embedding_tokens + $2, embedding_requests = embedding_requests + $3,
    cost_usd = cost_usd + $4::numeric, embedding_model = coalesce($5, embedding_model)
WHERE job_id = $1
"""
_FAIL_BATCH = """
UPDATE index_job_batches SET status = 'failed', failed = cardinality(product_ids),
    deliveries = GREATEST(deliveries, $3), updated_at = now()
WHERE job_id = $1 AND seq = $2 AND status = 'pending'
RETURNING seq
"""
# 'failed' only when every batch failed; a partial failure is a completed job with failed listings.
_FINISH = """
UPDATE index_jobs j SET finished_at = now(), updated_at = now(),
    status = CASE WHEN NOT EXISTS (
        SELECT 1 FROM index_job_batches b WHERE b.job_id = j.job_id AND b.status <> 'failed'
    ) THEN 'failed' ELSE 'completed' END
WHERE j.job_id = $1 AND j.status = 'running'
  AND NOT EXISTS (SELECT 1 FROM index_job_batches b WHERE b.job_id = j.job_id AND b.status = 'pending')
RETURNING j.status
"""


async def insert_job(db: DB, job: Job, *, stream_entry_id: str | None = None) -> None:
    """Insert ``job`` as 'pending' unless it exists (then only a missing stream entry id is filled in)."""
    await db.execute(
        _INSERT_JOB, job.job_id, job.operation.value, job.scope, job.product_ids, job.force,
        job.source.value, job.requested_by, stream_entry_id, job.external_id, job.received_at,
    )  # fmt: skip


async def set_stream_entry(db: DB, job_id: str, entry_id: str) -> None:
    """Remember the job's entry id on the jobs stream."""
    await db.execute(
        "UPDATE index_jobs SET stream_entry_id = $2, updated_at = now() WHERE job_id = $1", job_id, entry_id
    )


async def set_stream_entries(db: DB, entries: Sequence[tuple[str, str]]) -> None:
    """Remember many jobs' entry ids on the jobs stream: ``(job_id, entry_id)`` pairs."""
    await db.executemany(
        "UPDATE index_jobs SET stream_entry_id = $2, updated_at = now() WHERE job_id = $1", entries
    )


async def lock_job(db: DB, job_id: str) -> asyncpg.Record | None:
    """The job's row, locked until the transaction ends (serialises two planners of one job)."""
    return await db.fetchrow(
        "SELECT status, planned_at, total, batches FROM index_jobs WHERE job_id = $1 FOR UPDATE", job_id
    )


async def insert_batches(db: DB, job_id: str, operation: str, batches: Sequence[Sequence[int]]) -> None:
    """Insert the job's batch rows, numbered from 0 (existing rows are kept as they are)."""
    await db.executemany(
        _INSERT_BATCH, [(job_id, seq, operation, list(ids)) for seq, ids in enumerate(batches)]
    )


async def mark_planned(db: DB, job_id: str, *, total: int, batches: int) -> None:
    """Record the plan's size; the job is 'running', or 'completed' at once when it is empty."""
    await db.execute(_MARK_PLANNED, job_id, total, batches)


async def pending_batches(db: DB, job_id: str) -> list[tuple[int, list[int]]]:
    """``(seq, product_ids)`` of the job's batches still pending, in order."""
    rows = await db.fetch(
        "SELECT seq, product_ids FROM index_job_batches WHERE job_id = $1 AND status = 'pending' ORDER BY seq",
        job_id,
    )
    return [(int(r["seq"]), [int(i) for i in r["product_ids"]]) for r in rows]


# The batches a lost batch stream held: every pending batch of a running job, with what its message carries.
_UNFINISHED = """
SELECT b.job_id, b.seq, b.product_ids, j.operation, j.force,
    (extract(epoch FROM j.received_at) * 1000)::bigint AS received_ms
FROM index_job_batches b JOIN index_jobs j USING (job_id)
WHERE j.status = 'running' AND b.status = 'pending'
ORDER BY j.created_at, b.job_id, b.seq
"""


async def unfinished_batches(db: DB) -> list[asyncpg.Record]:
    """Every pending batch of every running job: ``job_id, seq, product_ids, operation, force, received_ms``."""
    return list(await db.fetch(_UNFINISHED))


_JOB_COLUMNS = "job_id, source, operation, product_ids, scope, force, requested_by, external_id, received_at"


async def unplanned_jobs(db: DB) -> list[Job]:
    """Jobs queued (row inserted, entry appended) but never planned, oldest first."""
    rows = await db.fetch(
        f"SELECT {_JOB_COLUMNS} FROM index_jobs WHERE status = 'pending' AND planned_at IS NULL ORDER BY created_at"  # noqa: S608 -- constant column list
    )
    return [Job.model_validate(dict(r)) for r in rows]


async def lock_unqueued_retries(db: DB) -> list[Job]:
    """Retry jobs recorded by ``POST /retry`` whose entry was never appended, locked until the
    transaction ends; rows another transaction holds are skipped."""
    rows = await db.fetch(
        f"""
        SELECT {_JOB_COLUMNS} FROM index_jobs
        WHERE status = 'pending' AND stream_entry_id IS NULL AND source = 'retry'
        ORDER BY created_at FOR UPDATE SKIP LOCKED
        """,  # noqa: S608 -- constant column list
    )
    return [Job.model_validate(dict(r)) for r in rows]


async def complete_batch(
    db: DB,
    job_id: str,
    seq: int,
    counts: BatchCounts,
    *,
    deliveries: int = 1,
    usage: BatchUsage | None = None,
) -> bool:
    """Mark the batch done with its counts and add its ``usage`` to the job's; False (and nothing
    added) when it had already left 'pending'. Call it in a transaction holding the job's lock."""
    row = await db.fetchrow(
        _COMPLETE_BATCH,
        job_id,
        seq,
        counts.indexed,
        counts.skipped,
        counts.deleted,
        counts.failed,
        deliveries,
    )
    if row is None:
        return False
    if usage is not None and (usage.tokens or usage.requests):
        await db.execute(_ADD_USAGE, job_id, usage.tokens, usage.requests, usage.usd, usage.model)
    return True


async def fail_batch(db: DB, job_id: str, seq: int, *, deliveries: int) -> bool:
    """Mark the batch failed (all its listings failed); False when it had already left 'pending'."""
    return await db.fetchrow(_FAIL_BATCH, job_id, seq, deliveries) is not None


async def finish_job_if_done(db: DB, job_id: str) -> str | None:
    """Close the job when no batch is pending; return its final status, or None if still open."""
    status = await db.fetchval(_FINISH, job_id)
    return str(status) if status is not None else None


async def fail_job(db: DB, job_id: str, error: str) -> None:
    """Mark an unfinished job failed: it could not be queued, or its entry was dead-lettered."""
    await db.execute(
        "UPDATE index_jobs SET status = 'failed', error = $2, finished_at = now(), updated_at = now() "
        "WHERE job_id = $1 AND status IN ('pending', 'running')",
        job_id,
        error,
    )


async def prune_finished(db: DB, *, older_than_s: int, limit: int) -> int:
    """Delete up to ``limit`` jobs finished more than ``older_than_s`` seconds ago, with their
    batches (ON DELETE CASCADE); pending and running jobs stay. Return how many jobs went."""
    status = await db.execute(
        """
        DELETE FROM index_jobs WHERE job_id IN (
            SELECT job_id FROM index_jobs
            WHERE status IN ('completed', 'failed') AND finished_at < now() - make_interval(secs => $1)
            ORDER BY finished_at LIMIT $2
        )
        """,
        older_than_s,
        limit,
    )
    return int(status.split()[-1])
