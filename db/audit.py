"""Queries of the index audit: listings in id order (with their tombstones), reports, flag fixes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from finally_indexer.db.pool import DB
from finally_indexer.db.products import P_COLUMNS, source_fingerprint

__all__ = [
    "correct_flags",
    "count_listings",
    "finish_report",
    "latest_completed",
    "latest_reports",
    "listing_page",
    "listing_pages",
    "prune_reports",
    "report",
    "start_report",
]

# One keyset page of listings with what the audit needs to judge them: the embedded columns,
# the version, the flag, the source fingerprint, and the tombstone (a deleted version) if any.
_PAGE = f"""
SELECT {P_COLUMNS}, {source_fingerprint("p")}, t.version AS tombstone
FROM products p LEFT JOIN index_tombstones t ON t.product_id = p.id
WHERE p.id > $1 ORDER BY p.id LIMIT $2
"""  # noqa: S608 -- constant column list and condition
# The flag follows the audit's verdict only for the row version the audit saw.
_CORRECT_FLAGS = """
UPDATE products p SET is_conversion = u.flag
FROM unnest($1::bigint[], $2::boolean[], $3::timestamptz[]) AS u(id, flag, updated_at)
WHERE p.id = u.id AND p.updated_at IS NOT DISTINCT FROM u.updated_at AND p.is_conversion <> u.flag
"""
_REPORT_COLUMNS = """
    audit_id, status, repair, requested_by, started_at, finished_at, duration_s, listings, points,
    counts, newest_row_at, in_flight_after, in_flight, samples, repair_job_ids, flags_corrected, error
"""


async def count_listings(db: DB) -> int:
    """How many listings the audit will read (for its progress bar)."""
    return int(await db.fetchval("SELECT count(*) FROM products"))


async def listing_page(db: DB, *, after: int, page: int) -> list[asyncpg.Record]:
    """Up to ``page`` listings with ids above ``after``, in id order (one keyset page)."""
    return list(await db.fetch(_PAGE, after, page))


async def listing_pages(db: DB, *, page: int) -> AsyncIterator[list[asyncpg.Record]]:
    """Every listing in id order, one keyset page at a time (never the whole table in memory)."""
    after = 0
    while rows := await listing_page(db, after=after, page=page):
        yield rows
        after = int(rows[-1]["id"])


async def correct_flags(db: DB, fixes: Sequence[tuple[int, bool, datetime | None]]) -> int:
    """Set ``is_conversion`` of ``(id, flag, updated_at)`` where the row is still that version."""
    if not fixes:
        return 0
    status = await db.execute(
        _CORRECT_FLAGS, [f[0] for f in fixes], [f[1] for f in fixes], [f[2] for f in fixes]
    )
    return int(status.split()[-1])


async def start_report(db: DB, audit_id: str, *, repair: bool, requested_by: str | None) -> None:
    """Record an audit as running."""
    await db.execute(
        "INSERT INTO audit_reports (audit_id, repair, requested_by) VALUES ($1, $2, $3)",
        audit_id,
        repair,
        requested_by,
    )


async def finish_report(
    db: DB, audit_id: str, *, status: str, duration_s: float, listings: int, points: int,
    counts: dict[str, int], samples: dict[str, list[int]], repair_job_ids: Sequence[str] = (),
    flags_corrected: int = 0, error: str | None = None, newest_row_at: datetime | None = None,
    in_flight_after: datetime | None = None, in_flight: int = 0,
) -> None:  # fmt: skip
    """Record an audit's outcome."""
    await db.execute(
        """
        UPDATE audit_reports SET status = $2, finished_at = now(), duration_s = $3, listings = $4,
            points = $5, counts = $6, samples = $7, repair_job_ids = $8, flags_corrected = $9, error = $10,
            newest_row_at = $11, in_flight_after = $12, in_flight = $13
        WHERE audit_id = $1
        """,
        audit_id, status, duration_s, listings, points, counts, samples, list(repair_job_ids),
        flags_corrected, error, newest_row_at, in_flight_after, in_flight,
    )  # fmt: skip


async def report(db: DB, audit_id: str) -> dict[str, Any] | None:
    """One audit report, or None."""
    row = await db.fetchrow(
        f"SELECT {_REPORT_COLUMNS} FROM audit_reports WHERE audit_id = $1",  # noqa: S608 -- constant columns
        audit_id,
    )
    return _as_dict(row) if row is not None else None


async def latest_reports(db: DB, *, limit: int, finished_only: bool = False) -> list[dict[str, Any]]:
    """The newest reports first."""
    where = "WHERE status <> 'running'" if finished_only else ""
    rows = await db.fetch(
        f"SELECT {_REPORT_COLUMNS} FROM audit_reports {where} ORDER BY started_at DESC LIMIT $1",  # noqa: S608 -- constant fragments
        limit,
    )
    return [_as_dict(r) for r in rows]


async def latest_completed(db: DB, *, requested_by: str) -> dict[str, Any] | None:
    """The newest completed report of the audits ``requested_by`` asked for, or None."""
    row = await db.fetchrow(
        f"SELECT {_REPORT_COLUMNS} FROM audit_reports WHERE requested_by = $1 AND status = 'completed' "  # noqa: S608 -- constant columns
        "ORDER BY started_at DESC LIMIT 1",
        requested_by,
    )
    return _as_dict(row) if row is not None else None


async def prune_reports(db: DB, *, keep: int) -> None:
    """Keep the newest ``keep`` reports."""
    await db.execute(
        """
        DELETE FROM audit_reports WHERE audit_id IN (
            SELECT audit_id FROM audit_reports ORDER BY started_at DESC OFFSET $1
        )
        """,
        keep,
    )


def _as_dict(row: asyncpg.Record) -> dict[str, Any]:
    found = dict(row)
    for key in ("counts", "samples"):  # the pool decodes json; a plain connection may not
        if isinstance(found[key], str):
            found[key] = json.loads(found[key])
    found["repair_job_ids"] = list(found["repair_job_ids"] or [])
    return found
