"""``POST /sync`` (queue a synchronisation) and ``GET /jobs/{job_id}`` (follow it)."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.status_codes import HTTP_202_ACCEPTED
from litestar.types import ControllerRouterHandler

from finally_indexer.core.settings import Settings
from finally_indexer.db import reports
from finally_indexer.http.auth import SECURITY_SCHEME, require_api_key
from finally_indexer.http.deps import AppDeps
from finally_indexer.http.job_views import job_view
from finally_indexer.http.openapi import json_body
from finally_indexer.processor.enqueue import enqueue_job
from finally_indexer.schemas.api import JobView, SyncAccepted, SyncRequest


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


@get("/jobs/{job_id:str}", tags=["jobs"], summary="State and progress of one job")
async def get_job(job_id: FromPath[str], deps: NamedDependency[AppDeps]) -> JobView:
    row = await reports.job(deps.pool, job_id)
    if row is None:
        raise NotFoundException(detail=f"no job {job_id!r}")
    return job_view(row)


ROUTES: list[ControllerRouterHandler] = [sync, get_job]
