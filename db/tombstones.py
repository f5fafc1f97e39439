"""Queries on ``index_tombstones``: deleted listings that an older write must not bring back.

A tombstone's ``version`` is when the delete was requested, in the unit of row versions
(``updated_at`` in microseconds): a row at or below it was deleted after it was written, a row
above it was created (or edited) after the delete and may be indexed again.
"""

from __future__ import annotations

from collections.abc import Sequence

from finally_indexer.db.pool import DB

__all__ = ["covered", "prune", "record"]

# The latest delete wins: a redelivered old delete never lowers a tombstone.
_RECORD = """
INSERT INTO index_tombstones (product_id, version)
SELECT * FROM unnest($1::bigint[], $2::bigint[])
ON CONFLICT (product_id) DO UPDATE SET version = EXCLUDED.version, deleted_at = now()
WHERE index_tombstones.version < EXCLUDED.version
"""
_COVERED = """
SELECT t.product_id FROM index_tombstones t
JOIN unnest($1::bigint[], $2::bigint[]) AS w(id, version) ON w.id = t.product_id
WHERE t.version >= w.version
"""


async def record(db: DB, product_ids: Sequence[int], *, version: int) -> None:
    """Tombstone ``product_ids`` as deleted at ``version`` (kept when a later delete exists)."""
    ids = list(dict.fromkeys(product_ids))  # one row per id: ON CONFLICT cannot touch a row twice
    if ids:
        await db.execute(_RECORD, ids, [version] * len(ids))


async def covered(db: DB, versions: Sequence[tuple[int, int]]) -> set[int]:
    """The ids among ``(id, row version)`` whose row version is not newer than their tombstone."""
    if not versions:
        return set()
    rows = await db.fetch(_COVERED, [v[0] for v in versions], [v[1] for v in versions])
    return {int(r["product_id"]) for r in rows}


async def prune(db: DB, *, older_than_s: int) -> int:
    """Forget tombstones older than ``older_than_s`` seconds; return how many went."""
    status = await db.execute(
        "DELETE FROM index_tombstones WHERE deleted_at < now() - make_interval(secs => $1)", older_than_s
    )
    return int(status.split()[-1])
