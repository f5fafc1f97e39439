"""The mutating routes: ``POST /sync`` (queue a synchronisation) and ``POST /retry`` (re-queue failures).

Both need the API key (:func:`~finally_indexer.http.auth.require_api_key`) and hand the work to the
stream side (:mod:`finally_indexer.processor.enqueue`); they answer as soon as it is queued.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Response, post
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from litestar.types import ControllerRouterHandler

from finally_indexer.core.settings import Settings
from finally_indexer.db.failures import FailureFilter
from finally_indexer.http.auth import SECURITY_SCHEME, require_api_key
from finally_indexer.http.deps import AppDeps
from finally_indexer.http.openapi import json_body
from finally_indexer.processor.enqueue import enqueue_job, requeue_failures
from finally_indexer.schemas.api import RetryRequest, RetryResult, SyncAccepted, SyncRequest


@post(
    "/sync",
    status_code=HTTP_202_ACCEPTED,
    guards=[require_api_key],
    security=[{SECURITY_SCHEME: []}],
    tags=["jobs"],
    summary="Queue a synchronisation",
    description="Answers 202 at once with the job id; follow the job at the Location header (/jobs/{id}).",
)
async def sync(
    data: Annotated[SyncRequest, json_body(SyncRequest)],
    deps: NamedDependency[AppDeps],
    settings: NamedDependency[Settings],
) -> Response[SyncAccepted]:
    job_id = await enqueue_job(deps.pool, deps.redis, jobs_stream=settings.jobs_stream, job=data.to_job())
    location = f"/jobs/{job_id}"
    body = SyncAccepted(job_id=job_id, status="pending", links={"self": location, "status": "/status"})
    return Response(body, status_code=HTTP_202_ACCEPTED, headers={"Location": location})


@post(
    "/retry",
    status_code=HTTP_200_OK,
    guards=[require_api_key],
    security=[{SECURITY_SCHEME: []}],
    tags=["failures"],
    summary="Re-queue open failures",
    description=(
        "Listings are re-queued as retry jobs (one per operation); malformed raw jobs are put back on the "
        "jobs stream byte for byte. Rows are kept: retry_count grows, requeued_at is set."
    ),
)
async def retry(
    data: Annotated[RetryRequest, json_body(RetryRequest)],
    deps: NamedDependency[AppDeps],
    settings: NamedDependency[Settings],
) -> RetryResult:
    flt = FailureFilter(
        ids=data.ids,
        product_ids=data.product_ids,
        operation_type=data.operation_type,
        reason=data.reason,
        since=data.since,
        until=data.until,
    )
    return await requeue_failures(
        deps.pool, deps.redis, jobs_stream=settings.jobs_stream, flt=flt, limit=data.limit
    )


ROUTES: list[ControllerRouterHandler] = [sync, retry]
