"""The bounded summaries give the figures of the full scans they replace, and retention keeps
open failures and unfinished jobs."""

from __future__ import annotations

from typing import Any

import asyncpg

from finally_indexer.core.settings import Settings
from finally_indexer.db import failures, reports
from finally_indexer.db.failures import FailureFilter
from finally_indexer.processor.housekeeping import prune_history

# The queries as they were before the counters (f7b2663), kept to compare figures.
_OLD_FAILURE_COUNTS = """
SELECT count(*)::bigint AS total, count(*) FILTER (WHERE resolved_at IS NULL)::bigint AS open,
       count(*) FILTER (WHERE created_at > now() - interval '1 hour')::bigint AS last_hour
FROM failed_operations
"""
_OLD_BY_REASON = """
SELECT reason, count(*)::bigint AS count, count(*) FILTER (WHERE resolved_at IS NULL)::bigint AS open,
       array_agg(DISTINCT operation_type ORDER BY operation_type) AS operation_types,
       min(created_at) AS first_at, max(created_at) AS last_at,
       (array_agg(error_message ORDER BY id DESC))[1] AS example
FROM failed_operations WHERE {where} GROUP BY reason ORDER BY count DESC, reason
"""
_OLD_LISTINGS = """
SELECT count(*)::bigint AS total, count(*) FILTER (WHERE is_conversion)::bigint AS indexed,
       min(updated_at) FILTER (WHERE NOT is_conversion) AS oldest
FROM products
"""


async def _seed(pool: asyncpg.Pool[Any]) -> None:
    await pool.execute(
        """
        INSERT INTO failed_operations (operation_type, product_id, reason, error_class, error_message, created_at)
        SELECT (ARRAY['sync', 'update', 'delete', 'batch'])[1 + i % 4], CASE WHEN i % 4 <> 3 THEN i END,
               'reason-' || i % 5, 'E', 'message ' || i, now() - make_interval(mins => (i * 7) % 180)
        FROM generate_series(1, 300) AS i
        """
    )
    await pool.execute(
        "UPDATE failed_operations SET resolved_at = now(), resolution = 'succeeded' WHERE id % 3 = 0"
    )
    await pool.execute("DELETE FROM failed_operations WHERE id % 11 = 0")
    await pool.execute(
        """
        INSERT INTO products (id, title, is_conversion, updated_at)
        SELECT i, 'p' || i, i % 4 <> 0, now() - make_interval(mins => i) FROM generate_series(1, 200) AS i
        """
    )


async def test_counts_and_summaries_match_the_full_scans(pool: asyncpg.Pool[Any]) -> None:
    await _seed(pool)

    old = await pool.fetchrow(_OLD_FAILURE_COUNTS)
    assert old is not None
    new = await failures.failure_counts(pool)
    assert (new.total, new.open, new.last_hour) == (old["total"], old["open"], old["last_hour"])

    for flt in (
        FailureFilter(),
        FailureFilter(open_only=True),
        FailureFilter(operation_type="update"),
        FailureFilter(reason="reason-2", open_only=True),
        FailureFilter(product_ids=[1, 2, 5, 6, 10]),
        FailureFilter(since=await pool.fetchval("SELECT now() - interval '1 hour'")),
    ):
        args: list[Any] = []
        where = flt.where(args)
        before = [dict(r) for r in await pool.fetch(_OLD_BY_REASON.format(where=where), *args)]
        assert [dict(r) for r in await failures.failures_by_reason(pool, flt)] == before, flt

    old_listings = await pool.fetchrow(_OLD_LISTINGS)
    assert old_listings is not None
    listings = await reports.listing_counts(pool)
    assert (listings.total, listings.indexed, listings.oldest_pending_at) == tuple(old_listings)


async def test_pruning_keeps_open_failures_and_unfinished_jobs(
    pool: asyncpg.Pool[Any], settings: Settings
) -> None:
    await pool.execute(
        """
        INSERT INTO failed_operations (operation_type, product_id, reason, error_class, error_message,
                                       created_at, resolved_at, resolution)
        VALUES ('sync', 1, 'r', 'E', 'old open', now() - interval '90 days', NULL, NULL),
               ('sync', 2, 'r', 'E', 'old resolved', now() - interval '90 days', now() - interval '60 days', 'succeeded'),
               ('sync', 3, 'r', 'E', 'recently resolved', now() - interval '90 days', now() - interval '1 day', 'requeued')
        """
    )
    await pool.execute(
        """
        INSERT INTO index_jobs (job_id, operation, scope, source, status, created_at, finished_at)
        VALUES ('old-done', 'sync', 'all', 'api', 'completed', now() - interval '90 days', now() - interval '60 days'),
               ('old-failed', 'sync', 'all', 'api', 'failed', now() - interval '90 days', now() - interval '60 days'),
               ('recent-done', 'sync', 'all', 'api', 'completed', now() - interval '2 days', now() - interval '1 day'),
               ('old-running', 'sync', 'all', 'api', 'running', now() - interval '90 days', NULL),
               ('old-pending', 'sync', 'all', 'api', 'pending', now() - interval '90 days', NULL)
        """
    )
    await pool.execute(
        """
        INSERT INTO index_job_batches (job_id, seq, operation, product_ids, status)
        SELECT job_id, 0, 'sync', ARRAY[1]::bigint[], 'done' FROM index_jobs
        """
    )
    month = settings.model_copy(update={"failure_retention_s": 30 * 86_400, "job_retention_s": 30 * 86_400})

    await prune_history(pool, month, batch=1)  # several statements of one row each

    assert {r["error_message"] for r in await pool.fetch("SELECT error_message FROM failed_operations")} == {
        "old open",
        "recently resolved",
    }
    kept = {"recent-done", "old-running", "old-pending"}
    assert {r["job_id"] for r in await pool.fetch("SELECT job_id FROM index_jobs")} == kept
    assert {r["job_id"] for r in await pool.fetch("SELECT job_id FROM index_job_batches")} == kept
    counts = await failures.failure_counts(pool)
    assert (counts.total, counts.open) == (2, 1)  # the counters follow the deletes
