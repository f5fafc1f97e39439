"""``GET /listings/{product_id}``: one listing as PostgreSQL has it, as the collection has it, and why.

What a developer asks first when a recommendation looks wrong: the row, the point (payload,
version, text hash, model — never the vector), the verdict an audit would give it now, its open
failures and the latest jobs that touched it.
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from litestar import get
from litestar.di import NamedDependency
from litestar.params import PathParameter
from litestar.types import ControllerRouterHandler

from finally_indexer.core.errors import PermanentError
from finally_indexer.core.settings import Settings
from finally_indexer.db import failures, reports
from finally_indexer.db.failures import FailureFilter
from finally_indexer.http.auth import require_read_key
from finally_indexer.http.deps import AppDeps
from finally_indexer.http.failures import failure_view
from finally_indexer.processor.audit import judge
from finally_indexer.processor.audit_rows import TextCheck, listing_row
from finally_indexer.processor.texts import build_text, text_hash, version_of
from finally_indexer.processor.vectorstore import StoredListing
from finally_indexer.schemas.api import JobTouching, ListingInCollection, ListingInSource, ListingView
from finally_indexer.schemas.jobs import MAX_PRODUCT_ID

#: Open failures and jobs shown per listing.
SHOWN = 10

_LISTING_COLUMNS = (
    "title",
    "url",
    "img_url",
    "price",
    "content",
    "odo",
    "mileage",
    "brand",
    "year",
    "updated_at",
)


@get(
    "/listings/{product_id:int}",
    tags=["listings"],
    summary="One listing: source, point, verdict, failures, jobs",
    guards=[require_read_key],
)
async def get_listing(
    product_id: Annotated[int, PathParameter(ge=1, le=MAX_PRODUCT_ID)],
    deps: NamedDependency[AppDeps],
    settings: NamedDependency[Settings],
) -> ListingView:
    row, state = await reports.listing_detail(deps.pool, product_id)
    point = await _point_of(deps, product_id)
    open_failures = await failures.failures_page(
        deps.pool, FailureFilter(product_ids=[product_id], open_only=True), limit=SHOWN, before_id=None
    )
    jobs = await reports.jobs_touching(deps.pool, product_id, limit=SHOWN)
    source = listing_row(row) if row is not None else None
    verdict = judge(
        source, point, model=settings.model_name(), same_text=TextCheck(settings.text_template)
    ).value
    if row is None and point is None:  # neither side knows it: nothing to audit
        verdict = "absent"
    return ListingView(
        product_id=product_id,
        verdict=verdict,
        source=_source(row, state, settings.text_template) if row is not None else None,
        collection=_point(point) if point is not None else None,
        open_failures=[failure_view(r) for r in open_failures],
        jobs=[JobTouching(**dict(j)) for j in jobs],
    )


async def _point_of(deps: AppDeps, product_id: int) -> StoredListing | None:
    try:
        return (await deps.store.get([product_id])).get(product_id)
    except PermanentError:  # the collection does not exist yet (no worker created it): no point
        return None


def _source(row: asyncpg.Record, state: asyncpg.Record | None, template: str) -> ListingInSource:
    updated_at = row["updated_at"]
    tombstone: dict[str, Any] | None = None
    if row["tombstone"] is not None:
        tombstone = {"version": row["tombstone"], "deleted_at": row["tombstone_at"]}
    return ListingInSource(
        row={column: row[column] for column in _LISTING_COLUMNS},
        version=version_of(updated_at) if updated_at is not None else None,
        text_hash=text_hash(build_text(dict(row), template)),
        is_conversion=row["is_conversion"],
        indexed=dict(state) if state is not None else None,
        tombstone=tombstone,
    )


def _point(point: StoredListing) -> ListingInCollection:
    return ListingInCollection(
        version=point.version, text_hash=point.text_hash, model=point.model, payload=point.payload
    )


ROUTES: list[ControllerRouterHandler] = [get_listing]
