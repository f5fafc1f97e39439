"""Queries on the scraper's ``products`` table: reading listings, scanning ids, the ``is_conversion`` flag.

The service never writes ``updated_at`` (the scraper owns it; it is the change detector) and only
flips ``is_conversion``. Every query is parameterised.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import asyncpg

from finally_indexer.db.pool import DB

__all__ = [
    "LISTING_COLUMNS",
    "P_COLUMNS",
    "SOURCE_FP",
    "TEXT_COLUMNS",
    "count_orphans",
    "fetch_listings",
    "fetch_listings_with_state",
    "mark_converted",
    "mark_unconverted",
    "newest_update",
    "scan_changed_ids",
    "scan_ids",
    "scan_listings_with_state",
    "scan_orphan_ids",
    "source_fingerprint",
]

#: The columns of ``products`` the service reads (the GRANT of db/grants.py is made from them).
LISTING_COLUMNS: Final = (
    "id", "title", "url", "img_url", "price", "content", "odo", "mileage", "brand", "year",
    "updated_at", "is_conversion",
)  # fmt: skip
#: The listing columns qualified by the alias ``p`` (queries that join ``products p``).
P_COLUMNS: Final = ", ".join(f"p.{column}" for column in LISTING_COLUMNS)
#: The columns the embedded text is rendered from (``processor.texts.build_text`` reads no other).
TEXT_COLUMNS: Final = ("title", "year", "price", "content", "brand", "mileage", "odo")
#: The name under which a listing query returns the row's source fingerprint.
SOURCE_FP: Final = "source_fp"


def source_fingerprint(alias: str) -> str:
    """The SQL of a row's source fingerprint: SHA-256 of its text columns as one row value.

    SHA-256, not ``md5()``: a PostgreSQL in FIPS mode refuses ``md5()``, and this expression is in
    the indexer's own read of every listing.

    Computed by PostgreSQL in the very read a text is rendered from (see ``processor.source_keys``):
    any change to a text column changes it; a change it cannot see (a session setting that formats a
    value differently) only makes the audit render that row again.
    """
    columns = ", ".join(f"{alias}.{column}" for column in TEXT_COLUMNS)
    return f"encode(sha256(convert_to(row({columns})::text, 'UTF8')), 'hex') AS {SOURCE_FP}"


# A listing needs indexing when it is not flagged, was never written, or changed since it was.
_CHANGED: Final = "(NOT p.is_conversion OR s.product_id IS NULL OR p.updated_at > s.source_updated_at)"

_FETCH = f"""
SELECT {P_COLUMNS}, {source_fingerprint("p")}
FROM products p WHERE p.id = ANY($1::bigint[])
"""  # noqa: S608 -- constant column list and condition
_SCAN = "SELECT id FROM products WHERE id > $1 ORDER BY id LIMIT $2"
# A listing with what index_state recorded writing for it (the dry run's skip check).
_WITH_STATE = f"""
SELECT {P_COLUMNS}, s.text_hash AS indexed_hash, s.model AS indexed_model
FROM products p LEFT JOIN index_state s ON s.product_id = p.id
"""  # noqa: S608 -- constant column list and condition
_SCAN_WITH_STATE = _WITH_STATE + "WHERE p.id > $1 ORDER BY p.id LIMIT $2"
# The same rows as _SCAN_CHANGED selects.
_SCAN_CHANGED_WITH_STATE = _WITH_STATE + f"WHERE p.id > $1 AND {_CHANGED} ORDER BY p.id LIMIT $2"
_FETCH_WITH_STATE = _WITH_STATE + "WHERE p.id = ANY($1::bigint[])"
_SCAN_CHANGED = f"""
SELECT p.id FROM products p LEFT JOIN index_state s ON s.product_id = p.id
WHERE p.id > $1 AND {_CHANGED}
ORDER BY p.id LIMIT $2
"""  # noqa: S608 -- constant column list and condition
# Written listings whose product row is gone: they must be deleted from the collection.
_SCAN_ORPHANS = """
SELECT s.product_id FROM index_state s
WHERE s.product_id > $1 AND NOT EXISTS (SELECT 1 FROM products p WHERE p.id = s.product_id)
ORDER BY s.product_id LIMIT $2
"""
_COUNT_ORPHANS = """
SELECT count(*) FROM index_state s WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = s.product_id)
"""
# Only the row version that was embedded is flagged: a row edited meanwhile stays false.
_MARK_CONVERTED = """
UPDATE products p SET is_conversion = true
FROM unnest($1::bigint[], $2::timestamptz[]) AS u(id, updated_at)
WHERE p.id = u.id AND p.updated_at = u.updated_at AND NOT p.is_conversion
"""
# The newest edit the table holds: a watermark in the scraper's own clock (and column type).
_NEWEST_UPDATE = "SELECT max(updated_at) FROM products"
_MARK_UNCONVERTED = "UPDATE products SET is_conversion = false WHERE id = ANY($1::bigint[]) AND is_conversion"


async def fetch_listings(db: DB, ids: Sequence[int]) -> dict[int, asyncpg.Record]:
    """The current rows of ``ids`` (absent ids are missing from the result), in one query."""
    rows = await db.fetch(_FETCH, list(ids))
    return {int(row["id"]): row for row in rows}


async def fetch_listings_with_state(db: DB, ids: Sequence[int]) -> dict[int, asyncpg.Record]:
    """Like :func:`fetch_listings`, with ``indexed_hash`` and ``indexed_model`` from ``index_state``."""
    rows = await db.fetch(_FETCH_WITH_STATE, list(ids))
    return {int(row["id"]): row for row in rows}


async def scan_listings_with_state(db: DB, *, after: int, limit: int, changed: bool) -> list[asyncpg.Record]:
    """One keyset page of listings (only those :func:`scan_changed_ids` would give when ``changed``),
    with ``indexed_hash`` and ``indexed_model`` from ``index_state``."""
    return list(await db.fetch(_SCAN_CHANGED_WITH_STATE if changed else _SCAN_WITH_STATE, after, limit))


async def scan_ids(db: DB, *, after: int, limit: int) -> list[int]:
    """Up to ``limit`` product ids greater than ``after``, ascending (one keyset page)."""
    return [int(r["id"]) for r in await db.fetch(_SCAN, after, limit)]


async def scan_changed_ids(db: DB, *, after: int, limit: int) -> list[int]:
    """One keyset page of ids that are unflagged, never indexed, or changed since indexed."""
    return [int(r["id"]) for r in await db.fetch(_SCAN_CHANGED, after, limit)]


async def count_orphans(db: DB) -> int:
    """How many listings the service indexed have no product row any more."""
    return int(await db.fetchval(_COUNT_ORPHANS))


async def scan_orphan_ids(db: DB, *, after: int, limit: int) -> list[int]:
    """One keyset page of ids the service indexed whose product row no longer exists."""
    return [int(r["product_id"]) for r in await db.fetch(_SCAN_ORPHANS, after, limit)]


async def mark_converted(db: DB, versions: Sequence[tuple[int, datetime]]) -> None:
    """Set ``is_conversion`` for each ``(id, updated_at)`` whose row still has that ``updated_at``."""
    if versions:
        await db.execute(_MARK_CONVERTED, [v[0] for v in versions], [v[1] for v in versions])


async def mark_unconverted(db: DB, ids: Sequence[int]) -> None:
    """Clear ``is_conversion`` for ``ids`` (their current content is not in the collection)."""
    if ids:
        await db.execute(_MARK_UNCONVERTED, list(ids))


async def newest_update(db: DB) -> datetime | None:
    """The newest ``updated_at`` of any row (None when no row has one).

    A row edited after this read gets a newer one — from the same clock that wrote this one, the
    scraper's or PostgreSQL's, whatever its zone or skew — unless that clock goes back.
    """
    newest: datetime | None = await db.fetchval(_NEWEST_UPDATE)
    return newest
