"""Queries behind the API's write routes: recording a queued job and re-queueing failures.

A job queued by the API gets its ``index_jobs`` row *before* its stream entry exists, so
``GET /jobs/{id}`` answers from the first millisecond; the planner later fills in the plan.
Re-queued failures keep their rows (history): ``retry_count`` grows and ``requeued_at``,
``resolved_at`` and ``resolution = 'requeued'`` are set — the row is handled. If the retry fails
again, the pipeline records a new row, so "open" always means "nobody has acted on it yet" and
a second ``POST /retry {"all": true}`` never re-queues the same failure twice. Rows named by id
are re-queued whatever their state (an operator's explicit request).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from finally_indexer.db.products import DB
from finally_indexer.db.reports import FailureFilter


@dataclass(frozen=True, slots=True)
class NewJob:
    """An ``index_jobs`` row about to be queued."""

    job_id: str
    operation: str
    scope: str
    product_ids: list[int] | None
    force: bool
    source: str
    requested_by: str | None = None


async def insert_job(conn: DB, job: NewJob) -> None:
    """Insert the job as ``pending``."""
    await conn.execute(
        """
        INSERT INTO index_jobs (job_id, operation, scope, product_ids, force, source, requested_by, total)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        job.job_id,
        job.operation,
        job.scope,
        job.product_ids,
        job.force,
        job.source,
        job.requested_by,
        len(job.product_ids) if job.product_ids is not None else 0,
    )


async def set_stream_entry(conn: DB, job_id: str, entry_id: str) -> None:
    """Remember the job's entry id on the jobs stream."""
    await conn.execute(
        "UPDATE index_jobs SET stream_entry_id = $2, updated_at = now() WHERE job_id = $1", job_id, entry_id
    )


async def fail_job(conn: DB, job_id: str, error: str) -> None:
    """Mark a job failed (its stream entry could not be written)."""
    await conn.execute(
        """
        UPDATE index_jobs SET status = 'failed', error = $2, finished_at = now(), updated_at = now()
        WHERE job_id = $1
        """,
        job_id,
        error,
    )


@dataclass(frozen=True, slots=True)
class RetryCandidate:
    """An open failure selected for re-queueing."""

    id: int
    operation_type: str
    product_id: int | None
    payload: bytes | None


async def lock_open_failures(conn: DB, flt: FailureFilter, *, limit: int) -> list[RetryCandidate]:
    """Failures matching ``flt`` (only open ones unless ids are named), oldest first, locked.

    ``SKIP LOCKED`` lets two concurrent ``POST /retry`` calls split the rows instead of both
    re-queueing them.
    """
    args: list[Any] = []
    where = replace(flt, open_only=not flt.ids).where(args)
    args.append(limit)
    rows = await conn.fetch(
        f"""
        SELECT id, operation_type, product_id, payload FROM failed_operations
        WHERE {where} ORDER BY id LIMIT ${len(args)} FOR UPDATE SKIP LOCKED
        """,  # noqa: S608 -- constant fragments; values are $n parameters
        *args,
    )
    return [RetryCandidate(r["id"], r["operation_type"], r["product_id"], r["payload"]) for r in rows]


async def mark_requeued(conn: DB, ids: Sequence[int]) -> None:
    """Record that these rows were put back on the jobs stream."""
    await conn.execute(
        """
        UPDATE failed_operations
        SET retry_count = retry_count + 1, requeued_at = now(), resolved_at = now(), resolution = 'requeued'
        WHERE id = ANY($1)
        """,
        list(ids),
    )
