"""What both stores agree on: payload keys, the stale-write rule, conversions to ``StoredListing``.

**Stale-write rule.** A listing's point is replaced only by a write whose version (the source
row's ``updated_at`` in microseconds) is *at least* the stored one, and a point without a version
(written by an older indexer) is always replaceable. Equal versions replace, so a forced re-embed
of an unchanged row (new model, new template) takes effect and a redelivered batch is a no-op in
effect. Qdrant evaluates the condition per existing point and inserts points that do not exist,
so one batch carries one clause per point: ``has_id(p) AND (version <= v_p OR version is empty)``.
Versions (~1.7e15) are below 2**53, so the float range comparison Qdrant performs is exact.
"""

from __future__ import annotations

from typing import Any

from finally_indexer.processor.vectorstore import ListingPoint, PayloadUpdate, StoredListing

__all__ = [
    "MODEL_KEY",
    "PRODUCT_ID_KEY",
    "SCROLL_PAGE",
    "SOURCE_KEY",
    "TEXT_HASH_KEY",
    "VERSION_KEY",
    "point_payload",
    "stored_listing",
]

VERSION_KEY = "version"
TEXT_HASH_KEY = "text_hash"
PRODUCT_ID_KEY = "product_id"
#: The embedding model that made the vector (set by the indexer; audits compare it with the settings).
MODEL_KEY = "model"
#: The point's source key (``processor.source_keys``): lets an audit trust its text hash unrendered.
SOURCE_KEY = "source_key"
#: Points per scroll page in ``scan``: payload only, so a page is a few hundred kilobytes.
SCROLL_PAGE = 1_000


def point_payload(point: ListingPoint | PayloadUpdate) -> dict[str, Any]:
    """The payload stored with a point: the caller's fields plus id, version and text hash."""
    return {
        **point.payload,
        PRODUCT_ID_KEY: point.product_id,
        VERSION_KEY: point.version,
        TEXT_HASH_KEY: point.text_hash,
    }


def stored_listing(point_id: Any, payload: dict[str, Any] | None) -> StoredListing:
    """A stored point as a :class:`StoredListing` (version 0 and no hash when written without them)."""
    payload = payload or {}
    return StoredListing(
        product_id=int(point_id),
        version=int(payload.get(VERSION_KEY) or 0),
        text_hash=str(payload.get(TEXT_HASH_KEY) or ""),
        model=str(payload[MODEL_KEY]) if payload.get(MODEL_KEY) is not None else None,
        source_key=str(payload[SOURCE_KEY]) if payload.get(SOURCE_KEY) is not None else None,
        payload=payload,
    )
