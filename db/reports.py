"""Read-only queries behind ``/status``, ``/jobs``, ``/failures`` and the projection gauges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from finally_indexer.db.products import DB

#: Finished jobs stay in the "current jobs" list this long, so a dashboard sees them complete.
RECENT_JOBS_WINDOW = "10 minutes"

_PROGRESS = """
    coalesce(sum(b.indexed), 0)::int AS done,
    coalesce(sum(b.skipped), 0)::int AS skipped,
    coalesce(sum(b.deleted), 0)::int AS deleted,
    coalesce(sum(b.failed), 0)::int AS failed,
    count(b.seq)::int AS batch_rows,
    count(b.seq) FILTER (WHERE b.status <> 'pending')::int AS batches_done
"""

_JOB_COLUMNS = """
    j.job_id, j.operation, j.scope, j.product_ids, j.force, j.source, j.requested_by, j.status,
    j.total, j.batches, j.error, j.created_at, j.planned_at, j.finished_at, j.updated_at
"""


async def _one(conn: DB, query: str) -> asyncpg.Record:
    """The single row of an aggregate query (which always returns one)."""
    row: asyncpg.Record | None = await conn.fetchrow(query)
    if row is None:  # an aggregate without GROUP BY always yields a row
        raise RuntimeError(f"no row from {query!r}")
    return row


@dataclass(frozen=True, slots=True)
class ListingCounts:
    """Listings in ``products`` and how many of them are in the collection."""

    total: int
    indexed: int
    oldest_pending_at: datetime | None
    freshness_seconds: float

    @property
    def pending(self) -> int:
        return self.total - self.indexed

    @property
    def coverage(self) -> float:
        return 1.0 if self.total == 0 else self.indexed / self.total


async def listing_counts(conn: DB) -> ListingCounts:
    """Counts over ``products``; freshness is the age of the oldest listing not yet indexed."""
    row = await _one(
        conn,
        """
        SELECT count(*)::bigint AS total,
               count(*) FILTER (WHERE is_conversion)::bigint AS indexed,
               min(updated_at) FILTER (WHERE NOT is_conversion) AS oldest,
               coalesce(extract(epoch FROM now() - min(updated_at) FILTER (WHERE NOT is_conversion)), 0)::float8 AS age
        FROM products
        """,
    )
    return ListingCounts(row["total"], row["indexed"], row["oldest"], max(0.0, row["age"]))


async def job(conn: DB, job_id: str) -> asyncpg.Record | None:
    """One job with its progress summed over its batches, or None."""
    return await conn.fetchrow(
        f"""
        SELECT {_JOB_COLUMNS}, {_PROGRESS}
        FROM index_jobs j LEFT JOIN index_job_batches b USING (job_id)
        WHERE j.job_id = $1
        GROUP BY j.job_id
        """,  # noqa: S608 -- constant fragments; values are $n parameters
        job_id,
    )


async def current_jobs(conn: DB, limit: int = 20) -> list[asyncpg.Record]:
    """Open jobs and those finished in the last minutes, newest first, with progress."""
    return await conn.fetch(
        f"""
        SELECT {_JOB_COLUMNS}, {_PROGRESS}
        FROM index_jobs j LEFT JOIN index_job_batches b USING (job_id)
        WHERE j.status IN ('pending', 'running')
           OR j.finished_at > now() - interval '{RECENT_JOBS_WINDOW}'
        GROUP BY j.job_id
        ORDER BY j.created_at DESC
        LIMIT $1
        """,  # noqa: S608 -- constant fragments; values are $n parameters
        limit,
    )


@dataclass(frozen=True, slots=True)
class FailureCounts:
    """Totals over ``failed_operations``."""

    total: int
    open: int
    last_hour: int
    last_attempt_at: datetime | None


async def failure_counts(conn: DB) -> FailureCounts:
    """Total, open (unresolved) and last-hour failures."""
    row = await _one(
        conn,
        """
        SELECT count(*)::bigint AS total,
               count(*) FILTER (WHERE resolved_at IS NULL)::bigint AS open,
               count(*) FILTER (WHERE created_at > now() - interval '1 hour')::bigint AS last_hour,
               max(last_attempt_at) AS last_at
        FROM failed_operations
        """,
    )
    return FailureCounts(row["total"], row["open"], row["last_hour"], row["last_at"])


@dataclass(frozen=True, slots=True)
class FailureFilter:
    """Filters shared by ``GET /failures`` and ``POST /retry`` (combined with AND)."""

    ids: list[int] | None = None
    product_ids: list[int] | None = None
    operation_type: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    open_only: bool = False

    def where(self, args: list[Any]) -> str:
        """The SQL condition; appends its parameters to ``args`` (numbered from ``len(args)+1``)."""
        clauses = ["true"]

        def add(sql: str, value: Any) -> None:
            args.append(value)
            clauses.append(sql.format(f"${len(args)}"))

        if self.ids is not None:
            add("id = ANY({})", self.ids)
        if self.product_ids is not None:
            add("product_id = ANY({})", self.product_ids)
        if self.operation_type is not None:
            add("operation_type = {}", self.operation_type)
        if self.reason is not None:
            add("reason = {}", self.reason)
        if self.since is not None:
            add("created_at >= {}", self.since)
        if self.until is not None:
            add("created_at < {}", self.until)
        if self.open_only:
            clauses.append("resolved_at IS NULL")
        return " AND ".join(clauses)


#: Bytes of a raw payload shown per failure row: a page of 500 rows stays small even when a
#: producer sent megabyte-sized jobs (the whole payload stays in the table for replay).
PAYLOAD_PREVIEW_BYTES = 4096

_FAILURE_COLUMNS = f"""
    id, operation_type, product_id, job_id, reason, error_class, error_message,
    substring(payload FROM 1 FOR {PAYLOAD_PREVIEW_BYTES}) AS payload, octet_length(payload) AS payload_bytes,
    stream, entry_id, created_at, last_attempt_at, retry_count, requeued_at, resolved_at, resolution
"""


async def failures_page(
    conn: DB, flt: FailureFilter, *, limit: int, before_id: int | None
) -> list[asyncpg.Record]:
    """Rows matching ``flt``, newest first (keyset pagination on ``id``)."""
    args: list[Any] = []
    where = flt.where(args)
    if before_id is not None:
        args.append(before_id)
        where += f" AND id < ${len(args)}"
    args.append(limit)
    return await conn.fetch(
        f"SELECT {_FAILURE_COLUMNS} FROM failed_operations WHERE {where} ORDER BY id DESC LIMIT ${len(args)}",  # noqa: S608 -- $n parameters
        *args,
    )


async def failures_by_reason(conn: DB, flt: FailureFilter) -> list[asyncpg.Record]:
    """Matching rows grouped by reason, most frequent first, with the latest message as example."""
    args: list[Any] = []
    where = flt.where(args)
    return await conn.fetch(
        f"""
        SELECT reason,
               count(*)::bigint AS count,
               count(*) FILTER (WHERE resolved_at IS NULL)::bigint AS open,
               array_agg(DISTINCT operation_type ORDER BY operation_type) AS operation_types,
               min(created_at) AS first_at,
               max(created_at) AS last_at,
               (array_agg(error_message ORDER BY id DESC))[1] AS example
        FROM failed_operations
        WHERE {where}
        GROUP BY reason
        ORDER BY count DESC, reason
        """,  # noqa: S608 -- constant fragments; values are $n parameters
        *args,
    )


async def recent_failures(conn: DB, limit: int = 10) -> list[asyncpg.Record]:
    """The latest failures (any state), newest first."""
    return await failures_page(conn, FailureFilter(), limit=limit, before_id=None)
