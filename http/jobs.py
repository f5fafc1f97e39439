"""``GET /jobs/{job_id}``: one job's state and progress, from its ``index_jobs`` row.

The rows (with progress sums over their batches) come from :mod:`finally_indexer.db.reports`;
:func:`progress` is also what ``/status`` shows for each job in progress.
"""

from __future__ import annotations

import asyncpg
from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.types import ControllerRouterHandler

from finally_indexer.db import reports
from finally_indexer.http.auth import require_read_key
from finally_indexer.http.deps import AppDeps
from finally_indexer.schemas.api import JobCost, JobProgress, JobView


@get("/jobs/{job_id:str}", guards=[require_read_key], tags=["jobs"], summary="State and progress of one job")
async def get_job(job_id: FromPath[str], deps: NamedDependency[AppDeps]) -> JobView:
    row = await reports.job(deps.pool, job_id)
    if row is None:
        raise NotFoundException(detail=f"no job {job_id!r}")
    return job_view(row)


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
        cost=cost(row),
        created_at=row["created_at"],
        planned_at=row["planned_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
    )


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


def cost(row: asyncpg.Record) -> JobCost:
    """What the job's embedding calls used so far."""
    return JobCost(
        tokens=row["embedding_tokens"],
        requests=row["embedding_requests"],
        usd=round(row["cost_usd"], 6),
        model=row["embedding_model"],
    )


ROUTES: list[ControllerRouterHandler] = [get_job]
