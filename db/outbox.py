"""Queries on ``event_outbox``: events committed with the effects they report, not yet relayed.

Writers add their events inside the transaction of their effects (:func:`add`); a relay takes the
oldest rows with :func:`take`, which deletes them in *its* transaction — rows another relay holds
are skipped (``FOR UPDATE SKIP LOCKED``), so concurrent relays do not send the same row twice
while both are alive, and a relay that fails before its commit leaves its rows for the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finally_indexer.db.pool import DB

__all__ = ["add", "pending", "take"]

_TAKE = """
DELETE FROM event_outbox WHERE id IN (
    SELECT id FROM event_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING id, event
"""


async def add(db: DB, events: Sequence[dict[str, Any]]) -> None:
    """Queue ``events`` (JSON objects) for the events stream; call it inside the effects' transaction."""
    if events:
        await db.executemany("INSERT INTO event_outbox (event) VALUES ($1)", [(e,) for e in events])


async def take(db: DB, *, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """Delete and return up to ``limit`` of the oldest unclaimed rows as ``(id, event)``, by id."""
    rows = await db.fetch(_TAKE, limit)
    return sorted((int(r["id"]), r["event"]) for r in rows)


async def pending(db: DB) -> int:
    """How many events wait in the outbox."""
    return int(await db.fetchval("SELECT count(*) FROM event_outbox"))
