"""``GET /failures``: failed operations, newest first, a keyset page at a time, and a summary by reason.

A raw job that failed is stored whole for replay (``POST /retry``) but only its first bytes are
read here (:data:`finally_indexer.db.failures.PAYLOAD_PREVIEW_BYTES`): shown as UTF-8 text when
they decode, else as base64.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.types import ControllerRouterHandler

from finally_indexer.db import failures
from finally_indexer.db.failures import FailureFilter
from finally_indexer.http.auth import require_read_key
from finally_indexer.http.deps import AppDeps
from finally_indexer.schemas.api import FailurePage, FailureView, ReasonSummary

#: Largest page a caller may ask for.
MAX_PAGE = 500


@get(
    "/failures",
    guards=[require_read_key],
    tags=["failures"],
    summary="Failed operations, newest first, with a summary by reason",
)
async def list_failures(
    *,
    deps: NamedDependency[AppDeps],
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
    before_id: Annotated[
        int | None, QueryParameter(ge=1, le=2**63 - 1, description="Keyset cursor from next_before_id.")
    ] = None,
    reason: Annotated[str | None, QueryParameter(max_length=200)] = None,
    operation_type: Annotated[str | None, QueryParameter(max_length=20)] = None,
    product_id: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1)] = None,
    open_only: Annotated[bool, QueryParameter(name="open", description="Only unresolved rows.")] = False,
    since: Annotated[datetime | None, QueryParameter(description="Created at or after (ISO 8601).")] = None,
) -> FailurePage:
    flt = FailureFilter(
        product_ids=[product_id] if product_id is not None else None,
        operation_type=operation_type,
        reason=reason,
        since=since,
        open_only=open_only,
    )
    # one row more than the page tells whether there is a next page
    rows = await failures.failures_page(deps.pool, flt, limit=limit + 1, before_id=before_id)
    groups = await failures.failures_by_reason(deps.pool, flt)
    page = rows[:limit]
    return FailurePage(
        items=[failure_view(r) for r in page],
        next_before_id=page[-1]["id"] if len(rows) > limit else None,
        total=sum(g["count"] for g in groups),
        by_reason=[ReasonSummary(**dict(g)) for g in groups],
    )


def failure_view(row: asyncpg.Record) -> FailureView:
    """One row, its raw payload (first bytes only) as UTF-8 text when it decodes, else base64."""
    fields = {key: row[key] for key in row.keys()}  # noqa: SIM118 -- Record is not a Mapping
    raw: bytes | None = fields.pop("payload")
    size: int | None = fields.pop("payload_bytes", None)
    truncated = raw is not None and size is not None and size > len(raw)
    text, encoding = _show(raw, truncated=truncated)
    return FailureView(
        **fields, payload=text, payload_encoding=encoding, payload_bytes=size, payload_truncated=truncated
    )


def _show(raw: bytes | None, *, truncated: bool) -> tuple[str | None, Literal["utf-8", "base64"] | None]:
    if raw is None:
        return None, None
    # a preview may end inside a multi-byte character: drop up to 3 trailing bytes before giving up
    for cut in range(4 if truncated else 1):
        try:
            return raw[: len(raw) - cut].decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            continue
    return base64.b64encode(raw).decode(), "base64"


ROUTES: list[ControllerRouterHandler] = [list_failures]
