"""The PostgreSQL side of the audit: each listing row reduced to what its verdict needs.

Rendering and hashing the text of every row is most of an audit's own work (a million rows take
a core for several seconds), and in the auditing process that work competes for the interpreter
with the collection's scroll. So for a large table the rows are read and reduced in a helper
process — its own connection, one keyset page ahead — and the auditing process only merges the
reduced rows with the points. A small table is reduced in-process: starting a process costs more
than it saves.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import multiprocessing
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import Any, Final, NamedTuple, cast

import asyncpg

from finally_indexer.core.logging import configure_logging
from finally_indexer.core.settings import Settings
from finally_indexer.db import audit as queries
from finally_indexer.db.pool import create_pool
from finally_indexer.processor.texts import build_text, datetime_of, text_hash, version_of

__all__ = ["HELPER_MIN_LISTINGS", "ListingRow", "listing_row", "row_pages"]

#: Listings from which rows are reduced in a helper process (below, in-process).
HELPER_MIN_LISTINGS: Final = 100_000


class ListingRow(NamedTuple):
    """One ``products`` row as the audit judges it: plain values only, so that a page of them
    crosses from the helper process as plain tuples (no per-row object to rebuild but the tuple)."""

    product_id: int
    #: ``updated_at`` in microseconds; None when the row has none (it cannot be indexed).
    version: int | None
    #: The deleted version its tombstone records, if any.
    tombstone: int | None
    is_conversion: bool
    #: The hash of the text the row would be embedded as now; None when it should have no point.
    text_hash: str | None

    @property
    def should_be_indexed(self) -> bool:
        """It has a version and no tombstone covers it."""
        return self.version is not None and (self.tombstone is None or self.tombstone < self.version)

    @property
    def updated_at(self) -> datetime | None:
        """The row's ``updated_at`` as the audit read it (the instant its version stands for)."""
        return datetime_of(self.version) if self.version is not None else None


def listing_row(record: asyncpg.Record | Mapping[str, Any], template: str) -> ListingRow:
    """Reduce one row (a record of ``db.audit``'s listing query)."""
    updated_at: datetime | None = record["updated_at"]
    version = version_of(updated_at) if updated_at is not None else None
    tombstone: int | None = record["tombstone"]
    indexed = version is not None and (tombstone is None or tombstone < version)
    return ListingRow(
        int(record["id"]), version, tombstone, bool(record["is_conversion"]),
        text_hash(build_text(cast("Mapping[str, Any]", record), template)) if indexed else None,
    )  # fmt: skip


def _reduce(records: list[asyncpg.Record], template: str) -> list[ListingRow]:
    return [listing_row(record, template) for record in records]


#: A plain tuple as a ``ListingRow`` (a C-level call: no Python frame per row).
_as_row: Callable[[tuple[Any, ...]], ListingRow] = functools.partial(tuple.__new__, ListingRow)


async def row_pages(
    db: asyncpg.Pool[Any], settings: Settings, *, page: int, helper: bool
) -> AsyncIterator[list[ListingRow]]:
    """Every listing in id order, reduced, one keyset page at a time (in a helper process if asked)."""
    if not helper:
        async for records in queries.listing_pages(db, page=page):
            # rendering and hashing a page is CPU work: off the event loop a scheduled audit shares
            yield await asyncio.to_thread(_reduce, records, settings.text_template)
        return
    async for rows in _helper_pages(settings, page):
        yield rows


async def _helper_pages(settings: Settings, page: int) -> AsyncIterator[list[ListingRow]]:
    """The pages as a helper process reads and reduces them, the next one always on its way."""
    loop = asyncio.get_running_loop()
    executor = ProcessPoolExecutor(
        max_workers=1,
        # spawn, not fork: the auditing process runs threads (the event loop's, the edge engine's)
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_helper_start,
        initargs=(settings,),
    )
    try:
        pending = loop.run_in_executor(executor, _helper_page, 0, page)
        while rows := await pending:
            pending = loop.run_in_executor(executor, _helper_page, rows[-1][0], page)
            yield list(map(_as_row, rows))
    finally:
        # waits for the page in flight (at most one) and the process's exit, off the event loop
        await asyncio.shield(asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True))


#: The helper process's event loop, pool and template (set once by ``_helper_start``).
_helper: dict[str, Any] = {}


def _helper_start(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    loop = asyncio.new_event_loop()
    one = settings.model_copy(update={"db_pool_min": 1, "db_pool_max": 1})
    _helper.update(loop=loop, pool=loop.run_until_complete(create_pool(one)), template=settings.text_template)
    atexit.register(_helper_stop)


def _helper_stop() -> None:
    """Close the connection as the process exits (PostgreSQL then logs no dropped client)."""
    loop: asyncio.AbstractEventLoop = _helper["loop"]
    loop.run_until_complete(_helper["pool"].close())
    loop.close()


def _helper_page(after: int, page: int) -> list[tuple[Any, ...]]:
    """One page, reduced, as plain tuples (a ``ListingRow`` is pickled and rebuilt through a
    Python-level ``__new__`` per row; a tuple of ints and strings crosses in C)."""
    loop: asyncio.AbstractEventLoop = _helper["loop"]
    records = loop.run_until_complete(queries.listing_page(_helper["pool"], after=after, page=page))
    return [tuple(row) for row in _reduce(records, _helper["template"])]
