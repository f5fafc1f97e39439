"""``POST /audit`` (start an audit, optionally repairing), ``GET /audit`` and ``GET /audit/{id}`` (reports).

The audit runs in this process in the background (:meth:`~finally_indexer.processor.audit.Auditor.start`)
on the app's connections — with the in-process edge store this is the way to audit a running
service. One audit at a time per collection: a second ``POST /audit`` answers 409.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_409_CONFLICT
from litestar.types import ControllerRouterHandler

from finally_indexer.db import audit as queries
from finally_indexer.http.auth import SECURITY_SCHEME, require_api_key, require_read_key
from finally_indexer.http.deps import AppDeps
from finally_indexer.http.openapi import json_body
from finally_indexer.processor.audit import AuditBusy, Auditor, Verdict
from finally_indexer.schemas.api import AuditAccepted, AuditReport, AuditRequest


def auditor(state: State, deps: NamedDependency[AppDeps]) -> Auditor:
    """The app's auditor (one per app: it owns the background audits, closed with the app)."""
    found: Auditor | None = state.get("auditor")
    if found is None:
        found = Auditor(pool=deps.pool, redis=deps.redis, store=deps.store, settings=state.settings)
        state.auditor = found
    return found


@post(
    "/audit",
    status_code=HTTP_202_ACCEPTED,
    guards=[require_api_key],
    security=[{SECURITY_SCHEME: []}],
    tags=["audit"],
    summary="Compare PostgreSQL with the collection (and repair drift)",
    description="Answers 202 with the audit id at once; 409 while another audit of the collection runs.",
)
async def start_audit(
    data: Annotated[AuditRequest, json_body(AuditRequest)], auditor: NamedDependency[Auditor]
) -> Response[AuditAccepted]:
    try:
        audit_id = await auditor.start(repair=data.repair, requested_by="api")
    except AuditBusy as exc:
        raise HTTPException(status_code=HTTP_409_CONFLICT, detail=str(exc)) from exc
    location = f"/audit/{audit_id}"
    return Response(
        AuditAccepted(audit_id=audit_id, links={"self": location}),
        status_code=HTTP_202_ACCEPTED,
        headers={"Location": location},
    )


@get("/audit", guards=[require_read_key], tags=["audit"], summary="The latest audit report")
async def latest_audit(deps: NamedDependency[AppDeps]) -> AuditReport:
    reports = await queries.latest_reports(deps.pool, limit=1)
    if not reports:
        raise NotFoundException(detail="no audit has run yet (POST /audit starts one)")
    return audit_report(reports[0])


@get("/audit/{audit_id:str}", guards=[require_read_key], tags=["audit"], summary="One audit report")
async def get_audit(audit_id: FromPath[str], deps: NamedDependency[AppDeps]) -> AuditReport:
    found = await queries.report(deps.pool, audit_id)
    if found is None:
        raise NotFoundException(detail=f"no audit {audit_id!r}")
    return audit_report(found)


def audit_report(found: dict[str, Any]) -> AuditReport:
    """A stored report as the API shows it."""
    counts = {verdict.value: int(found["counts"].get(verdict.value, 0)) for verdict in Verdict}
    drift = sum(n for verdict, n in counts.items() if verdict != Verdict.OK.value)
    return AuditReport(
        **{**found, "counts": counts if found["status"] == "completed" else {}, "drift": drift}
    )


ROUTES: list[ControllerRouterHandler] = [start_audit, latest_audit, get_audit]
