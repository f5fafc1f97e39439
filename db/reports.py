"""Read-only queries on listings and jobs behind ``/status``, ``/jobs`` and the projection gauges.

Failures have their own module (:mod:`finally_indexer.db.failures`), reads and writes together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from finally_indexer.db.pool import DB

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
    j.total, j.batches, j.error, j.created_at, j.planned_at, j.finished_at, j.updated_at,
    j.embedding_tokens, j.embedding_requests, j.cost_usd::float8 AS cost_usd, j.embedding_model
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


#: Below this many rows (the planner's estimate) ``products`` is counted exactly; above, the
#: estimate kept by ANALYZE/autovacuum is shown (a count would read the whole table every scrape).
EXACT_COUNT_BELOW = 100_000

_PENDING = """
SELECT count(*)::bigint AS pending,
       min(updated_at) AS oldest,
       coalesce(extract(epoch FROM now() - min(updated_at)), 0)::float8 AS age
FROM products WHERE NOT is_conversion
"""
# reltuples is -1 for a table never analysed; 'products' resolves by search_path like the queries
_ESTIMATE = "SELECT reltuples::bigint FROM pg_class WHERE oid = 'products'::regclass"


async def listing_counts(conn: DB) -> ListingCounts:
    """Counts over ``products``; freshness is the age of the oldest listing not yet indexed.

    The pending listings are counted exactly (the partial index ``products_pending`` covers
    them, see docs/database.md); the total is exact below :data:`EXACT_COUNT_BELOW` rows, else
    the planner's estimate, so the cost follows the backlog, not the table.
    """
    pending = await _one(conn, _PENDING)
    estimate = int(await conn.fetchval(_ESTIMATE) or -1)
    exact = estimate < EXACT_COUNT_BELOW
    counted = int(await conn.fetchval("SELECT count(*) FROM products")) if exact else estimate
    total = max(counted, pending["pending"])  # a row deleted between the two reads
    return ListingCounts(total, total - pending["pending"], pending["oldest"], max(0.0, pending["age"]))


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


async def listing_detail(conn: DB, product_id: int) -> tuple[asyncpg.Record | None, asyncpg.Record | None]:
    """The listing's row (with its tombstone, as the audit reads it) and its ``index_state`` row."""
    row = await conn.fetchrow(
        """
        SELECT p.id, p.title, p.url, p.img_url, p.price, p.content, p.odo, p.mileage, p.brand, p.year,
               p.updated_at, p.is_conversion, t.version AS tombstone, t.deleted_at AS tombstone_at
        FROM products p LEFT JOIN index_tombstones t ON t.product_id = p.id
        WHERE p.id = $1
        """,
        product_id,
    )
    state = await conn.fetchrow(
        "SELECT text_hash, source_updated_at, version, model, indexed_at FROM index_state WHERE product_id = $1",
        product_id,
    )
    return row, state


async def jobs_touching(conn: DB, product_id: int, *, limit: int) -> list[asyncpg.Record]:
    """The latest jobs whose batches named the listing (index_job_batches' GIN index), newest first."""
    return await conn.fetch(
        """
        SELECT job_id, status, operation, scope, source, created_at, finished_at FROM index_jobs
        WHERE job_id IN (SELECT job_id FROM index_job_batches WHERE product_ids @> ARRAY[$1]::bigint[])
        ORDER BY created_at DESC LIMIT $2
        """,
        product_id,
        limit,
    )
