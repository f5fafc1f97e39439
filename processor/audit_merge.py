"""The audit's verdicts, and the merge that gives them: a page of rows against the points of its ids.

Every listing gets one verdict:

=============  =====================================================================================
``ok``         as it should be
``missing``    the row should be searchable and no point exists
``stale``      the point's version or text hash differs from the row as it is now
``ghost``      a point with no row, or for a row a delete covers (its tombstone)
``wrong_flag`` the point is right (or rightly absent) but ``is_conversion`` says otherwise
``wrong_model`` the point was embedded by another model than the configured one
=============  =====================================================================================

A million listings are judged per audit, so the common case — a page whose rows and points have
the same ids, each plainly right — is judged in one tight loop, with the text check settled by the
point's source key; anything else on the page goes through :func:`judge`, listing by listing.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import AsyncIterator, Sequence
from enum import StrEnum
from operator import attrgetter
from typing import Final

from finally_indexer.db.products import SOURCE_FP
from finally_indexer.processor.audit_rows import ListingRow, Row, TextCheck, listing_row
from finally_indexer.processor.source_keys import source_keyer
from finally_indexer.processor.texts import version_of
from finally_indexer.processor.vectorstore import StoredListing

__all__ = ["END", "Judged", "PageJudge", "PointWindows", "Verdict", "judge"]

#: Past every product id (ids are positive 64-bit integers): "this side is exhausted".
END: Final = 2**64


class Verdict(StrEnum):
    """What the audit found for one listing."""

    OK = "ok"
    MISSING = "missing"
    STALE = "stale"
    GHOST = "ghost"
    WRONG_FLAG = "wrong_flag"
    WRONG_MODEL = "wrong_model"


#: A verdict other than ``ok``: the verdict, the product id, its row and its point's version (each
#: None when absent; the versions tell whether the listing changed while the audit ran).
Judged = tuple[Verdict, int, ListingRow | None, int | None]


def judge(
    row: ListingRow | None, point: StoredListing | None, *, model: str, same_text: TextCheck
) -> Verdict:
    """The verdict for one listing: its row (None when absent) against its point (None when absent)."""
    if row is None:
        return Verdict.GHOST
    if not row.should_be_indexed:
        return _should_be_absent(row, point)
    if point is None:
        return Verdict.MISSING
    if point.model is not None and point.model != model:
        return Verdict.WRONG_MODEL
    if point.version != row.version or not same_text(row, point):
        return Verdict.STALE
    return Verdict.OK if row.is_conversion else Verdict.WRONG_FLAG


def _should_be_absent(row: ListingRow, point: StoredListing | None) -> Verdict:
    """A deleted row version, or a row without ``updated_at`` (which cannot be indexed)."""
    if point is not None:
        return Verdict.GHOST if row.version is not None else Verdict.STALE
    return Verdict.WRONG_FLAG if row.is_conversion else Verdict.OK


class PageJudge:
    """Judges a page of rows (records of ``db.audit``'s listing query) against the points whose ids
    fall in the page's range."""

    def __init__(self, *, model: str, template: str) -> None:
        self._model = model
        self._key = source_keyer(template)
        self.same_text = TextCheck(template)

    def judge(self, records: Sequence[Row], points: list[StoredListing]) -> tuple[int, list[Judged]]:
        """How many listings are ``ok``, and every other verdict in id order."""
        if len(records) == len(points):
            plain = self._plainly_ok(records, points)
            if plain is not None:
                return plain
        return self._merged(records, points)

    def _plainly_ok(
        self, records: Sequence[Row], points: list[StoredListing]
    ) -> tuple[int, list[Judged]] | None:
        """The verdicts when the rows and points have the same ids (None when they do not).

        A pair that passes every check of :func:`judge` at once — the text by its source key — is
        ``ok`` straight from the record (no ``ListingRow``, no call but the key's); any other goes
        through :func:`judge`.
        """
        model, key, same_text = self._model, self._key, self.same_text
        ok = 0
        others: list[Judged] = []
        for record, point in zip(records, points, strict=True):
            pid: int = record["id"]
            if pid != point.product_id:
                return None
            updated_at, fingerprint, source_key = record["updated_at"], record[SOURCE_FP], point.source_key
            if (
                record["is_conversion"]
                and updated_at is not None
                and fingerprint is not None
                and source_key is not None
                and (point.model is None or point.model == model)
                and version_of(updated_at) == point.version
                and (record["tombstone"] is None or record["tombstone"] < point.version)
                and source_key == key(fingerprint, point.text_hash)
            ):
                ok += 1
                continue
            row = listing_row(record)
            verdict = judge(row, point, model=model, same_text=same_text)
            if verdict is Verdict.OK:
                ok += 1
            else:
                others.append((verdict, pid, row, point.version))
        return ok, others

    def _merged(self, records: Sequence[Row], points: list[StoredListing]) -> tuple[int, list[Judged]]:
        """Both lists merged in id order, each listing judged by :func:`judge`."""
        rows = [listing_row(record) for record in records]
        ok = 0
        others: list[Judged] = []
        r = p = 0
        while r < len(rows) or p < len(points):
            row_id = rows[r].product_id if r < len(rows) else END
            point_id = points[p].product_id if p < len(points) else END
            pid = min(row_id, point_id)
            row = rows[r] if row_id == pid else None
            point = points[p] if point_id == pid else None
            r, p = r + (row is not None), p + (point is not None)
            verdict = judge(row, point, model=self._model, same_text=self.same_text)
            if verdict is Verdict.OK:
                ok += 1
            else:
                others.append((verdict, pid, row, point.version if point is not None else None))
        return ok, others


_ID = attrgetter("product_id")


class PointWindows:
    """The collection's points in id order (batches of a scroll), handed out by id range."""

    def __init__(self, batches: AsyncIterator[list[StoredListing]]) -> None:
        self._batches = batches
        self._held: list[StoredListing] = []
        self._exhausted = False

    async def upto(self, last_id: int) -> list[StoredListing]:
        """Every point not handed out yet whose id is ``last_id`` or below."""
        window: list[StoredListing] = []
        while True:
            held = self._held
            if held and held[-1].product_id > last_id:
                cut = bisect_right(held, last_id, key=_ID)
                window += held[:cut]
                self._held = held[cut:]
                return window
            window += held
            self._held = []
            if self._exhausted:
                return window
            batch = await anext(self._batches, None)
            if batch is None:
                self._exhausted = True
            else:
                self._held = batch
