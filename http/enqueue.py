"""Queue a job from the API: its ``index_jobs`` row, then its entry on the jobs stream.

The entry's payload is the legacy JSON shape (so the planner reads every job the same way) plus
the extra fields ``job_id``, ``scope`` and ``force``.
"""

from __future__ import annotations

import json
import uuid
from typing import Literal

import structlog
from redis.exceptions import RedisError

from finally_indexer.core.errors import DependencyUnavailable
from finally_indexer.core.settings import Settings
from finally_indexer.db import retries
from finally_indexer.http.deps import AppDeps
from finally_indexer.schemas.messages import JobEntry, JobSource, as_text

log = structlog.get_logger(__name__)


def new_job_id(source: JobSource) -> str:
    """A unique, readable job id: ``api-…`` or ``retry-…``."""
    return f"{source.value}-{uuid.uuid4().hex}"


def job_payload(job: retries.NewJob) -> bytes:
    """The legacy JSON job with the API's extra fields."""
    body = {
        "v": 1,
        "operation": job.operation,
        "product_ids": job.product_ids if job.product_ids is not None else "all",
        "job_id": job.job_id,
        "scope": job.scope,
        "force": job.force,
        "requested_by": job.requested_by,
    }
    return json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":")).encode()


async def enqueue_job(
    deps: AppDeps,
    settings: Settings,
    *,
    operation: str,
    product_ids: list[int] | None,
    scope: Literal["all", "ids", "changed"],
    force: bool,
    source: JobSource,
    requested_by: str | None = None,
) -> str:
    """Record and queue one job; return its id. A Redis failure marks the row failed and raises."""
    job = retries.NewJob(new_job_id(source), operation, scope, product_ids, force, source.value, requested_by)
    await retries.insert_job(deps.pool, job)
    entry = JobEntry(payload=job_payload(job), source=source)
    try:
        entry_id = await deps.redis.xadd(settings.jobs_stream, entry.to_fields())  # type: ignore[arg-type]
    except RedisError as exc:
        await retries.fail_job(deps.pool, job.job_id, f"could not queue: {exc!r}")
        raise DependencyUnavailable(f"redis: {exc!r}") from exc
    entry_str = as_text(entry_id)
    await retries.set_stream_entry(deps.pool, job.job_id, entry_str)
    log.info(
        "job_queued",
        job_id=job.job_id,
        source=source.value,
        operation=operation,
        scope=scope,
        entry_id=entry_str,
    )
    return job.job_id
