"""Every read and write of ``index_generations``: which generations of the collection exist, which
one serves, which one is being built, and when a retired one may be dropped.

The partial unique indexes of the table allow one serving and one building generation per served
name: :func:`insert_building` raises :class:`BuildRunning` for a second build, whichever process
asks. A switch (:func:`promote`) is one transaction: the building (or, for a rollback, the
retired) generation becomes the serving one and the serving one is retired with its drop time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from finally_indexer.db.pool import DB

__all__ = [
    "BuildProgress",
    "BuildRunning",
    "GenerationRow",
    "build_progress",
    "building",
    "due_drops",
    "fail_build",
    "insert_building",
    "insert_serving",
    "live",
    "mark_dropped",
    "names",
    "promote",
    "rollback_candidate",
    "serving",
]

#: Statuses whose collections exist and receive every write.
LIVE = ("serving", "building", "retired")

_COLUMNS = (
    "name, served_as, status, model, dimensions, template_hash, embedding, job_id, error, created_at, "
    "switched_at, retired_at, keep_until"
)


class BuildRunning(RuntimeError):
    """Another generation of the same served name is being built."""


@dataclass(frozen=True, slots=True)
class GenerationRow:
    """One row of ``index_generations``."""

    name: str
    served_as: str
    status: str
    model: str
    dimensions: int
    template_hash: str
    embedding: dict[str, Any]
    job_id: str | None
    error: str | None
    created_at: datetime
    switched_at: datetime | None
    retired_at: datetime | None
    keep_until: datetime | None


def _row(record: asyncpg.Record) -> GenerationRow:
    values = dict(record)
    embedding = values["embedding"]
    values["embedding"] = json.loads(embedding) if isinstance(embedding, str) else dict(embedding)
    return GenerationRow(**values)


async def live(db: DB, served_as: str) -> list[GenerationRow]:
    """The generations that exist and are written: serving, building and retired (not yet dropped)."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM index_generations WHERE served_as = $1 AND status = ANY($2::text[]) "  # noqa: S608 -- constant column list
        "ORDER BY created_at",
        served_as,
        list(LIVE),
    )
    return [_row(r) for r in rows]


async def serving(db: DB, served_as: str) -> GenerationRow | None:
    """The serving generation (None before the first worker recorded one)."""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM index_generations WHERE served_as = $1 AND status = 'serving'",  # noqa: S608
        served_as,
    )
    return _row(row) if row is not None else None


async def building(db: DB, served_as: str) -> GenerationRow | None:
    """The generation being built (None when no reindex runs)."""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM index_generations WHERE served_as = $1 AND status = 'building'",  # noqa: S608
        served_as,
    )
    return _row(row) if row is not None else None


async def names(db: DB) -> set[str]:
    """Every generation name ever recorded (names are never reused, dropped ones included)."""
    return {str(r["name"]) for r in await db.fetch("SELECT name FROM index_generations")}


async def insert_serving(db: DB, row: GenerationRow) -> bool:
    """Record the first (or adopted) serving generation; False when another process recorded one first."""
    status = await db.execute(
        "INSERT INTO index_generations (name, served_as, status, model, dimensions, template_hash, "
        "embedding, switched_at) VALUES ($1, $2, 'serving', $3, $4, $5, $6::jsonb, now()) ON CONFLICT DO NOTHING",
        row.name, row.served_as, row.model, row.dimensions, row.template_hash, json.dumps(row.embedding),
    )  # fmt: skip
    return status.endswith(" 1")


async def insert_building(db: DB, row: GenerationRow) -> None:
    """Record a generation to build; :class:`BuildRunning` when one is being built already."""
    try:
        await db.execute(
            "INSERT INTO index_generations (name, served_as, status, model, dimensions, template_hash, "
            "embedding, job_id) VALUES ($1, $2, 'building', $3, $4, $5, $6::jsonb, $7)",
            row.name, row.served_as, row.model, row.dimensions, row.template_hash,
            json.dumps(row.embedding), row.job_id,
        )  # fmt: skip
    except asyncpg.UniqueViolationError as exc:
        raise BuildRunning(f"a new generation of {row.served_as!r} is being built already") from exc


async def promote(
    pool: asyncpg.Pool[Any], served_as: str, name: str, *, from_status: str, keep_s: int
) -> bool:
    """Make ``name`` (now ``from_status``) the serving generation and retire the serving one, kept
    ``keep_s`` seconds, in one transaction; False (nothing changed) when ``name`` is no longer
    ``from_status``."""
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            "SELECT name FROM index_generations WHERE name = $1 AND served_as = $2 AND status = $3 FOR UPDATE",
            name, served_as, from_status,
        )  # fmt: skip
        if found is None:
            return False
        await conn.execute(
            "UPDATE index_generations SET status = 'retired', retired_at = now(), "
            "keep_until = now() + make_interval(secs => $2) WHERE served_as = $1 AND status = 'serving'",
            served_as, float(keep_s),
        )  # fmt: skip
        await conn.execute(
            "UPDATE index_generations SET status = 'serving', switched_at = now(), retired_at = NULL, "
            "keep_until = NULL, error = NULL WHERE name = $1",
            name,
        )
    return True


async def rollback_candidate(db: DB, served_as: str) -> GenerationRow | None:
    """The generation a rollback restores: the one retired last, if not dropped yet."""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM index_generations WHERE served_as = $1 AND status = 'retired' "  # noqa: S608
        "ORDER BY retired_at DESC LIMIT 1",
        served_as,
    )
    return _row(row) if row is not None else None


async def fail_build(db: DB, name: str, error: str) -> None:
    """Give up a build: its generation is no longer written (housekeeping drops its collection)."""
    await db.execute(
        "UPDATE index_generations SET status = 'failed', error = $2, keep_until = now() "
        "WHERE name = $1 AND status = 'building'",
        name,
        error,
    )


async def due_drops(db: DB, served_as: str) -> list[GenerationRow]:
    """Retired generations past their keep time, and failed builds: their collections go."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM index_generations WHERE served_as = $1 AND keep_until <= now() "  # noqa: S608
        "AND status IN ('retired', 'failed') ORDER BY keep_until",
        served_as,
    )
    return [_row(r) for r in rows]


async def mark_dropped(db: DB, name: str) -> None:
    """The generation's collection is gone (the row stays: names are never reused)."""
    await db.execute(
        "UPDATE index_generations SET status = 'dropped', keep_until = NULL "
        "WHERE name = $1 AND status IN ('retired', 'failed')",
        name,
    )


@dataclass(frozen=True, slots=True)
class BuildProgress:
    """How far the job that builds a generation is."""

    status: str  # the job's: pending, running, completed, failed
    total: int  # listings it covers (0 until planned)
    done: int  # listings its finished batches handled
    created_at: datetime


async def build_progress(db: DB, job_id: str) -> BuildProgress | None:
    """The build job's progress (None when the job row is gone)."""
    row = await db.fetchrow(
        """
        SELECT j.status, j.total, j.created_at,
               coalesce(sum(b.indexed + b.skipped + b.deleted + b.failed), 0) AS done
        FROM index_jobs j LEFT JOIN index_job_batches b ON b.job_id = j.job_id AND b.status <> 'pending'
        WHERE j.job_id = $1 GROUP BY j.job_id
        """,
        job_id,
    )
    if row is None:
        return None
    return BuildProgress(str(row["status"]), int(row["total"]), int(row["done"]), row["created_at"])


async def status_of(db: DB, name: str) -> str | None:
    """The status of generation ``name`` (None: no such generation)."""
    status = await db.fetchval("SELECT status FROM index_generations WHERE name = $1", name)
    return str(status) if status is not None else None
