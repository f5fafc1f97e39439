"""Queries on ``index_state``: what the service wrote to the collection for each listing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from finally_indexer.db.pool import DB

__all__ = ["IndexedListing", "delete_states", "fetch_models", "upsert_states"]


@dataclass(frozen=True, slots=True)
class IndexedListing:
    """One listing as written to the collection."""

    product_id: int
    text_hash: str
    source_updated_at: datetime
    version: int
    model: str


# A row is only replaced by a write of the same or a newer version (racing workers).
_UPSERT = """
INSERT INTO index_state (product_id, text_hash, source_updated_at, version, model)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::bigint[], $5::text[])
ON CONFLICT (product_id) DO UPDATE SET
    text_hash = EXCLUDED.text_hash, source_updated_at = EXCLUDED.source_updated_at,
    version = EXCLUDED.version, model = EXCLUDED.model, indexed_at = now()
WHERE index_state.version <= EXCLUDED.version
"""


async def upsert_states(db: DB, listings: Sequence[IndexedListing]) -> None:
    """Record ``listings`` as written (never regressing a row to an older version)."""
    if not listings:
        return
    await db.execute(
        _UPSERT,
        [x.product_id for x in listings],
        [x.text_hash for x in listings],
        [x.source_updated_at for x in listings],
        [x.version for x in listings],
        [x.model for x in listings],
    )


async def fetch_models(db: DB, ids: Sequence[int]) -> dict[int, str]:
    """The embedding model recorded for each of ``ids`` that has a state row."""
    rows = await db.fetch(
        "SELECT product_id, model FROM index_state WHERE product_id = ANY($1::bigint[])", list(ids)
    )
    return {int(r["product_id"]): str(r["model"]) for r in rows}


async def delete_states(db: DB, ids: Sequence[int]) -> None:
    """Forget ``ids`` (removed from the collection)."""
    if ids:
        await db.execute("DELETE FROM index_state WHERE product_id = ANY($1::bigint[])", list(ids))
