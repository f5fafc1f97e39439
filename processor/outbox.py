"""The events outbox relay: events committed in PostgreSQL reach the events stream at least once.

A writer (indexer, planner, dead letters) puts its events in ``event_outbox`` with :func:`stage`,
inside the transaction of the effects they report, and calls :func:`relay_soon` right after the
commit (the fast path). Each worker also runs :func:`run_relay`, which relays whatever a crashed
process, a failed XADD or a PostgreSQL hiccup left behind every :data:`RELAY_INTERVAL_S`.

A relay round deletes the oldest rows (``FOR UPDATE SKIP LOCKED``) and appends them to the
events stream *before* its commit: a failed XADD rolls the delete back, and a relay that dies
between its XADD and its commit leaves the rows to be sent again — at least once, never lost.
Each event carries its row id as ``outbox_id``, the same on every copy, for de-duplication.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Final

import asyncpg
import structlog
from redis.exceptions import RedisError

from finally_indexer.core.errors import redact
from finally_indexer.db import outbox
from finally_indexer.db.pool import DB
from finally_indexer.processor.events import EventLog
from finally_indexer.schemas.messages import Event

__all__ = ["RELAY_BATCH", "RELAY_INTERVAL_S", "relay_outbox", "relay_soon", "run_relay", "stage"]

log = structlog.get_logger(__name__)

#: Rows per relay transaction: one XADD pipeline of this many entries (a few batches' events).
RELAY_BATCH: Final = 500
#: Seconds between a worker's recovery rounds: how late, at worst, the events of a batch whose
#: fast path failed reach the stream once Redis answers again. An empty round is one query.
RELAY_INTERVAL_S: Final = 1.0

#: Failures a relay waits out: the rows stay in the outbox for the next round. InternalClientError:
#: what asyncpg raises on a pooled connection that PostgreSQL dropped mid-operation (seen with
#: ``python bench/faults.py`` while PostgreSQL shut down).
_TRANSIENT: Final = (
    RedisError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


async def stage(db: DB, events: Sequence[Event]) -> None:
    """Queue ``events`` for the events stream; call it inside the transaction of their effects."""
    await outbox.add(db, [e.model_dump(mode="json", exclude_none=True) for e in events])


async def relay_outbox(pool: asyncpg.Pool[Any], events: EventLog, *, limit: int = RELAY_BATCH) -> int:
    """Append every queued event to the events stream, oldest first; return how many. Failures raise."""
    sent = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await outbox.take(conn, limit=limit)
            if rows:
                await events.extend(
                    Event.model_validate(event).model_copy(update={"outbox_id": row_id})
                    for row_id, event in rows
                )
        sent += len(rows)
        if len(rows) < limit:
            return sent


async def relay_soon(pool: asyncpg.Pool[Any], events: EventLog) -> int:
    """:func:`relay_outbox`, but a dependency failure only defers the events (logged, not raised).

    The effects are committed and their events are safe in the outbox: failing the caller would
    only redeliver work that is done, while the worker's :func:`run_relay` sends them later.
    """
    try:
        return await relay_outbox(pool, events)
    except _TRANSIENT as exc:
        log.warning("outbox_relay_deferred", error=repr(exc))
        return 0


async def run_relay(
    pool: asyncpg.Pool[Any], events: EventLog, *, stop: asyncio.Event, interval_s: float = RELAY_INTERVAL_S
) -> None:
    """Relay the outbox every ``interval_s`` until ``stop`` (one round even when already stopped)."""
    while True:
        try:
            if sent := await relay_soon(pool, events):
                log.debug("outbox_relayed", events=sent)
        except Exception as exc:  # the relay is a side loop of the worker: it must never end it
            log.error("outbox_relay_failed", error=redact(repr(exc)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        if stop.is_set():
            return
