"""Every query on ``failed_operations``: recording failures, resolving them, browsing and re-queueing.

Re-queued failures keep their rows (history): ``retry_count`` grows and ``requeued_at``,
``resolved_at`` and ``resolution = 'requeued'`` are set — the row is handled. If the retry fails
again, the pipeline records a new row, so "open" always means "nobody has acted on it yet" and
a second ``POST /retry {"all": true}`` never re-queues the same failure twice. Rows named by id
are re-queued whatever their state (an operator's explicit request).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from finally_indexer.core.errors import clip, redact, storable
from finally_indexer.db.pool import DB

__all__ = [
    "PAYLOAD_PREVIEW_BYTES",
    "Failure",
    "FailureCounts",
    "FailureFilter",
    "RetryCandidate",
    "failure_counts",
    "failures_by_reason",
    "failures_page",
    "has_failure",
    "lock_open_failures",
    "lock_unreplayed",
    "mark_discarded",
    "mark_requeued",
    "prune_resolved",
    "recent_failures",
    "record_failures",
    "resolve_succeeded",
    "set_replay_entries",
]


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed operation: a listing (``product_id``) or a whole malformed job (``payload``)."""

    operation_type: str  # sync | update | delete | job
    reason: str  # short machine-readable code (a MalformedReason, 'max_deliveries', …)
    error_class: str
    error_message: str
    product_id: int | None = None
    job_id: str | None = None
    payload: bytes | None = None  # the raw job bytes, exactly as received
    stream: str | None = None
    entry_id: str | None = None


_INSERT = """
INSERT INTO failed_operations
    (operation_type, product_id, job_id, reason, error_class, error_message, payload, stream, entry_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
#: Characters of an error message stored: enough for any real error, bounded for hostile input.
MAX_ERROR_CHARS = 4096

_RESOLVE = """
UPDATE failed_operations SET resolved_at = now(), resolution = 'succeeded'
WHERE product_id = ANY($1::bigint[]) AND resolved_at IS NULL
"""


async def record_failures(db: DB, failures: Sequence[Failure]) -> None:
    """Append ``failures`` (history is kept: a listing failing twice has two rows).

    The error message is stored :func:`~finally_indexer.core.errors.redact`-ed and cut to
    :data:`MAX_ERROR_CHARS`: operators read it through ``/failures`` and the dashboard. Text that
    quotes input is made :func:`~finally_indexer.core.errors.storable` (a NUL would make
    PostgreSQL refuse the row). The payload is kept byte for byte (it is replayed).
    """
    if not failures:
        return
    await db.executemany(
        _INSERT,
        [
            (
                f.operation_type,
                f.product_id,
                _text(f.job_id),
                storable(f.reason),
                storable(f.error_class),
                storable(redact(clip(f.error_message, MAX_ERROR_CHARS))),
                f.payload,
                _text(f.stream),
                _text(f.entry_id),
            )
            for f in failures
        ],
    )


def _text(value: str | None) -> str | None:
    return None if value is None else storable(value)


async def has_failure(db: DB, *, stream: str, entry_id: str, reason: str) -> bool:
    """Whether a failure of ``reason`` is already recorded for this stream entry (a dead letter
    written before a crash that kept the entry from being acknowledged)."""
    found = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM failed_operations WHERE stream = $1 AND entry_id = $2 AND reason = $3)",
        storable(stream),
        storable(entry_id),
        reason,
    )
    return bool(found)


async def resolve_succeeded(db: DB, product_ids: Sequence[int]) -> None:
    """Close the open failures of listings that have now been processed successfully."""
    if product_ids:
        await db.execute(_RESOLVE, list(product_ids))


# --- reading ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FailureCounts:
    """Totals over ``failed_operations``."""

    total: int
    open: int
    last_hour: int


async def failure_counts(conn: DB) -> FailureCounts:
    """Total and open failures (from the ``failure_tallies`` counters), and those of the last hour."""
    row = await conn.fetchrow(
        """
        SELECT coalesce(sum(total), 0)::bigint AS total,
               coalesce(sum(open), 0)::bigint AS open,
               (SELECT count(*) FROM failed_operations WHERE created_at > now() - interval '1 hour')::bigint
                   AS last_hour
        FROM failure_tallies
        """
    )
    if row is None:  # an aggregate without GROUP BY always yields a row
        raise RuntimeError("no row from the failure counts")
    return FailureCounts(row["total"], row["open"], row["last_hour"])


@dataclass(frozen=True, slots=True)
class FailureFilter:
    """Filters shared by ``GET /failures`` and ``POST /retry`` (combined with AND)."""

    ids: list[int] | None = None
    product_ids: list[int] | None = None
    operation_type: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    open_only: bool = False

    def where(self, args: list[Any]) -> str:
        """The SQL condition; appends its parameters to ``args`` (numbered from ``len(args)+1``)."""
        clauses = ["true"]

        def add(sql: str, value: Any) -> None:
            args.append(value)
            clauses.append(sql.format(f"${len(args)}"))

        if self.ids is not None:
            add("id = ANY({})", self.ids)
        if self.product_ids is not None:
            add("product_id = ANY({})", self.product_ids)
        if self.operation_type is not None:
            add("operation_type = {}", self.operation_type)
        if self.reason is not None:
            add("reason = {}", self.reason)
        if self.since is not None:
            add("created_at >= {}", self.since)
        if self.until is not None:
            add("created_at < {}", self.until)
        if self.open_only:
            clauses.append("resolved_at IS NULL")
        return " AND ".join(clauses)

    def tallied(self) -> bool:
        """Whether ``failure_tallies`` holds the counts of the matching rows (no id or time filter)."""
        return self.ids is None and self.product_ids is None and self.since is None and self.until is None


#: Bytes of a raw payload shown per failure row: a page of 500 rows stays small even when a
#: producer sent megabyte-sized jobs (the whole payload stays in the table for replay).
PAYLOAD_PREVIEW_BYTES = 4096

_FAILURE_COLUMNS = f"""
    id, operation_type, product_id, job_id, reason, error_class, error_message,
    substring(payload FROM 1 FOR {PAYLOAD_PREVIEW_BYTES}) AS payload, octet_length(payload) AS payload_bytes,
    stream, entry_id, created_at, last_attempt_at, retry_count, requeued_at, resolved_at, resolution
"""


async def failures_page(
    conn: DB, flt: FailureFilter, *, limit: int, before_id: int | None
) -> list[asyncpg.Record]:
    """Rows matching ``flt``, newest first (keyset pagination on ``id``)."""
    args: list[Any] = []
    where = flt.where(args)
    if before_id is not None:
        args.append(before_id)
        where += f" AND id < ${len(args)}"
    args.append(limit)
    return await conn.fetch(
        f"SELECT {_FAILURE_COLUMNS} FROM failed_operations WHERE {where} ORDER BY id DESC LIMIT ${len(args)}",  # noqa: S608 -- $n parameters
        *args,
    )


async def failures_by_reason(conn: DB, flt: FailureFilter) -> list[asyncpg.Record]:
    """Matching rows grouped by reason, most frequent first, with the latest message as example.

    The counts come from ``failure_tallies`` when the filter allows it (else from the matching
    rows); the first and last times and the example are index lookups per reason, so the cost
    grows with the number of reasons, not of rows.
    """
    args: list[Any] = []
    where = flt.where(args)
    groups = _tallied_groups(flt, args) if flt.tallied() else _counted_groups(where)
    per_reason = f"FROM failed_operations WHERE {where} AND reason = g.reason"
    return await conn.fetch(
        f"""
        SELECT g.reason, g.count, g.open, g.operation_types, f.first_at, l.last_at, e.example
        FROM ({groups}) AS g
        CROSS JOIN LATERAL (SELECT created_at AS first_at {per_reason} ORDER BY created_at LIMIT 1) AS f
        CROSS JOIN LATERAL (SELECT created_at AS last_at {per_reason} ORDER BY created_at DESC LIMIT 1) AS l
        CROSS JOIN LATERAL (SELECT error_message AS example {per_reason} ORDER BY id DESC LIMIT 1) AS e
        ORDER BY g.count DESC, g.reason
        """,  # noqa: S608 -- constant fragments; values are $n parameters
        *args,
    )


def _tallied_groups(flt: FailureFilter, args: list[Any]) -> str:
    """Per-reason counts from the counters (appends its parameters to ``args``)."""
    counted = "open" if flt.open_only else "total"
    clauses = [f"{counted} > 0"]
    if flt.operation_type is not None:
        args.append(flt.operation_type)
        clauses.append(f"operation_type = ${len(args)}")
    if flt.reason is not None:
        args.append(flt.reason)
        clauses.append(f"reason = ${len(args)}")
    return f"""
        SELECT reason, sum({counted})::bigint AS count, sum(open)::bigint AS open,
               array_agg(operation_type ORDER BY operation_type) AS operation_types
        FROM failure_tallies WHERE {" AND ".join(clauses)} GROUP BY reason
    """  # noqa: S608 -- constant fragments; values are $n parameters


def _counted_groups(where: str) -> str:
    """Per-reason counts over the matching rows (a filter on ids or time narrows them)."""
    return f"""
        SELECT reason, count(*)::bigint AS count, count(*) FILTER (WHERE resolved_at IS NULL)::bigint AS open,
               array_agg(DISTINCT operation_type ORDER BY operation_type) AS operation_types
        FROM failed_operations WHERE {where} GROUP BY reason
    """  # noqa: S608 -- constant fragments; values are $n parameters


async def recent_failures(conn: DB, limit: int = 10) -> list[asyncpg.Record]:
    """The latest failures (any state), newest first."""
    return await failures_page(conn, FailureFilter(), limit=limit, before_id=None)


# --- re-queueing -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RetryCandidate:
    """An open failure selected for re-queueing."""

    id: int
    operation_type: str
    product_id: int | None
    payload: bytes | None
    #: When the failed job was received (its row's ``received_at``; the failure's own time when
    #: the job row was pruned): the version a retried delete keeps.
    received_at: datetime | None = None


async def lock_open_failures(conn: DB, flt: FailureFilter, *, limit: int) -> list[RetryCandidate]:
    """Failures matching ``flt`` (only open ones unless ids are named), oldest first, locked.

    ``SKIP LOCKED`` lets two concurrent ``POST /retry`` calls split the rows instead of both
    re-queueing them.
    """
    args: list[Any] = []
    where = replace(flt, open_only=not flt.ids).where(args)
    args.append(limit)
    rows = await conn.fetch(
        f"""
        SELECT f.id, f.operation_type, f.product_id, f.payload,
            coalesce((SELECT j.received_at FROM index_jobs j WHERE j.job_id = f.job_id), f.created_at) AS received_at
        FROM failed_operations f
        WHERE {where} ORDER BY f.id LIMIT ${len(args)} FOR UPDATE OF f SKIP LOCKED
        """,  # noqa: S608 -- constant fragments; values are $n parameters
        *args,
    )
    return [
        RetryCandidate(r["id"], r["operation_type"], r["product_id"], r["payload"], r["received_at"])
        for r in rows
    ]


async def lock_unreplayed(conn: DB) -> list[tuple[int, bytes]]:
    """Re-queued raw payloads not appended to the jobs stream yet: ``(id, payload)``, locked until
    the transaction ends; rows another transaction holds are skipped."""
    rows = await conn.fetch(
        """
        SELECT id, payload FROM failed_operations
        WHERE operation_type = 'job' AND resolution = 'requeued' AND replay_entry_id IS NULL
          AND payload IS NOT NULL
        ORDER BY id FOR UPDATE SKIP LOCKED
        """
    )
    return [(int(r["id"]), bytes(r["payload"])) for r in rows]


async def set_replay_entries(conn: DB, entries: Sequence[tuple[int, str]]) -> None:
    """Record the jobs-stream entries re-queued raw payloads were appended as: ``(id, entry_id)``."""
    await conn.executemany("UPDATE failed_operations SET replay_entry_id = $2 WHERE id = $1", entries)


async def mark_requeued(conn: DB, ids: Sequence[int]) -> None:
    """Record that these rows were put back on the jobs stream."""
    await conn.execute(
        """
        UPDATE failed_operations
        SET retry_count = retry_count + 1, requeued_at = now(), resolved_at = now(), resolution = 'requeued'
        WHERE id = ANY($1)
        """,
        list(ids),
    )


async def mark_discarded(conn: DB, ids: Sequence[int]) -> None:
    """Close rows ``POST /retry`` cannot replay (an unreadable batch entry, a row without a listing
    or payload): they are handled, so they never fill a later ``{"all": true}`` selection again."""
    if ids:
        await conn.execute(
            "UPDATE failed_operations SET resolved_at = now(), resolution = 'discarded' WHERE id = ANY($1)",
            list(ids),
        )


# --- retention -------------------------------------------------------------------------------------
async def prune_resolved(db: DB, *, older_than_s: int, limit: int) -> int:
    """Delete up to ``limit`` failures resolved more than ``older_than_s`` seconds ago (open ones
    stay whatever their age); return how many went."""
    status = await db.execute(
        """
        DELETE FROM failed_operations WHERE id IN (
            SELECT id FROM failed_operations
            WHERE resolved_at < now() - make_interval(secs => $1) ORDER BY resolved_at LIMIT $2
        )
        """,
        older_than_s,
        limit,
    )
    return int(status.split()[-1])
