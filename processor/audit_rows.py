"""The PostgreSQL side of the audit: each listing row reduced to what its verdict needs.

The text check is the costly part of a verdict: rendering and hashing a row's text takes ~17 µs,
more than reading the row and the point together. So it is done only when the point's source key
(``processor.source_keys``) does not settle it: PostgreSQL computes each row's source fingerprint
in the page read, and a key recomputed from it and the point's text hash costs ~1 µs. A row is
rendered only when the keys differ (an edited row, another template, a point written without a
key); the verdict is the same either way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple, cast

import asyncpg

from finally_indexer.db.products import SOURCE_FP
from finally_indexer.processor.source_keys import source_keyer
from finally_indexer.processor.texts import build_text, datetime_of, text_hash, version_of
from finally_indexer.processor.vectorstore import StoredListing

__all__ = ["ListingRow", "Row", "TextCheck", "listing_row"]

#: A row as a listing query returns it: the listing columns, ``tombstone`` and ``source_fp``.
Row = asyncpg.Record | Mapping[str, Any]


class ListingRow(NamedTuple):
    """One ``products`` row as the audit judges it."""

    product_id: int
    #: ``updated_at`` in microseconds; None when the row has none (it cannot be indexed).
    version: int | None
    #: The deleted version its tombstone records, if any.
    tombstone: int | None
    is_conversion: bool
    #: The row's source fingerprint as PostgreSQL computed it (None when the query had none).
    fingerprint: str | None
    #: The row itself: rendered only when the point's source key does not settle the text check.
    source: Mapping[str, Any]

    @property
    def should_be_indexed(self) -> bool:
        """It has a version and no tombstone covers it."""
        return self.version is not None and (self.tombstone is None or self.tombstone < self.version)

    @property
    def updated_at(self) -> datetime | None:
        """The row's ``updated_at`` as the audit read it (the instant its version stands for)."""
        return datetime_of(self.version) if self.version is not None else None


#: A tuple of the fields as a ``ListingRow``: a C-level call, where ``ListingRow(...)`` runs the
#: Python-level ``__new__`` of a named tuple (a million rows per audit).
_as_row: Callable[[tuple[Any, ...]], ListingRow] = functools.partial(tuple.__new__, ListingRow)


def listing_row(record: Row) -> ListingRow:
    """Reduce one row (a record with the listing columns and ``tombstone``; ``source_fp`` if any)."""
    updated_at: datetime | None = record["updated_at"]
    return _as_row((
        int(record["id"]), version_of(updated_at) if updated_at is not None else None, record["tombstone"],
        bool(record["is_conversion"]), record.get(SOURCE_FP), cast("Mapping[str, Any]", record),
    ))  # fmt: skip


class TextCheck:
    """Whether a point's text hash is the hash of its row's text as the row is now."""

    def __init__(self, template: str) -> None:
        self._template = template
        self._key = source_keyer(template)
        #: Rows rendered (their keys did not settle it): what an audit could not spare.
        self.rendered = 0

    def __call__(self, row: ListingRow, point: StoredListing) -> bool:
        key, fingerprint = point.source_key, row.fingerprint
        if key is not None and fingerprint is not None and key == self._key(fingerprint, point.text_hash):
            return True
        self.rendered += 1
        return point.text_hash == text_hash(build_text(row.source, self._template))
