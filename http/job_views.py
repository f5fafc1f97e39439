"""Turns ``index_jobs`` rows (with progress sums from :mod:`finally_indexer.db.reports`) into API models."""

from __future__ import annotations

import asyncpg

from finally_indexer.schemas.api import JobProgress, JobView


def progress(row: asyncpg.Record) -> JobProgress:
    """Progress of one job: ``done`` counts listings embedded and written (new or updated)."""
    handled = row["done"] + row["skipped"] + row["deleted"] + row["failed"]
    total = row["total"]
    if row["status"] == "completed":
        percent = 100.0
    else:
        percent = round(min(100.0, 100.0 * handled / total), 1) if total else 0.0
    return JobProgress(
        total=total,
        done=row["done"],
        skipped=row["skipped"],
        deleted=row["deleted"],
        failed=row["failed"],
        batches=max(row["batches"], row["batch_rows"]),
        batches_done=row["batches_done"],
        percent=percent,
    )


def job_view(row: asyncpg.Record) -> JobView:
    """The full ``GET /jobs/{id}`` view of one row."""
    return JobView(
        job_id=row["job_id"],
        status=row["status"],
        operation=row["operation"],
        scope=row["scope"],
        source=row["source"],
        force=row["force"],
        requested_by=row["requested_by"],
        product_ids=list(row["product_ids"]) if row["product_ids"] is not None else None,
        error=row["error"],
        progress=progress(row),
        created_at=row["created_at"],
        planned_at=row["planned_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
    )
