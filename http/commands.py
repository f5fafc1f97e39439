"""The mutating routes: ``POST /sync`` (queue a synchronisation) and ``POST /retry`` (re-queue failures).

Both need the API key (:func:`~finally_indexer.http.auth.require_api_key`) and hand the work to the
stream side (:mod:`finally_indexer.processor.enqueue`); they answer as soon as it is queued.
``POST /sync`` with ``dry_run`` queues nothing and answers with the job's estimate
(:mod:`finally_indexer.processor.estimate`).
"""

from __future__ import annotations

from typing import Annotated

from litestar import Response, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_409_CONFLICT
from litestar.types import ControllerRouterHandler

from finally_indexer.core.errors import ConfigurationError
from finally_indexer.core.settings import Settings
from finally_indexer.db.failures import FailureFilter
from finally_indexer.http.auth import SECURITY_SCHEME, require_api_key
from finally_indexer.http.deps import AppDeps
from finally_indexer.http.openapi import json_body
from finally_indexer.processor.enqueue import enqueue_job, requeue_failures
from finally_indexer.processor.estimate import Estimate, dry_run
from finally_indexer.processor.reindex import ReindexBusy, estimate_reindex, start_reindex
from finally_indexer.schemas.api import (
    ReindexAccepted,
    ReindexRequest,
    RetryRequest,
    RetryResult,
    SyncAccepted,
    SyncEstimate,
    SyncRequest,
)


@post(
    "/sync",
    status_code=HTTP_202_ACCEPTED,
    guards=[require_api_key],
    security=[{SECURITY_SCHEME: []}],
    tags=["jobs"],
    summary="Queue a synchronisation",
    description=(
        "Answers 202 at once with the job id; follow the job at the Location header (/jobs/{id}). "
        "With dry_run, queues nothing and answers 200 with the estimate (it reads every listing the job "
        "covers: seconds for 30,000, minutes for a million)."
    ),
    responses={HTTP_200_OK: ResponseSpec(SyncEstimate, description="dry_run: the estimate; nothing queued")},
)
async def sync(
    data: Annotated[SyncRequest, json_body(SyncRequest)],
    deps: NamedDependency[AppDeps],
    settings: NamedDependency[Settings],
) -> Response[SyncAccepted | SyncEstimate]:
    if data.dry_run:
        found = await dry_run(deps.pool, settings, data.to_job(), redis=deps.redis)
        return Response(sync_estimate(found), status_code=HTTP_200_OK)
    job_id = await enqueue_job(deps.pool, deps.redis, jobs_stream=settings.jobs_stream, job=data.to_job())
    location = f"/jobs/{job_id}"
    body = SyncAccepted(job_id=job_id, status="pending", links={"self": location, "status": "/status"})
    return Response(body, status_code=HTTP_202_ACCEPTED, headers={"Location": location})


def sync_estimate(found: Estimate) -> SyncEstimate:
    """The API's form of a dry run's estimate."""
    tally = found.tally
    return SyncEstimate(
        listings=tally.listings, embed=tally.embed, skip=tally.skip, delete=tally.delete, fail=tally.fail,
        tokens=tally.usage.tokens, requests=tally.usage.requests, usd=round(found.usd, 6), model=found.model,
        usd_per_million_tokens=found.usd_per_million_tokens, duration_s=found.duration_s,
        tokens_per_minute=found.tokens_per_minute, requests_per_minute=found.requests_per_minute,
    )  # fmt: skip


@post(
    "/reindex",
    status_code=HTTP_202_ACCEPTED,
    guards=[require_api_key],
    security=[{SECURITY_SCHEME: []}],
    tags=["jobs"],
    summary="Build a new generation of the collection",
    description=(
        "Re-embeds every listing with the API process's embedding settings into a new collection, in the "
        "background, through the workers; the served name switches to it once it is complete and its audit "
        "finds no drift (the replaced one is kept for `finally-indexer rollback`). Answers 202 with the job "
        "id; 409 while another reindex runs (or before a worker recorded the serving one). With dry_run, queues nothing and answers 200 with the estimate."
    ),
    responses={HTTP_200_OK: ResponseSpec(SyncEstimate, description="dry_run: the estimate; nothing queued")},
)
async def reindex(
    data: Annotated[ReindexRequest, json_body(ReindexRequest)],
    deps: NamedDependency[AppDeps],
    settings: NamedDependency[Settings],
) -> Response[ReindexAccepted | SyncEstimate]:
    if data.dry_run:
        found = await estimate_reindex(deps.pool, settings, redis=deps.redis)
        return Response(sync_estimate(found), status_code=HTTP_200_OK)
    try:
        started = await start_reindex(deps.pool, deps.redis, settings, requested_by=data.requested_by)
    except (ReindexBusy, ConfigurationError) as exc:  # one is building, or no worker recorded one yet
        raise HTTPException(status_code=HTTP_409_CONFLICT, detail=str(exc)) from exc
    location = f"/jobs/{started.job_id}"
    body = ReindexAccepted(
        job_id=started.job_id, generation=started.generation, serving=started.serving,
        links={"self": location, "status": "/status"},
    )  # fmt: skip
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


ROUTES: list[ControllerRouterHandler] = [sync, reindex, retry]
